//! The `ringwire` command. `ringwire bench` measures every transport side by side against the
//! hardware floor; see `ringwire --help`.

fn main() -> std::process::ExitCode {
    ringwire_cli::main()
}
