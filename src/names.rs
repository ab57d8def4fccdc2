//! The two names everything else is keyed by, validated once.
//!
//! - [`PoolName`]: a Front End pool's DNS name (`gateway.pool`, the pools of
//!   a `[[pair]]`, the first DNS SAN of a gateway certificate). Compared
//!   case-insensitively, as DNS does; shown as written.
//! - [`ServiceName`]: what a pair may carry (`backup-smb`, `spool`, a
//!   declared `[[service]]`). It travels in ALPN as `pg1/<service>`, so one
//!   rule holds wherever a service name is read: the config, the policy,
//!   the ALPN a peer offers and the metrics labels.
//!
//! A value of either type is valid by construction: code that holds one
//! never checks it again.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest pool name (a DNS name).
pub const MAX_POOL_NAME_LEN: usize = 253;
/// Longest service name: it travels in ALPN as `pg1/<service>` and in
/// DNS-like places (one DNS label).
pub const MAX_SERVICE_NAME_LEN: usize = 63;

/// A DNS-ish pool name: dot-separated labels of 1–63 ASCII letters, digits
/// and '-', not starting or ending with '-', at most 253 characters, no
/// trailing dot.
pub fn is_valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POOL_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A service name: `[a-z0-9][a-z0-9-]*`, at most [`MAX_SERVICE_NAME_LEN`]
/// characters.
pub fn is_valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= MAX_SERVICE_NAME_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A name that is not a valid pool or service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid {what} name")]
pub struct InvalidName {
    pub name: String,
    pub what: &'static str,
}

/// A pool's DNS name, as written; equal to another regardless of case.
#[derive(Clone)]
pub struct PoolName(String);

impl PoolName {
    /// # Errors
    /// [`InvalidName`] unless [`is_valid_pool_name`].
    pub fn new(name: &str) -> Result<PoolName, InvalidName> {
        if is_valid_pool_name(name) {
            Ok(PoolName(name.to_owned()))
        } else {
            Err(InvalidName {
                name: name.to_owned(),
                what: "pool",
            })
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names this pool (case-insensitively).
    pub fn is(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl Deref for PoolName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq for PoolName {
    fn eq(&self, other: &PoolName) -> bool {
        self.is(&other.0)
    }
}

impl Eq for PoolName {}

impl PartialEq<str> for PoolName {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for PoolName {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl Hash for PoolName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<&str> for PoolName {
    type Error = InvalidName;
    fn try_from(name: &str) -> Result<PoolName, InvalidName> {
        PoolName::new(name)
    }
}

/// A service name; valid by construction ([`is_valid_service_name`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// # Errors
    /// [`InvalidName`] unless [`is_valid_service_name`].
    pub fn new(name: &str) -> Result<ServiceName, InvalidName> {
        if is_valid_service_name(name) {
            Ok(ServiceName(name.to_owned()))
        } else {
            Err(InvalidName {
                name: name.to_owned(),
                what: "service",
            })
        }
    }

    /// A name known to be valid at compile time (the built-in services).
    ///
    /// # Panics
    /// If `name` is not valid: a bug in the constant, caught by the tests.
    pub(crate) fn known(name: &'static str) -> ServiceName {
        assert!(
            is_valid_service_name(name),
            "{name:?} is not a service name"
        );
        ServiceName(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ServiceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ServiceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ServiceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<str> for ServiceName {
    fn partial_cmp(&self, other: &str) -> Option<Ordering> {
        Some(self.0.as_str().cmp(other))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = InvalidName;
    fn try_from(name: &str) -> Result<ServiceName, InvalidName> {
        ServiceName::new(name)
    }
}

impl serde::Serialize for PoolName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl serde::Serialize for ServiceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names() {
        for good in ["pool01.site1.example", "POOL-1.x", "a", "127.0.0.1"] {
            assert!(is_valid_pool_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a.",
            "a_b",
            &"x".repeat(64),
        ] {
            assert!(!is_valid_pool_name(bad), "{bad}");
        }
        for good in ["backup-smb", "0x", "a"] {
            assert!(is_valid_service_name(good), "{good}");
        }
        for bad in ["", "-a", "Backup", "a_b", "a/b", &"x".repeat(64)] {
            assert!(!is_valid_service_name(bad), "{bad}");
        }
        assert!(ServiceName::new(&"x".repeat(MAX_SERVICE_NAME_LEN)).is_ok());
    }

    #[test]
    fn pool_names_are_equal_and_hash_alike_whatever_the_case_and_show_as_written() {
        let a = PoolName::new("Pool01.Site1.example").unwrap_or_else(|e| panic!("{e}"));
        let b = PoolName::new("pool01.site1.EXAMPLE").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert!(a == "POOL01.SITE1.EXAMPLE");
        assert_eq!(HashSet::from([a.clone(), b]).len(), 1);
        assert_eq!(a.to_string(), "Pool01.Site1.example");
        assert!(PoolName::new("a b").is_err());
    }
}
