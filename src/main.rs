//! The `ringwire` command. `ringwire bench` measures every transport side by side against the
//! hardware floor; see `ringwire --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
