//! Certificate validity windows and clocks: telling "expired" from "not yet
//! valid", and telling a bad certificate from a bad clock.
//!
//! A certificate checked against a clock that is behind looks not yet valid;
//! against one that is ahead, expired. When the *peer* refuses our
//! certificate for its window, TLS has one alert for both
//! (`certificate_expired`, RFC 8446 §6.2: "expired or not currently valid"),
//! so the refused side learns nothing from the alert alone. [`refusal`]
//! puts it together from what we know: our certificate's window, our clock,
//! and the peer's clock offset measured on the control channel, when known.
//! The side that checked reports its own finding exactly
//! ([`local_detail`]).

use rustls::{AlertDescription, CertificateError, Error};
use time::OffsetDateTime;

use super::material::Material;
use crate::policy::DenyReason;

/// The audit reason and an operator-facing detail for a failed TLS
/// handshake (or a connection the peer cut with an alert right after it).
///
/// `peer_skew_secs` is the peer's clock minus ours, if measured.
pub fn refusal(
    err: &std::io::Error,
    own: &Material,
    peer_skew_secs: Option<f64>,
) -> (DenyReason, String) {
    let Some(tls) = super::rustls_error(err) else {
        return (DenyReason::HandshakeFailed, err.to_string());
    };
    refusal_at(tls, own.validity, OffsetDateTime::now_utc(), peer_skew_secs)
}

/// [`refusal`] for a rustls error, with our certificate's window
/// (`not_before`, `not_after`, Unix seconds) and `now` given.
pub fn refusal_at(
    err: &Error,
    own_window: (i64, i64),
    now: OffsetDateTime,
    peer_skew_secs: Option<f64>,
) -> (DenyReason, String) {
    match err {
        Error::AlertReceived(AlertDescription::CertificateExpired) => {
            peer_refused_window(own_window, now, peer_skew_secs)
        }
        Error::InvalidCertificate(e) => (super::deny_reason(err), local_detail(e, now)),
        _ => (super::deny_reason(err), err.to_string()),
    }
}

/// What our own check of the peer's certificate found, in words.
pub fn local_detail(err: &CertificateError, now: OffsetDateTime) -> String {
    match err {
        CertificateError::NotValidYetContext { time, not_before } => {
            let early = i64::try_from(not_before.as_secs().saturating_sub(time.as_secs()))
                .unwrap_or(i64::MAX);
            format!(
                "the peer's certificate is not valid yet: valid from {}, our clock says {} ({} early) — if it was just issued, our clock is probably behind, or the issuing host's ahead: check time synchronisation (NTP) at both sites",
                stamp(i64::try_from(not_before.as_secs()).unwrap_or(i64::MAX)),
                stamp(now.unix_timestamp()),
                span(early)
            )
        }
        CertificateError::ExpiredContext { time, not_after } => {
            let late = i64::try_from(time.as_secs().saturating_sub(not_after.as_secs()))
                .unwrap_or(i64::MAX);
            format!(
                "the peer's certificate has expired: valid until {}, our clock says {} ({} ago) — rotate it with `pairgate cert rotate`, or check this host's clock",
                stamp(i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX)),
                stamp(now.unix_timestamp()),
                span(late)
            )
        }
        CertificateError::Other(other) => match other
            .0
            .downcast_ref::<super::profile::ProfileViolation>()
        {
            Some(violation) => format!(
                "the peer's certificate is outside the pairing certificate profile: {violation} — \
                 issue it with `pairgate cert issue`"
            ),
            None => Error::InvalidCertificate(CertificateError::Other(other.clone())).to_string(),
        },
        other => Error::InvalidCertificate(other.clone()).to_string(),
    }
}

/// The peer said `certificate_expired` about *our* certificate.
fn peer_refused_window(
    (not_before, not_after): (i64, i64),
    now: OffsetDateTime,
    peer_skew_secs: Option<f64>,
) -> (DenyReason, String) {
    let now_s = now.unix_timestamp();
    let window = format!(
        "by our clock ({}) it is valid from {} to {}",
        stamp(now_s),
        stamp(not_before),
        stamp(not_after)
    );
    // The peer's clock, when measured; else what our window suggests.
    #[allow(clippy::cast_possible_truncation)]
    let peer_now = peer_skew_secs.map(|s| now_s.saturating_add(s.round() as i64));
    let (reason, why) = match peer_now {
        _ if now_s < not_before => (DenyReason::NotYetValid, "our own clock agrees: it is not valid yet — was it issued on a host whose clock is ahead?".to_owned()),
        _ if now_s > not_after => (DenyReason::Expired, "our own clock agrees: it has expired — run `pairgate cert rotate`".to_owned()),
        Some(peer) if peer < not_before => (DenyReason::NotYetValid, format!("the peer's clock, measured {} behind ours, is before its start", span(now_s.saturating_sub(peer)))),
        Some(peer) if peer > not_after => (DenyReason::Expired, format!("the peer's clock, measured {} ahead of ours, is past its end", span(peer.saturating_sub(now_s)))),
        // Nearer its start than its end: the peer's clock is behind.
        _ if now_s.saturating_sub(not_before) < not_after.saturating_sub(now_s) => (DenyReason::NotYetValid, format!("it was issued {} ago, so the peer's clock is probably behind by at least that", span(now_s.saturating_sub(not_before)))),
        _ => (DenyReason::Expired, format!("it expires in {}, so the peer's clock is probably ahead by at least that", span(not_after.saturating_sub(now_s)))),
    };
    let seen = match reason {
        DenyReason::NotYetValid => "not yet valid",
        _ => "expired",
    };
    (
        reason,
        format!(
            "the peer refused our certificate as {seen} (TLS alert certificate_expired, sent for both); {window}; {why} — check time synchronisation (NTP) at both sites"
        ),
    )
}

fn stamp(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_or_else(|_| format!("@{unix}"), crate::audit::format_ts)
}

/// `2 h 0 min`, `5 min 3 s`, `42 s`.
fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min {} s", s / 60, s % 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use std::time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00:00 UTC);

    fn at(offset: i64) -> i64 {
        NOW.unix_timestamp() + offset
    }

    fn unix(secs: i64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs.unsigned_abs()))
    }

    const ALERT: Error = Error::AlertReceived(AlertDescription::CertificateExpired);

    #[test]
    fn a_young_certificate_refused_by_the_peer_means_its_clock_is_behind() {
        // Issued 5 minutes ago, valid 30 days; no skew measured.
        let window = (at(-300), at(30 * 86_400));
        let (reason, detail) = refusal_at(&ALERT, window, NOW, None);
        assert_eq!(reason, DenyReason::NotYetValid);
        assert!(detail.contains("issued 5 min 0 s ago"), "{detail}");
        assert!(
            detail.contains("peer's clock is probably behind"),
            "{detail}"
        );
        assert!(detail.contains("NTP"), "{detail}");
    }

    #[test]
    fn a_measured_skew_decides_and_is_named() {
        let window = (at(-300), at(30 * 86_400));
        let (reason, detail) = refusal_at(&ALERT, window, NOW, Some(-7200.0));
        assert_eq!(reason, DenyReason::NotYetValid);
        assert!(detail.contains("measured 2 h 0 min behind"), "{detail}");
        // A peer 31 days ahead sees the same certificate expired.
        let (reason, detail) = refusal_at(&ALERT, window, NOW, Some(31.0 * 86_400.0));
        assert_eq!(reason, DenyReason::Expired);
        assert!(detail.contains("ahead of ours"), "{detail}");
    }

    #[test]
    fn an_old_certificate_refused_by_the_peer_means_its_clock_is_ahead() {
        let window = (at(-29 * 86_400), at(3600));
        let (reason, detail) = refusal_at(&ALERT, window, NOW, None);
        assert_eq!(reason, DenyReason::Expired);
        assert!(detail.contains("probably ahead"), "{detail}");
    }

    #[test]
    fn our_own_check_names_the_times_and_the_clock() {
        let early = Error::InvalidCertificate(CertificateError::NotValidYetContext {
            time: unix(at(0)),
            not_before: unix(at(3600)),
        });
        let (reason, detail) = refusal_at(&early, (0, 0), NOW, None);
        assert_eq!(reason, DenyReason::NotYetValid);
        assert!(detail.contains("not valid yet"), "{detail}");
        assert!(detail.contains("60 min 0 s early"), "{detail}");
        assert!(detail.contains("2026-01-01T13:00:00"), "{detail}");
        let late = Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: unix(at(0)),
            not_after: unix(at(-86_400)),
        });
        let (reason, detail) = refusal_at(&late, (0, 0), NOW, None);
        assert_eq!(reason, DenyReason::Expired);
        assert!(detail.contains("24 h 0 min ago"), "{detail}");
    }

    #[test]
    fn other_errors_keep_their_reason() {
        let (reason, _) = refusal_at(
            &Error::AlertReceived(AlertDescription::UnknownCA),
            (0, 0),
            NOW,
            None,
        );
        assert_eq!(reason, DenyReason::UnknownCa);
    }
}
