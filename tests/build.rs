//! Builds the example plugins (plugins/, a wasm32-unknown-unknown workspace) so the end-to-end
//! tests load the same modules a user would, and tells the tests where they are.

use std::path::PathBuf;
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for wasm32.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running cargo for plugins/");
    assert!(
        status.success(),
        "building plugins/ for wasm32-unknown-unknown failed"
    );
    println!(
        "cargo:rustc-env=HEADWATER_PLUGIN_DIR={}",
        target_dir
            .join("wasm32-unknown-unknown")
            .join("release")
            .display()
    );
}
