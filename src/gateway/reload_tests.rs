//! Unit tests of `reload.rs`.

use super::*;
use std::sync::Mutex;

/// Records reloads; the first one waits until released, so requests pile
/// up behind it.
#[derive(Default)]
struct Recorder {
    done: Mutex<Vec<Request>>,
    running: std::sync::atomic::AtomicUsize,
    overlapped: std::sync::atomic::AtomicBool,
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Reload for Recorder {
    fn reload(&self, request: Request) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.running.fetch_add(1, SeqCst) > 0 {
            self.overlapped.store(true, SeqCst);
        }
        let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
        self.running.fetch_sub(1, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_run_one_at_a_time_and_a_burst_is_merged() {
    let (release, gate) = std::sync::mpsc::channel();
    let target = Arc::new(Recorder {
        gate: Mutex::new(Some(gate)),
        ..Recorder::default()
    });
    let (reloader, requests) = reloader();
    let stop = tokio_util::sync::CancellationToken::new();
    let owner = tokio::spawn(own(target.clone(), requests, stop.clone()));
    reloader.request(Request::Tls);
    // Wait until the first reload runs (and holds the gate).
    while target.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reloader.request(Request::Tls);
    reloader.request(Request::All);
    reloader.request(Request::Tls);
    release.send(()).unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while target.done.lock().map(|d| d.len()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "reloads did not run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    owner.await.unwrap_or_else(|e| panic!("{e}"));
    let done = target.done.lock().map(|d| d.clone()).unwrap_or_default();
    // The three queued requests became one, and the strongest of them.
    assert_eq!(done, [Request::Tls, Request::All]);
    assert!(!target.overlapped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn the_owner_ends_when_every_reloader_is_gone() {
    let (reloader, requests) = reloader();
    let stop = tokio_util::sync::CancellationToken::new();
    let owner = tokio::spawn(own(Arc::new(Recorder::default()), requests, stop));
    drop(reloader);
    tokio::time::timeout(Duration::from_secs(30), owner)
        .await
        .unwrap_or_else(|_| panic!("owner kept running"))
        .unwrap_or_else(|e| panic!("{e}"));
}
