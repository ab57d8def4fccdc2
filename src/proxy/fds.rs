//! File descriptors for the connection cap.
//!
//! Every relayed connection holds two sockets (client and peer, or peer and
//! export target), so `limits.max_connections` is only real if the process
//! may open about twice that many files. The usual soft limit is 1,024
//! (systemd's default, most shells'), which ran out long before the cap: a
//! burst then failed with `EMFILE` in accept or connect. At start the
//! gateway raises its soft limit as far as the hard limit allows (as Go
//! programs and most servers do), and says once if even that is too low.

/// Descriptors besides the relayed sockets: listeners, the audit log, the
/// spool, the admin endpoint, the runtime's own.
const RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to what `max_connections` needs (never
/// lowers it); returns the limit now in force.
pub(super) fn ensure_for(max_connections: usize) -> Option<u64> {
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVE);
    match rlimit::increase_nofile_limit(want) {
        Ok(now) if now < want => {
            tracing::warn!(
                limit = now,
                needed = want,
                max_connections,
                "the open-file limit is below what limits.max_connections needs: raise \
                 LimitNOFILE (systemd) or `ulimit -n`, or lower limits.max_connections"
            );
            Some(now)
        }
        Ok(now) => Some(now),
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_covers_a_small_cap_and_is_never_lowered() {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0;
        let now = super::ensure_for(16).unwrap();
        assert!(now >= 16 * 2 + super::RESERVE || now >= before);
        assert!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0 >= before);
    }
}
