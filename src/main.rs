//! The `pairgate` binary: parse the command line, start diagnostics, dispatch,
//! and map the outcome to the exit codes of `docs/reference.md` (0 ok,
//! 1 problem found, 2 bad usage or invalid input). All real work lives in
//! the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Die quietly on a closed pipe (`pairgate audit query … | head`) like
    // other command-line tools, instead of panicking in println!. Never for
    // the long-running commands: a gateway writes to sockets whose peer may
    // be gone (writev has no MSG_NOSIGNAL), and SIGPIPE would kill it.
    if args.command.prints_for_a_pipe() {
        sigpipe::reset();
    }
    cli::init_tracing(args.verbose);
    match cli::dispatch(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pairgate: {}", cli::render_error(failure.error()));
            ExitCode::from(failure.code())
        }
    }
}
