//! The `headwater` binary; see `headwater::cli`.

fn main() -> std::process::ExitCode {
    headwater::cli::main()
}
