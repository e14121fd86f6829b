//! The `headwater` command line, built inside the tests crate so that child-process tests can find
//! it through `CARGO_BIN_EXE_headwater-test-broker`.

fn main() -> std::process::ExitCode {
    headwater::cli::main()
}
