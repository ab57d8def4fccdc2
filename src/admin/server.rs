//! The admin HTTP endpoint on `admin.listen`: `GET /metrics`, `/healthz`,
//! `/status`; everything else is 404 (405 for another method on a known path).
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
        .route("/status", get(status_page))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /status\n",
            )
        })
        .layer(DefaultBodyLimit::max(1024))
        .with_state(AppState { metrics, status })
}

async fn metrics_page(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], app.metrics.encode()).into_response()
}

async fn status_page(State(app): State<AppState>) -> Response {
    // The source may look at the disk (spool depth): keep it off the reactor.
    match tokio::task::spawn_blocking(move || app.status.status()).await {
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
