//! The certificate lifecycle commands: `cert rotate`, `cert revoke`,
//! `ca rotate`, `ca crl`. Each prints what it changed and what the operator
//! has to do next; the work is in `pairgate::pki`.

use std::path::PathBuf;

use clap::Args;
use pairgate::pki::{self, Ca, CaRotateOptions, RevokeReason, RevokeRequest, Validity};
use serde::Serialize;
use time::OffsetDateTime;

use super::{rfc3339, CliPassphrase, Failure, PassphraseArgs, MAX_DAYS};

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Directory holding ca.crt and ca.key (the CA that signs the new certificate).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Prefix of the certificate to replace: PREFIX.crt and PREFIX.key.
    #[arg(long, value_name = "PREFIX")]
    pub cert: PathBuf,
    /// Validity of the new certificate in days.
    #[arg(long, value_name = "N", default_value_t = 397,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    pub days: u32,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Directory holding ca.crt and ca.key; the CRL is DIR/ca.crl.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// PEM file whose first certificate is the gateway certificate to revoke.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation or privilege-withdrawn.
    #[arg(long, value_name = "R", default_value = "unspecified")]
    pub reason: RevokeReason,
    /// Days until the CRL's next update.
    #[arg(long, value_name = "N", default_value_t = pki::DEFAULT_NEXT_UPDATE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub next_update_days: u32,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
pub struct CaRotateArgs {
    /// Directory holding the current ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Validity of the new CA in days.
    #[arg(long, value_name = "N", default_value_t = 3650,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    pub days: u32,
    /// The new CA's common name (default: the current name with the next
    /// generation number, e.g. "pairgate pairing CA #2"). Must differ from
    /// the current name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Delete the CA kept in DIR/previous by the last rotation. Only once no
    /// gateway uses a certificate from it any more.
    #[arg(long)]
    pub force_drop_previous: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

#[derive(Debug, Args)]
pub struct CaCrlArgs {
    /// The CA directory; shows DIR/ca.crl.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// One JSON object: `path` and `crls` (issuer, number, this_update,
    /// next_update, revoked: serial, revoked_at, reason).
    #[arg(long)]
    pub json: bool,
    /// First re-sign the CRL with the next number and fresh dates, entries
    /// unchanged (creates an empty CRL if there is none). Needs DIR/ca.key.
    #[arg(long)]
    pub refresh: bool,
    /// With --refresh: days until the CRL's next update.
    #[arg(long, value_name = "N", default_value_t = pki::DEFAULT_NEXT_UPDATE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650), requires = "refresh")]
    pub next_update_days: u32,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

pub fn cert_rotate(args: RotateArgs) -> Result<(), Failure> {
    let ca = Ca::load_with(&args.ca_dir, &CliPassphrase::new(&args.passphrase))?;
    let done = pki::rotate_leaf(&ca, &args.cert, Validity::days_from_now(args.days))?;
    let now = OffsetDateTime::now_utc();
    let old_state = if done.old_not_after < now {
        "expired"
    } else {
        "was valid until"
    };
    println!("Rotated the gateway certificate for pool {}", done.pool);
    println!(
        "  {}  new certificate chain (leaf, then CA)",
        done.cert_path.display()
    );
    println!("  {}  new private key, mode 0600", done.key_path.display());
    println!("  SANs         {}", done.sans.join(", "));
    println!(
        "  old sha256   {} ({old_state} {})",
        done.old_sha256,
        rfc3339(done.old_not_after)
    );
    println!("  new sha256   {}", done.new_sha256);
    println!("  valid until  {}", rfc3339(done.not_after));
    if done.old_issuer != done.new_issuer {
        println!(
            "  issuer       {} (was {})",
            done.new_issuer, done.old_issuer
        );
    }
    println!(
        "A gateway using these files switches to them by itself (file watch or SIGHUP); \
         established connections keep running. Copy them to the site if it runs elsewhere."
    );
    Ok(())
}

pub fn cert_revoke(args: RevokeArgs) -> Result<(), Failure> {
    let request = RevokeRequest {
        ca_dir: &args.ca_dir,
        cert: &args.cert,
        reason: args.reason,
        next_update_days: args.next_update_days,
    };
    let done = pki::revoke_with(
        &request,
        OffsetDateTime::now_utc(),
        &CliPassphrase::new(&args.passphrase),
    )?;
    if done.already_revoked {
        println!(
            "{} (serial {}) was already revoked; the CRL was re-signed with fresh dates",
            done.subject, done.serial
        );
    } else {
        println!(
            "Revoked {} (serial {}), reason {}",
            done.subject, done.serial, args.reason
        );
    }
    let signer = if done.by_previous_ca {
        format!(
            " (signed by the previous CA in {})",
            args.ca_dir.join(pki::PREVIOUS_DIR).display()
        )
    } else {
        String::new()
    };
    println!(
        "  {}  CRL number {}, {} revoked{signer}",
        done.crl_path.display(),
        done.crl.number,
        done.crl.revoked.len()
    );
    if let Some(next) = done.crl.next_update {
        println!("  next update  {}", rfc3339(next));
    }
    println!(
        "Next: copy {} to both sites (tls.crl); gateways reload it by themselves and refuse \
         the revoked certificate on new connections. Refresh it before the next update with \
         `pairgate ca crl --dir {} --refresh`.",
        done.crl_path.display(),
        args.ca_dir.display()
    );
    Ok(())
}

pub fn ca_rotate(args: CaRotateArgs) -> Result<(), Failure> {
    let options = CaRotateOptions {
        name: args.name,
        validity: Validity::days_from_now(args.days),
        force_drop_previous: args.force_drop_previous,
    };
    let done = pki::rotate_ca_with(&args.dir, &options, &CliPassphrase::new(&args.passphrase))?;
    let dir = args.dir.display();
    if done.resumed {
        println!("Finished an interrupted CA rotation in {dir}");
    }
    if let Some(sha) = &done.dropped_sha256 {
        println!("Dropped the previous CA (sha256 {sha}): its certificates are no longer trusted");
    }
    println!(
        "Rotated the pairing CA in {dir}: {:?} -> {:?}",
        done.old_name, done.name
    );
    println!(
        "  {}, {}  new CA (signs from now on), sha256 {}, valid until {}",
        args.dir.join(pki::CA_CERT_FILE).display(),
        args.dir.join(pki::CA_KEY_FILE).display(),
        done.new_sha256,
        rfc3339(done.not_after)
    );
    println!(
        "  {}  new + previous CA: tls.ca at both sites during the overlap",
        done.bundle_path.display()
    );
    println!(
        "  {}  previous CA (sha256 {}), key kept 0600 to revoke its certificates",
        done.previous_dir.display(),
        done.old_sha256
    );
    if let Some(crl) = &done.crl_path {
        println!(
            "  {}  CRLs of the new and the previous CA (tls.crl)",
            crl.display()
        );
    }
    println!("Next steps, in this order:");
    println!(
        "  1. At BOTH sites, copy {} over the file tls.ca names (running gateways pick it up; \
         changing the tls.ca path itself would need a restart).",
        done.bundle_path.display()
    );
    println!(
        "  2. Reissue both gateway certificates from the new CA: \
         `pairgate cert rotate --ca-dir {dir} --cert <PREFIX>` for each site, and copy each \
         site its new .crt/.key{}.",
        if done.crl_path.is_some() {
            " and the new ca.crl"
        } else {
            ""
        }
    );
    println!(
        "  3. Once both sites run on the new certificates, copy {} over the tls.ca file at both sites.",
        args.dir.join(pki::CA_CERT_FILE).display()
    );
    println!(
        "  4. Only then end the overlap: the next `pairgate ca rotate --force-drop-previous` \
         deletes {} (keep its key offline until then).",
        done.previous_dir.display()
    );
    Ok(())
}

/// `ca crl --json`.
#[derive(Serialize)]
struct CrlJson<'a> {
    path: String,
    crls: &'a [pki::CrlInfo],
}

pub fn ca_crl(args: CaCrlArgs) -> Result<(), Failure> {
    if args.refresh {
        let done = pki::refresh_crl_with(
            &args.dir,
            args.next_update_days,
            OffsetDateTime::now_utc(),
            &CliPassphrase::new(&args.passphrase),
        )?;
        // Stdout stays the listing (JSON with --json); what changed goes to stderr.
        eprintln!(
            "{} {} (CRL number {}{}); copy it to both sites (tls.crl), gateways reload it by themselves",
            if done.created { "created" } else { "refreshed" },
            done.crl_path.display(),
            done.crl.number,
            if done.previous.is_some() {
                ", and the previous CA's"
            } else {
                ""
            }
        );
    }
    let path = args.dir.join(pki::CRL_FILE);
    let crls = if path.exists() {
        pki::inspect_crl_file(&path)?
    } else {
        Vec::new()
    };
    if args.json {
        let out = CrlJson {
            path: path.display().to_string(),
            crls: &crls,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if crls.is_empty() {
        println!("{}: no CRL, nothing revoked", path.display());
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    for (i, crl) in crls.iter().enumerate() {
        let next = match crl.next_update {
            Some(t) if t < now => format!(
                "{} (OVERDUE: refresh with `pairgate ca crl --refresh`)",
                rfc3339(t)
            ),
            Some(t) => rfc3339(t),
            None => "none".into(),
        };
        println!(
            "{} [{} of {}] issuer {}: number {}, this update {}, next update {next}",
            path.display(),
            i + 1,
            crls.len(),
            crl.issuer,
            crl.number,
            rfc3339(crl.this_update)
        );
        for entry in &crl.revoked {
            let reason = entry.reason.as_deref().unwrap_or("unspecified");
            println!(
                "  {}  revoked {}  {reason}",
                entry.serial,
                rfc3339(entry.revoked_at)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
#[path = "lifecycle_tests.rs"]
mod tests;
