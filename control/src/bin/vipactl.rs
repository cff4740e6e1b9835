//! `vipactl`: the operator CLI. Parses arguments, calls the library
//! ([`vipa_control::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match vipa_control::cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(code) => return ExitCode::from(code),
    };
    let code = vipa_control::cli::run(&cli, &mut std::io::stdout().lock());
    ExitCode::from(code)
}
