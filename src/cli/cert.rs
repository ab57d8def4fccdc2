//! `pairgate ca …` and `pairgate cert …`: thin wrappers over `pairgate::pki`.
//!
//! Each subcommand has its own args struct and function; the lifecycle
//! commands (`cert rotate|revoke`, `ca rotate|crl`) live in `cert/lifecycle.rs`.
//! Library errors propagate with `?` and become exit 2 (invalid input);
//! `cert check` reports what it found with exit 1.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::Table;
use pairgate::pki::{self, Ca, CertInfo, LeafRequest, Validity};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Failure;

mod check;
mod lifecycle;
mod passphrase;

use passphrase::CliPassphrase;
pub use passphrase::PassphraseArgs;

/// Longest validity `--days` accepts (100 years).
const MAX_DAYS: u32 = 36_500;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new private pairing CA: DIR/ca.crt, DIR/ca.key (0600) and
    /// an empty CRL DIR/ca.crl. Refuses to overwrite an existing CA.
    Init(CaInitArgs),
    /// Replace the CA: new DIR/ca.crt and DIR/ca.key, DIR/bundle.crt (new +
    /// previous CA) for the overlap, previous CA kept in DIR/previous.
    Rotate(lifecycle::CaRotateArgs),
    /// Show the CRLs in DIR/ca.crl: issuer, number, next update, revoked
    /// serials; --refresh re-signs them first (creating an empty one).
    Crl(lifecycle::CaCrlArgs),
}

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// Directory for ca.crt, ca.key and ca.crl (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The CA's common name.
    #[arg(long, value_name = "NAME", default_value = "pairgate pairing CA")]
    pub name: String,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = 3650,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    pub days: u32,
    /// Store ca.key encrypted under a passphrase (PKCS#8, scrypt +
    /// AES-256-CBC); every command that uses the key then asks for it.
    #[arg(long)]
    pub encrypt: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Key pair and certificate for the gateway that fronts pool FQDN:
    /// PREFIX.crt (leaf, then CA) and PREFIX.key (0600).
    Issue(IssueArgs),
    /// Show every certificate of a PEM file.
    Inspect(InspectArgs),
    /// Exit 1 if any certificate is expired, not yet valid, unreadable or
    /// expires within --warn-days.
    Check(CheckArgs),
    /// Fresh key and certificate with the same SANs, replacing PREFIX.crt and
    /// PREFIX.key atomically (works on expired certificates and lost keys).
    Rotate(lifecycle::RotateArgs),
    /// Add a gateway certificate to DIR/ca.crl (created if missing), signed
    /// by the CA that issued it.
    Revoke(lifecycle::RevokeArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// FQDN of the pool this gateway fronts; becomes the first DNS SAN.
    #[arg(long, value_name = "FQDN")]
    pub pool: String,
    /// Output prefix: writes PREFIX.crt and PREFIX.key.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Extra DNS SAN (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// Extra IP address SAN (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
    /// Validity in days (capped at the CA's own end).
    #[arg(long, value_name = "N", default_value_t = 397,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    pub days: u32,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PEM file with one or more certificates.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// One JSON object for the first certificate (plus `chain` when the file holds several).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Warn (exit 1) when a certificate expires within N days.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub warn_days: u32,
    /// PEM files to check.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per certificate (a JSON array), same exit code.
    #[arg(long)]
    pub json: bool,
    /// CA bundle to check each leaf's issuer against for the pairing
    /// profile (default: the CA certificates after the leaf in its file).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

pub fn ca(command: CaCommand) -> Result<(), Failure> {
    match command {
        CaCommand::Init(args) => ca_init(args),
        CaCommand::Rotate(args) => lifecycle::ca_rotate(args),
        CaCommand::Crl(args) => lifecycle::ca_crl(args),
    }
}

pub fn cert(command: CertCommand) -> Result<(), Failure> {
    match command {
        CertCommand::Issue(args) => cert_issue(args),
        CertCommand::Inspect(args) => cert_inspect(args),
        CertCommand::Check(args) => check::cert_check(args),
        CertCommand::Rotate(args) => lifecycle::cert_rotate(args),
        CertCommand::Revoke(args) => lifecycle::cert_revoke(args),
    }
}

fn ca_init(args: CaInitArgs) -> Result<(), Failure> {
    let mut ca = Ca::generate(&args.name, Validity::days_from_now(args.days))?;
    let key_path = args.dir.join(pki::CA_KEY_FILE);
    if args.encrypt {
        let secret = CliPassphrase::new(&args.passphrase).new_passphrase(&key_path)?;
        ca = ca.encrypted(secret)?;
    } else if args.passphrase.passphrase_file.is_some() {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "--passphrase-file without --encrypt: add --encrypt to store ca.key under a passphrase"
        )));
    }
    ca.write_new(&args.dir)?;
    let now = OffsetDateTime::now_utc();
    let info = pki::inspect_der(ca.cert_der(), now)?;
    // The first, empty CRL: a site can name `tls.crl` from the start, and the
    // first revocation only replaces a file the gateways already watch.
    let crl = pki::refresh_crl_with(
        &args.dir,
        pki::DEFAULT_NEXT_UPDATE_DAYS,
        now,
        &ca.passphrase_source(),
    )?;
    let dir = args.dir.display();
    println!("Created pairing CA {:?} in {dir}", args.name);
    println!(
        "  {}  certificate: give it to both sites (tls.ca)",
        args.dir.join(pki::CA_CERT_FILE).display()
    );
    println!(
        "  {}  private key, mode 0600{}: keep it offline once both sites have their certificates",
        key_path.display(),
        if ca.is_encrypted() {
            ", encrypted under your passphrase"
        } else {
            ""
        }
    );
    println!(
        "  {}  empty CRL (nothing revoked): give it to both sites (tls.crl, optional)",
        crl.crl_path.display()
    );
    println!("  sha256 {}", info.sha256);
    println!("  valid until {}", rfc3339(info.not_after));
    println!("Next: pairgate cert issue --ca-dir {dir} --pool <POOL FQDN> --out <PREFIX>");
    Ok(())
}

fn cert_issue(args: IssueArgs) -> Result<(), Failure> {
    let ca = Ca::load_with(&args.ca_dir, &CliPassphrase::new(&args.passphrase))?;
    let request = LeafRequest {
        pool: args.pool,
        dns: args.dns,
        ips: args.ip,
        validity: Validity::days_from_now(args.days),
    };
    let issued = ca.issue(&request)?;
    let (crt, key) = issued.write(&args.out)?;
    println!("Issued the gateway certificate for pool {}", request.pool);
    println!("  {}  certificate chain (leaf, then CA)", crt.display());
    println!("  {}  private key, mode 0600", key.display());
    println!("  sha256 {}", issued.sha256);
    let capped = if issued.not_after < request.validity.not_after {
        " (capped at the CA's own expiry)"
    } else {
        ""
    };
    println!("  valid until {}{capped}", rfc3339(issued.not_after));
    Ok(())
}

fn cert_inspect(args: InspectArgs) -> Result<(), Failure> {
    let infos = pki::inspect_file(&args.file, OffsetDateTime::now_utc())?;
    if args.json {
        println!("{}", inspect_json(&infos)?);
        return Ok(());
    }
    let total = infos.len();
    for (i, info) in infos.iter().enumerate() {
        let role = if info.is_ca { "CA" } else { "leaf" };
        println!("Certificate {} of {total} ({role})", i + 1);
        println!("{}", inspect_table(info));
    }
    Ok(())
}

/// `cert inspect --json`: the first certificate's fields, plus `chain`.
#[derive(Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    first: &'a CertInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<&'a [CertInfo]>,
}

/// The first certificate's object, plus `chain` (all of them) for several.
fn inspect_json(infos: &[CertInfo]) -> anyhow::Result<String> {
    let first = infos.first().context("no certificate to print")?;
    let chain = (infos.len() > 1).then_some(infos);
    Ok(serde_json::to_string_pretty(&InspectJson { first, chain })?)
}

fn inspect_table(info: &CertInfo) -> Table {
    let mut table = pairgate::table::new();
    let days = if info.days_left < 0 {
        format!("{} (EXPIRED)", info.days_left)
    } else {
        info.days_left.to_string()
    };
    let rows = [
        ("Subject", info.subject.clone()),
        ("Issuer", info.issuer.clone()),
        ("Serial", info.serial.clone()),
        ("SANs", info.sans.join("\n")),
        ("Not before", rfc3339(info.not_before)),
        ("Not after", rfc3339(info.not_after)),
        ("Days left", days),
        ("SHA-256", info.sha256.clone()),
        ("CA", if info.is_ca { "yes" } else { "no" }.to_string()),
    ];
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    table
}

/// RFC 3339 in UTC, whole seconds (what the certificate itself carries).
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn info(not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=y".into(),
            serial: "01".into(),
            sans: vec!["x".into()],
            not_before,
            not_after,
            days_left: 0,
            sha256: "00".into(),
            is_ca: false,
        }
    }

    #[test]
    fn json_has_chain_only_for_several() {
        let now = OffsetDateTime::now_utc();
        let one = vec![info(now, now)];
        let v: serde_json::Value = serde_json::from_str(&inspect_json(&one).unwrap()).unwrap();
        assert!(v.get("chain").is_none());
        assert_eq!(v["subject"], "CN=x");
        let two = vec![info(now, now), info(now, now)];
        let v: serde_json::Value = serde_json::from_str(&inspect_json(&two).unwrap()).unwrap();
        assert_eq!(v["chain"].as_array().map(Vec::len), Some(2));
    }
}
