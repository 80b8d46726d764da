//! The standalone `aiocop-analyze` binary: everything is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = aiocop_analyze::main_with_args(std::env::args_os());
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}
