//! The replay window: a sealed spool file is authentic forever (its key
//! does not expire), so a copy of one put back into `outgoing/` after the
//! receiver forgot its id would be delivered again. The receiver forgets
//! an id when it prunes the `delivered/<id>` marker; so it refuses any file
//! created longer ago than `spool.max_age_days` at its origin, and keeps
//! the markers longer than that ([`Store::marker_ttl`]): every file young
//! enough to be taken is either new or remembered.
//!
//! - An id still remembered (in `incoming/` or marked delivered) is
//!   answered ALREADY, as before: that is also the honest resend after a
//!   lost ACK, and nothing reaches the inbox twice either way.
//! - A file older than the window is refused with [`Refusal::Replayed`]
//!   (permanent), audited `spool_replayed` at the receiver; the sender
//!   quarantines its copy (`spool_quarantined`, reason `replayed: …`).
//!
//! Clocks: `created` is the sender's clock. The receiver judges it against
//! its own clock moved onto the sender's by the offset measured on the
//! heartbeat (`/status` `peer_link.clock_skew_secs`; 0 until measured), so
//! a sender whose clock is behind by hours does not look older by hours.
//! An unmeasured offset is at most the (warned-about) clock error, tiny
//! next to a window counted in days.
//!
//! [`Refusal::Replayed`]: super::refusal::Refusal::Replayed

use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;

use super::store::Store;
use super::Metadata;

/// The least time delivery markers are kept, whatever the window.
pub const MIN_MARKER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How much longer than the window markers are kept: room for clock skew.
pub const MARKER_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// Why a file is a replay, if it is one: `created` (sender's clock) older
/// than `max_age` at `now` (ours), our clock moved by `peer_skew_ms` (the
/// peer's clock minus ours). Pure.
pub fn replayed(
    created: OffsetDateTime,
    now: OffsetDateTime,
    peer_skew_ms: i64,
    max_age: Duration,
) -> Option<String> {
    let peer_now = now + time::Duration::milliseconds(peer_skew_ms);
    let age = peer_now - created;
    let max = time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX);
    (age > max).then(|| {
        format!(
            "created {} at its origin, {} days ago, beyond spool.max_age_days = {} (peer clock offset {} s taken into account): \
             a replay of an old sealed file, or one that waited longer than the window — refused for good",
            crate::audit::format_ts(created),
            age.whole_days(),
            max_age.as_secs() / 86_400,
            peer_skew_ms / 1000
        )
    })
}

impl Store {
    /// How long `delivered/` markers are kept: longer than the replay
    /// window (plus [`MARKER_MARGIN`]), and never less than
    /// [`MIN_MARKER_TTL`].
    pub fn marker_ttl(&self) -> Duration {
        (self.max_age + MARKER_MARGIN).max(MIN_MARKER_TTL)
    }

    /// Records the peer's measured clock offset (peer minus ours), for
    /// judging `created` ([`Store::replayed`]).
    pub fn set_peer_skew(&self, skew_secs: Option<f64>) {
        #[allow(clippy::cast_possible_truncation)]
        let ms = skew_secs.map_or(0, |s| (s * 1000.0).round() as i64);
        self.peer_skew_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether an offered file is a replay (see the module docs).
    pub fn replayed(&self, meta: &Metadata) -> Option<String> {
        replayed(
            meta.created,
            OffsetDateTime::now_utc(),
            self.peer_skew_ms.load(Ordering::Relaxed),
            self.max_age,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn older_than_the_window_is_a_replay_judged_on_the_senders_clock() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let window = 30 * DAY;
        let recent = now - time::Duration::days(29);
        let old = now - time::Duration::days(31);
        assert_eq!(replayed(recent, now, 0, window), None);
        let why = replayed(old, now, 0, window).unwrap_or_default();
        assert!(
            why.contains("31 days ago") && why.contains("max_age_days = 30"),
            "{why}"
        );
        // The sender's clock is two days behind ours: its "29 days ago" is
        // 31 by our clock, but 29 by its own — taken.
        let behind = -2 * 86_400_000;
        let created = now - time::Duration::days(31);
        assert_eq!(replayed(created, now, behind, window), None);
        // Ahead by two days: a file it stamped 29 days ago is 29 days old.
        let ahead = 2 * 86_400_000;
        let created = now + time::Duration::days(2) - time::Duration::days(29);
        assert_eq!(replayed(created, now, ahead, window), None);
        assert!(replayed(created - time::Duration::days(2), now, ahead, window).is_some());
    }

    #[test]
    fn markers_outlive_the_window() {
        for days in [1, 30, 90] {
            let ttl = (days * DAY + MARKER_MARGIN).max(MIN_MARKER_TTL);
            assert!(ttl > days * DAY && ttl >= MIN_MARKER_TTL);
        }
    }
}
