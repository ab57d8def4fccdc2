//! The `[spool]` and `[limits]` sections: sizes, durations and counts, each
//! checked where it is read with the error naming its line.

use std::time::Duration;

use toml::Spanned;

use super::super::file::{RawLimits, RawSpool};
use super::super::{ConfigError, Limits, Spool};
use super::Validator;

impl Validator<'_> {
    pub(super) fn spool(&self, raw: &RawSpool) -> Result<Spool, ConfigError> {
        let max_bytes = match &raw.max_bytes {
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.invalid(
                    &m.span(),
                    "spool.max_bytes",
                    "is 0, so nothing could ever be spooled".into(),
                    "set a size in bytes, or remove the key for no limit",
                ));
            }
            other => other.as_ref().map(|m| *m.get_ref()),
        };
        let settle_ms = match &raw.settle_ms {
            Some(v) if *v.get_ref() > Spool::MAX_SETTLE_MS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.settle_ms",
                    format!("is {} ms, more than ten minutes", v.get_ref()),
                    format!(
                        "set it between 0 and {} (default {}): how long an outbox file must stay unchanged before it is taken",
                        Spool::MAX_SETTLE_MS,
                        Spool::DEFAULT_SETTLE_MS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_SETTLE_MS,
        };
        let stall_secs = match &raw.stall_secs {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > Spool::MAX_STALL_SECS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.stall_secs",
                    format!("is {}, outside 1..={}", v.get_ref(), Spool::MAX_STALL_SECS),
                    format!(
                        "set the seconds a transfer may make no progress before the link is dropped (default {}; keep it well under the 2-minute sync interval)",
                        Spool::DEFAULT_STALL_SECS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_STALL_SECS,
        };
        let max_age_days = match &raw.max_age_days {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > Spool::MAX_MAX_AGE_DAYS => {
                return Err(self.invalid(
                    &v.span(),
                    "spool.max_age_days",
                    format!(
                        "is {}, outside 1..={}",
                        v.get_ref(),
                        Spool::MAX_MAX_AGE_DAYS
                    ),
                    format!(
                        "set the days after which a received file counts as a replay (default {}; \
                         longer than the longest outage the spool must ride out)",
                        Spool::DEFAULT_MAX_AGE_DAYS
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => Spool::DEFAULT_MAX_AGE_DAYS,
        };
        Ok(Spool {
            max_age: Duration::from_secs(max_age_days * 86_400),
            settle: Duration::from_millis(settle_ms),
            stall: Duration::from_secs(stall_secs),
            dir: self.file_path("spool.dir", &raw.dir)?,
            key: self.file_path("spool.key", &raw.key)?,
            outbox: self.file_path("spool.outbox", &raw.outbox)?,
            inbox: self.file_path("spool.inbox", &raw.inbox)?,
            max_bytes,
            old_keys: raw
                .old_keys
                .iter()
                .map(|k| self.file_path("spool.old_keys", k))
                .collect::<Result<_, _>>()?,
        })
    }

    pub(super) fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let positive = |key: &str, value: &Option<Spanned<u64>>, default: u64| match value {
            Some(v) if *v.get_ref() == 0 => Err(self.invalid(
                &v.span(),
                key,
                "is 0".into(),
                "use a positive number, or remove the key for the default",
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let handshake = positive(
            "limits.handshake_timeout_secs",
            &raw.handshake_timeout_secs,
            d.handshake_timeout.as_secs(),
        )?;
        let idle = positive(
            "limits.idle_timeout_secs",
            &raw.idle_timeout_secs,
            d.idle_timeout.as_secs(),
        )?;
        let max = positive(
            "limits.max_connections",
            &raw.max_connections,
            Limits::DEFAULT_MAX_CONNECTIONS as u64,
        )?;
        let max_connections = usize::try_from(max).map_err(|_| {
            let span = raw.max_connections.as_ref().map_or(0..0, Spanned::span);
            self.invalid(
                &span,
                "limits.max_connections",
                format!("{max} is too large"),
                "use a smaller number",
            )
        })?;
        let per_source = positive(
            "limits.max_handshakes_per_source",
            &raw.max_handshakes_per_source,
            Limits::DEFAULT_MAX_HANDSHAKES_PER_SOURCE as u64,
        )?;
        let per_peer = positive(
            "limits.max_handshakes_per_peer",
            &raw.max_handshakes_per_peer,
            Limits::DEFAULT_MAX_HANDSHAKES_PER_PEER as u64,
        )?;
        let grace = raw
            .shutdown_grace_secs
            .as_ref()
            .map_or(d.shutdown_grace.as_secs(), |g| *g.get_ref());
        let delay = match &raw.shutdown_delay_secs {
            Some(v) if *v.get_ref() > 3600 => Err(self.invalid(
                &v.span(),
                "limits.shutdown_delay_secs",
                format!("{} is more than an hour", v.get_ref()),
                "use the health-check time of your load balancer or keepalived (a few seconds)",
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(0),
        }?;
        Ok(Limits {
            handshake_timeout: Duration::from_secs(handshake),
            idle_timeout: Duration::from_secs(idle),
            max_connections,
            max_handshakes_per_source: usize::try_from(per_source).unwrap_or(usize::MAX),
            max_handshakes_per_peer: usize::try_from(per_peer).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(grace),
            shutdown_delay: Duration::from_secs(delay),
        })
    }
}
