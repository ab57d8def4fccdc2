//! The admin HTTP endpoint on `admin.listen`: `GET /metrics`, `/healthz`,
//! `/readyz`, `/status`; everything else is 404 (405 for another method on a known path).
//!
//! It is a small, defensive server: the routes are axum, the connections are
//! served by hyper directly so every one gets a header read timeout, a small
//! read buffer and a lifetime cap, and at most [`MAX_CONNECTIONS`] are served
//! at once (more are closed on accept). Nothing reads a request body. It
//! stops accepting when the token is cancelled and gives open requests a
//! moment to finish.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::{Metrics, CONTENT_TYPE};
use super::status::StatusSource;

/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long open requests may finish after the stop token.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// hyper's minimum read buffer; requests here are a request line and a few headers.
const MAX_BUF: usize = 8192;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: Arc<dyn StatusSource>,
}

/// The routes, without the connection handling (also usable in tests).
pub fn router(metrics: Arc<Metrics>, status: Arc<dyn StatusSource>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_page))
        .route("/status", get(status_page))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz, /readyz or /status\n",
            )
        })
        .layer(DefaultBodyLimit::max(1024))
        .with_state(AppState { metrics, status })
}

async fn metrics_page(State(app): State<AppState>) -> Response {
    // The refresh may look at the disk (spool depth): keep it off the reactor.
    let metrics = app.metrics.clone();
    let text = tokio::task::spawn_blocking(move || {
        metrics.refresh();
        metrics.encode()
    })
    .await
    .unwrap_or_else(|_| app.metrics.encode());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn ready_page(State(app): State<AppState>) -> Response {
    let reasons = match tokio::task::spawn_blocking(move || app.status.not_ready()).await {
        Ok(reasons) => reasons,
        Err(e) => vec![format!("status: readiness check failed: {e}")],
    };
    let code = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, super::ready::body(&reasons)).into_response()
}

async fn status_page(State(app): State<AppState>) -> Response {
    // The source may look at the disk (spool depth): keep it off the reactor.
    // The sampled figures /status shows from the metrics (audit state)
    // are refreshed first, as for a scrape.
    match tokio::task::spawn_blocking(move || {
        app.metrics.refresh();
        app.status.status()
    })
    .await
    {
        Ok(status) => Json(status).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status source failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response()
        }
    }
}

/// Serves the admin endpoint on `listener` until `stop` is cancelled, then
/// waits (briefly) for open requests. Accept errors are logged and retried;
/// nothing here ends the gateway.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    status: Arc<dyn StatusSource>,
    stop: CancellationToken,
) {
    let router = router(metrics, status);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("admin connection refused: too many open");
            continue;
        };
        let router = router.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            serve_connection(tcp, router, stop).await;
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(STOP_GRACE * 2, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open at stop");
    }
}

async fn serve_connection(tcp: TcpStream, router: Router, stop: CancellationToken) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            return;
        }
        () = stop.cancelled() => {}
        () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Ok(Err(e)) = tokio::time::timeout(STOP_GRACE, conn).await {
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::client::{self, ClientError};
    use crate::admin::testing::value;
    use crate::admin::{Board, CertEntry, CertKind, LinkState, LinkTracker, ReplicationState};
    use crate::admin::{SpoolDepth, SpoolGauge};
    use crate::audit::Direction;
    use crate::policy::{Decision, DenyReason};

    struct FixedSpool;

    impl SpoolGauge for FixedSpool {
        fn depth(&self, direction: Direction) -> SpoolDepth {
            match direction {
                Direction::Outbound => SpoolDepth {
                    files: 2,
                    bytes: 4096,
                    oldest_since: Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1)),
                },
                Direction::Inbound => SpoolDepth::default(),
            }
        }
    }

    struct Served {
        addr: std::net::SocketAddr,
        metrics: Arc<Metrics>,
        link: Arc<LinkTracker>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Served {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let metrics = Arc::new(Metrics::new());
        let link = Arc::new(LinkTracker::new());
        let board = Board::new(
            "pool01.site1.example".into(),
            "pool02.site2.example".into(),
            crate::admin::DEFAULT_SYNC_INTERVAL,
            link.clone(),
            metrics.clone(),
        )
        .with_spool(Arc::new(FixedSpool));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            metrics.clone(),
            Arc::new(board),
            stop.clone(),
        ));
        Served {
            addr,
            metrics,
            link,
            stop,
            task,
        }
    }

    async fn stop(served: Served) {
        served.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), served.task)
            .await
            .unwrap_or_else(|_| panic!("serve did not stop"))
            .unwrap_or_else(|e| panic!("serve panicked: {e}"));
    }

    #[tokio::test]
    async fn healthz_and_unknown_paths() {
        let served = start().await;
        let reply = client::get(served.addr, "/healthz")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
        let reply = client::get(served.addr, "/nope")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.status, 404);
        let reply = client::get(served.addr, "/metrics/x")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.status, 404);
        stop(served).await;
    }

    #[tokio::test]
    async fn metrics_parse_with_the_recorded_events() {
        let served = start().await;
        let m = &served.metrics;
        m.connection(Direction::Outbound, Some("backup-smb"), Decision::Allow);
        m.connection(
            Direction::Inbound,
            Some("cms-smb"),
            Decision::Deny(DenyReason::Revoked),
        );
        m.closed(Direction::Outbound, Some("backup-smb"), 100, 5000);
        m.handshake(Direction::Outbound, Duration::from_millis(40));
        m.spool(
            Direction::Outbound,
            2,
            4096,
            Some(Duration::from_secs(3600)),
        );
        m.cert_expiry(
            CertKind::Peer,
            Some("pool02.site2.example"),
            "feed",
            1_900_000_000,
        );
        let reply = client::get(served.addr, "/metrics")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some(CONTENT_TYPE));
        let text = &reply.body;
        let allow = [
            ("direction", "outbound"),
            ("service", "backup-smb"),
            ("decision", "allow"),
        ];
        assert_eq!(value(text, "pairgate_connections_total", &allow), Some(1.0));
        let revoked = [("direction", "inbound"), ("reason", "revoked")];
        assert_eq!(value(text, "pairgate_denials_total", &revoked), Some(1.0));
        assert_eq!(
            value(text, "pairgate_handshake_failures_total", &revoked),
            Some(1.0)
        );
        let out = [
            ("direction", "outbound"),
            ("service", "backup-smb"),
            ("flow", "out"),
        ];
        assert_eq!(value(text, "pairgate_bytes_total", &out), Some(5000.0));
        let outbound = [("direction", "outbound")];
        assert_eq!(
            value(text, "pairgate_spool_oldest_age_seconds", &outbound),
            Some(3600.0)
        );
        let peer = [("kind", "peer"), ("sha256", "feed")];
        let expiry = value(text, "pairgate_certificate_expiry_timestamp_seconds", &peer);
        assert_eq!(expiry, Some(1_900_000_000.0));
        // The histogram parses as one, with every bucket plus +Inf.
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}"));
        let histogram = scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b)
                    if s.metric == "pairgate_handshake_seconds"
                        && s.labels.get("direction") == Some("outbound") =>
                {
                    Some(b.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no handshake histogram in:\n{text}"));
        assert_eq!(histogram.len(), 15);
        let le_50ms = histogram.iter().find(|b| (b.less_than - 0.05).abs() < 1e-9);
        assert_eq!(le_50ms.map(|b| b.count), Some(1.0));
        let le_25ms = histogram
            .iter()
            .find(|b| (b.less_than - 0.025).abs() < 1e-9);
        assert_eq!(le_25ms.map(|b| b.count), Some(0.0));
        stop(served).await;
    }

    #[tokio::test]
    async fn status_reports_link_directions_certificates_and_counts() {
        let served = start().await;
        served.metrics.replace_certs(
            CertKind::Own,
            &[CertEntry {
                pool: Some("pool01.site1.example".into()),
                sha256: "aa".into(),
                not_after: 4_000_000_000,
            }],
        );
        served.metrics.connection(
            Direction::Inbound,
            None,
            Decision::Deny(DenyReason::NoClientCert),
        );
        let (_, status) = client::status(served.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.pool, "pool01.site1.example");
        assert_eq!(status.peer_link.state, LinkState::Unknown);
        assert_eq!(status.sync_interval_secs, 120);
        assert_eq!(status.directions.len(), 2);
        assert_eq!(status.directions[0].direction, Direction::Outbound);
        assert_eq!(status.directions[0].state, ReplicationState::Lagging);
        assert!(status.directions[0].lag_secs >= 3600);
        assert_eq!(status.directions[0].waiting_files, 2);
        assert_eq!(status.directions[1].state, ReplicationState::Steady);
        assert_eq!(status.certificates.len(), 1);
        assert_eq!(status.certificates[0].kind, CertKind::Own);
        assert_eq!(status.connections.denied_total, 1);

        served.link.down("connection refused".into());
        let (raw, status) = client::status(served.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.peer_link.state, LinkState::Down);
        assert_eq!(status.directions[0].state, ReplicationState::Disconnected);
        assert_eq!(status.directions[1].state, ReplicationState::Disconnected);
        assert!(
            raw.contains("\"last_error\":\"connection refused\""),
            "{raw}"
        );
        stop(served).await;
    }

    #[tokio::test]
    async fn after_stop_the_endpoint_is_gone() {
        let served = start().await;
        let addr = served.addr;
        stop(served).await;
        match client::get(addr, "/healthz").await {
            Err(ClientError::Connect { .. }) => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stop_closes_idle_connections() {
        let served = start().await;
        let idle = TcpStream::connect(served.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stop(served).await;
        drop(idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let served = start().await;
        let mut slow = TcpStream::connect(served.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        let began = tokio::time::Instant::now();
        // With the clock paused, time jumps to the header timeout; the server
        // then closes the connection (possibly after a 408) without serving it.
        let _ = slow.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.contains("200"),
            "served a request with unfinished headers: {answer}"
        );
        // Virtual time: the header timeout, not the connection lifetime, ended it.
        assert!(
            began.elapsed() < CONNECTION_LIFETIME,
            "{:?}",
            began.elapsed()
        );
        stop(served).await;
    }
}
