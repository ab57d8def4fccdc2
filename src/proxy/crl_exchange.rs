//! The gateway side of CRL distribution over the control channel (see
//! `tls::crl_offer` for the rules): the answering gateway offers its newer
//! CRLs and audits `crl_sent`; the dialling gateway takes them and audits
//! `crl_received`. A refused offer is audited once per offer, not every
//! heartbeat.

use super::{Context, Track};
use crate::audit::{CrlExchange, Event};

/// The PEM to put in the heartbeat's answer: our CRLs newer than those the
/// peer reported enforcing (`peer`), audited once per CRL set and peer state.
pub(super) fn offer(
    ctx: &Context,
    track: &Track,
    peer: &[crate::tls::crl_offer::CrlNumber],
) -> Option<String> {
    let material = ctx.peer.snapshot().material.clone();
    let (pem, crls) = material.crl_offer_for(peer)?;
    let numbers: Vec<String> = peer
        .iter()
        .map(|n| format!("{}#{}", n.issuer, n.number))
        .collect();
    let key = format!("sent {} to {}", digest(&pem), numbers.join(","));
    if !material.crl_offer_noted(&key) {
        tracing::info!(
            crls = crls.len(),
            "offering our newer CRL to the peer gateway"
        );
        ctx.peer.audit.record(Event::CrlSent(CrlExchange {
            peer_pool: track.peer_pool.clone().unwrap_or_default(),
            ok: true,
            crls,
            path: None,
            error: None,
        }));
    }
    Some(pem)
}

/// Takes the CRLs the peer offered in its answer: verified and written
/// off the reactor; the file watcher applies them.
pub(super) async fn take(ctx: &Context, pem: String) {
    let material = ctx.peer.snapshot().material.clone();
    // The same offer again before the reload applied it (or after it was
    // refused) changes nothing: taken or refused once per material.
    if material.crl_offer_noted(&format!("received {}", digest(&pem))) {
        return;
    }
    let taking = material.clone();
    let result = tokio::task::spawn_blocking(move || taking.take_crl_offer(&pem)).await;
    let event = match result {
        Ok(Ok(taken)) => {
            tracing::info!(path = %taken.path.display(), "took a newer CRL from the peer gateway; reloading");
            CrlExchange {
                peer_pool: ctx.peer.peer_pool.to_string(),
                ok: true,
                crls: taken.crls,
                path: Some(taken.path.display().to_string()),
                error: None,
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "refused a CRL offered by the peer gateway");
            CrlExchange {
                peer_pool: ctx.peer.peer_pool.to_string(),
                ok: false,
                crls: material.crl_records(),
                path: None,
                error: Some(e.to_string()),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "taking a CRL from the peer failed");
            return;
        }
    };
    ctx.peer.audit.record(Event::CrlReceived(event));
}

fn digest(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}
