//! The test suites' peer process: `ringwire-testpeer FAMILY MODE [OPTIONS]` (see
//! `ringwire_testkit::peer`). Never installed: it exists only in the dev-only testkit crate.

fn main() -> std::process::ExitCode {
    ringwire_testkit::peer::main()
}
