//! How long a certificate has left, judged one way everywhere: `cert
//! check` and `cert inspect`, `/status` (`days_left`), `pairgate status`
//! (RENEW, EXPIRED) and the gateway's log warning all use [`days_left`]
//! and [`Expiry`], so they never disagree about a certificate.

use time::OffsetDateTime;

/// Days before `not_after` from which a certificate counts as expiring
/// soon (`pairgate status`, the gateway's log; `cert check --warn-days`
/// defaults to it too).
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whole days from `now` until `not_after`, rounded down (on whole
/// seconds); negative once expired.
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    days_left_unix(not_after.unix_timestamp(), now.unix_timestamp())
}

/// [`days_left`] of Unix seconds.
pub fn days_left_unix(not_after: i64, now: i64) -> i64 {
    not_after.saturating_sub(now).div_euclid(86_400)
}

/// Where a certificate stands in its validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Valid, and not within the warning days of its end.
    Valid,
    /// Valid, but less than the warning days left: renew it.
    ExpiresSoon,
    /// Past `not_after`.
    Expired,
    /// Before `not_before` (often a clock that is behind).
    NotYetValid,
}

impl Expiry {
    /// The window `not_before..=not_after` judged at `now`; less than
    /// `warn_days` days left is [`Expiry::ExpiresSoon`].
    pub fn of(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
        warn_days: i64,
    ) -> Expiry {
        if now < not_before {
            Expiry::NotYetValid
        } else if now > not_after {
            Expiry::Expired
        } else if not_after - now < time::Duration::days(warn_days) {
            Expiry::ExpiresSoon
        } else {
            Expiry::Valid
        }
    }

    /// The verdict from whole days left alone (no start known): negative is
    /// [`Expiry::Expired`], below `warn_days` [`Expiry::ExpiresSoon`].
    pub fn of_days_left(days_left: i64, warn_days: i64) -> Expiry {
        if days_left < 0 {
            Expiry::Expired
        } else if days_left < warn_days {
            Expiry::ExpiresSoon
        } else {
            Expiry::Valid
        }
    }

    /// The snake-case name (`cert check --json` `verdict`).
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Valid => "ok",
            Expiry::ExpiresSoon => "expires_soon",
            Expiry::Expired => "expired",
            Expiry::NotYetValid => "not_yet_valid",
        }
    }

    /// Whether it is time to act (renew, or fix a clock).
    pub fn needs_attention(self) -> bool {
        self != Expiry::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn verdicts() {
        let now = OffsetDateTime::now_utc();
        let d = Duration::days;
        assert_eq!(Expiry::of(now - d(1), now + d(31), now, 30), Expiry::Valid);
        assert_eq!(
            Expiry::of(now - d(1), now + d(29), now, 30),
            Expiry::ExpiresSoon
        );
        assert_eq!(Expiry::of(now - d(9), now - d(1), now, 30), Expiry::Expired);
        assert_eq!(
            Expiry::of(now + d(1), now + d(9), now, 30),
            Expiry::NotYetValid
        );
        assert_eq!(Expiry::of(now - d(1), now + d(1), now, 0), Expiry::Valid);
    }

    #[test]
    fn days_are_floored() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(days_left(now + Duration::hours(47), now), 1);
        assert_eq!(days_left(now - Duration::hours(1), now), -1);
        assert_eq!(days_left(now, now), 0);
    }

    #[test]
    fn days_round_down_and_agree_with_the_verdict_from_days() {
        let now = datetime!(2025-01-01 12:00:00 UTC);
        assert_eq!(days_left(now + Duration::days(30), now), 30);
        assert_eq!(
            days_left(now + Duration::days(30) - Duration::SECOND, now),
            29
        );
        assert_eq!(days_left(now - Duration::SECOND, now), -1);
        for secs in [
            -86_401,
            -1,
            0,
            86_399,
            29 * 86_400,
            30 * 86_400 - 1,
            30 * 86_400,
        ] {
            let not_after = now + Duration::seconds(secs);
            let from_days = Expiry::of_days_left(days_left(not_after, now), 30);
            let from_window = Expiry::of(now - Duration::days(1), not_after, now, 30);
            assert_eq!(from_days, from_window, "{secs} s left");
        }
    }
}
