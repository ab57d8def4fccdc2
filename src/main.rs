//! The `pairgate` binary: parse the command line, start diagnostics, dispatch,
//! and map the outcome to the exit codes of `docs/reference.md` (0 ok,
//! 1 problem found, 2 bad usage or invalid input). All real work lives in
//! the library.

mod cli;

/// jemalloc, not glibc's malloc. After a burst of 2,000 concurrent
/// connections glibc kept ~36 MB of freed memory per gateway (its arenas
/// held 37 MB with 1 MB in use; `malloc_trim` gave it back), more after each
/// burst, and `MALLOC_ARENA_MAX=1` does not help: glibc returns memory only
/// from the top of a heap. jemalloc's background thread returns freed pages
/// within seconds (dirty pages decay over 10 s), so a gateway goes back to
/// near its idle size after each burst (`tests/integration/burst.rs`).
///
/// Configured at build time in `.cargo/config.toml`
/// (`JEMALLOC_SYS_WITH_MALLOC_CONF`): freed pages go back after 1 s
/// unused instead of 10 s. With 10 s, each burst of 2,000 connections
/// (`pairgate bench --bursts`) found the previous burst's pages not yet
/// returned, and the RSS held grew burst by burst (issue 17).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
