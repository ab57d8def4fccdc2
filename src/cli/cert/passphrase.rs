//! Where the CLI gets the CA key's passphrase: `--passphrase-file FILE`,
//! else the `PAIRGATE_CA_PASSPHRASE` environment variable, else a prompt on
//! the terminal (never echoed). Asked only when the key is encrypted, at
//! most once per command (`ca rotate` opens two keys under one passphrase).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Args;
use pairgate::pki::{self, Passphrase, PkiError};
use zeroize::Zeroizing;

/// The environment variable holding the CA key's passphrase (automation).
pub const PASSPHRASE_ENV: &str = "PAIRGATE_CA_PASSPHRASE";

#[derive(Debug, Clone, Default, Args)]
pub struct PassphraseArgs {
    /// File holding the passphrase of an encrypted CA key (its first line;
    /// 0600 like a key). Default: $PAIRGATE_CA_PASSPHRASE, else a prompt.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The CLI's [`Passphrase`] source; see the module docs.
#[derive(Debug)]
pub struct CliPassphrase {
    file: Option<PathBuf>,
    asked: Mutex<Option<Zeroizing<String>>>,
}

impl CliPassphrase {
    pub fn new(args: &PassphraseArgs) -> CliPassphrase {
        CliPassphrase {
            file: args.passphrase_file.clone(),
            asked: Mutex::new(None),
        }
    }

    /// A passphrase for a new encrypted key (`ca init --encrypt`): from the
    /// file or the environment, or typed twice on the terminal.
    ///
    /// # Errors
    /// [`PkiError::KeyEncrypted`] without any source, or when the two typed
    /// passphrases differ; [`PkiError::Io`] for an unreadable file.
    pub fn new_passphrase(&self, key: &Path) -> Result<Zeroizing<String>, PkiError> {
        if let Some(given) = self.given()? {
            return Ok(given);
        }
        if !std::io::stdin().is_terminal() {
            return Err(PkiError::KeyEncrypted {
                path: key.to_path_buf(),
            });
        }
        let prompt = |text: String| {
            rpassword::prompt_password(text)
                .map(Zeroizing::new)
                .map_err(tty_error)
        };
        let first = prompt(format!("New passphrase for {}: ", key.display()))?;
        let again = prompt("The same passphrase again: ".to_owned())?;
        if *first != *again {
            return Err(PkiError::Io {
                path: key.to_path_buf(),
                action: "encrypt",
                err: std::io::Error::other("the two passphrases differ; nothing was written"),
            });
        }
        Ok(first)
    }

    /// The passphrase from `--passphrase-file` or the environment, if given.
    fn given(&self) -> Result<Option<Zeroizing<String>>, PkiError> {
        if let Some(file) = &self.file {
            // A passphrase file is a secret like a key: same rules.
            pki::check_key_permissions(file)?;
            let text = Zeroizing::new(pki::read_text(file)?);
            let line = text.lines().next().unwrap_or_default();
            return Ok(Some(Zeroizing::new(line.to_owned())));
        }
        Ok(std::env::var(PASSPHRASE_ENV).ok().map(Zeroizing::new))
    }
}

fn tty_error(err: std::io::Error) -> PkiError {
    PkiError::Io {
        path: PathBuf::from("/dev/tty"),
        action: "read the passphrase from",
        err,
    }
}

impl Passphrase for CliPassphrase {
    fn passphrase(&self, key: &Path) -> Result<Zeroizing<String>, PkiError> {
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = asked.as_ref() {
            return Ok(known.clone());
        }
        let secret = match self.given()? {
            Some(given) => given,
            None if std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("Passphrase for {}: ", key.display()))
                    .map(Zeroizing::new)
                    .map_err(tty_error)?
            }
            None => {
                return Err(PkiError::KeyEncrypted {
                    path: key.to_path_buf(),
                })
            }
        };
        *asked = Some(secret.clone());
        Ok(secret)
    }
}
