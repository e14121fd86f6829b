//! Builds the example plugins (plugins/, a wasm32-unknown-unknown workspace) so the end-to-end
//! tests load the same modules a user would, and tells the tests where they are.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let plugins = root.join("plugins");
    for dir in ["plugins", "sdk/src", "sdk/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = plugins.join("target");
    // rust-toolchain.toml names the wasm32 target, but rustup adds it only when it installs the
    // toolchain: one installed earlier lacks it. Add it then, so `cargo test` stays one command.
    if !build_plugins(&plugins, &target_dir) {
        add_wasm_target();
        assert!(
            build_plugins(&plugins, &target_dir),
            "building plugins/ for wasm32-unknown-unknown failed"
        );
    }
    println!(
        "cargo:rustc-env=HEADWATER_PLUGIN_DIR={}",
        target_dir
            .join("wasm32-unknown-unknown")
            .join("release")
            .display()
    );
}

/// `rustup target add wasm32-unknown-unknown`, or a panic saying what to do.
fn add_wasm_target() {
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        added,
        "building plugins/ failed and `rustup target add wasm32-unknown-unknown` did not work"
    );
}

fn build_plugins(plugins: &Path, target_dir: &Path) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(plugins)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .arg("--target-dir")
        .arg(target_dir)
        // The outer build's flags are for the host, not for wasm32.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running cargo for plugins/")
        .success()
}
