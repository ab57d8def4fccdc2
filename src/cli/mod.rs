//! Command-line definitions (clap) and dispatch. One file per command group;
//! each command returns `Result<(), Failure>` and prints its own output.
//! Every command and flag is documented in `docs/reference.md` ("Commands");
//! `docs::tests` fails when one is missing there.

mod audit;
mod bench;
mod cert;
mod docs;
mod gateway;
mod policy;
mod spool;
mod status;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pairgate",
    version = VERSION,
    about = "Security gateway for paired Lync / Skype for Business pools",
    long_about = "Security gateway for the replication traffic between two paired Lync Server 2013 / \
Skype for Business Front End pools: plaintext stays inside each site, only mutually authenticated \
TLS 1.3 pinned to the pair crosses the WAN, files wait encrypted, every decision is audited."
)]
pub struct Cli {
    /// More diagnostics on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// `pairgate --version`: the crate version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PAIRGATE_GIT_REV"),
    ")"
);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The private pairing CA.
    #[command(subcommand)]
    Ca(cert::CaCommand),
    /// Gateway certificates: issue, inspect, check.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Run the site gateway until SIGTERM/SIGINT.
    Run(gateway::RunArgs),
    /// Validate a config, its policy and its certificates.
    Check(gateway::CheckArgs),
    /// The pairing manifest.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Build and run a complete two-site pairing on loopback.
    Demo(gateway::DemoArgs),
    /// Ask the running gateway's admin endpoint for its state.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Write the man pages (pairgate.1 and one per subcommand).
    Man(docs::ManArgs),
    /// The encrypted store-and-forward spool: keys, listing, verification.
    #[command(subcommand)]
    Spool(spool::SpoolCommand),
    /// Measure pairgate side by side with HAProxy and stunnel on loopback.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Commands whose output is for a person or a pipe, which may die on
    /// SIGPIPE; the gateway, the demo and the bench never may.
    pub fn prints_for_a_pipe(&self) -> bool {
        !matches!(self, Command::Run(_) | Command::Demo(_) | Command::Bench(_))
    }
}

pub fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Ca(c) => cert::ca(c),
        Command::Cert(c) => cert::cert(c),
        Command::Run(a) => gateway::run(a),
        Command::Check(a) => gateway::check(a),
        Command::Policy(c) => policy::policy(c),
        Command::Audit(c) => audit::audit(c),
        Command::Demo(a) => gateway::demo(a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
        Command::Status(a) => status::status(a),
        Command::Spool(c) => spool::spool(c),
        Command::Bench(a) => bench::bench(a),
    }
}

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The command ran and found a problem (exit 1).
    Problem(anyhow::Error),
    /// Bad usage or invalid input (exit 2).
    Invalid(anyhow::Error),
}

impl Failure {
    pub fn problem(msg: impl std::fmt::Display) -> Failure {
        Failure::Problem(anyhow::anyhow!("{msg}"))
    }
    pub fn code(&self) -> u8 {
        match self {
            Failure::Problem(_) => 1,
            Failure::Invalid(_) => 2,
        }
    }
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Problem(e) | Failure::Invalid(e) => e,
        }
    }
}

/// Any error that escapes a command unclassified is invalid input (exit 2).
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Invalid(e.into())
    }
}

/// The one line printed for a failed command: the error, then each cause
/// whose text the line does not already hold. Many errors print their source
/// in their own message (`key file X: No such file…`) and also expose it as
/// `source()`; `{:#}` would say the same OS error two or three times.
pub fn render_error(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Diagnostics go to stderr through `tracing`; the audit log is separate.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("key file k: {source}; check the path")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_holds_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone (os error 2)");
        let error = anyhow::Error::new(Repeats { source: io })
            .context("spool: key file k: gone (os error 2); check the path");
        assert_eq!(
            render_error(&error),
            "spool: key file k: gone (os error 2); check the path"
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(render_error(&plain), "top: outer");
    }
}
