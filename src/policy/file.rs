//! The policy file exactly as written: serde structs, no logic.
//!
//! Every field an error may point at is `Spanned` so validation can name its line;
//! unknown keys are rejected by serde (`deny_unknown_fields`) with toml's own position.

use serde::Deserialize;
use toml::Spanned;

/// The whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    /// `[[pair]]` tables.
    #[serde(default)]
    pub pair: Vec<Spanned<RawPair>>,
    /// `[[service]]` tables: services beyond the built-in ones.
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
}

/// One `[[pair]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPair {
    pub pools: Spanned<Vec<Spanned<String>>>,
    pub services: Spanned<Vec<Spanned<String>>>,
}

/// One `[[service]]` declaration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)] // documentation for humans; kept so the key is accepted
    pub description: Option<String>,
}
