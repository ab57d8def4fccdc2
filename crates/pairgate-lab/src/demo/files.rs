//! The demo's file traffic: packages dropped into an outbox the way a
//! producer must, waits for their exact arrival, and the check that nothing
//! of them lies in plaintext in the spool.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{io, spinner, step, DemoError, MARKER, PACKAGE_SIZE};
use crate::backends;

/// Drops `n` packages into `outbox` the way a producer must (dot-name, then
/// rename) and returns their names.
pub(super) fn drop_packages(
    outbox: &Path,
    prefix: &str,
    n: usize,
) -> Result<Vec<(String, Vec<u8>)>, DemoError> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i:02}.zip");
        let mut data = backends::pattern(PACKAGE_SIZE);
        data[..MARKER.len()].copy_from_slice(MARKER);
        data[MARKER.len()] = i as u8;
        let tmp = outbox.join(format!(".{name}.partial"));
        std::fs::write(&tmp, &data).map_err(io("write into the outbox"))?;
        std::fs::rename(&tmp, outbox.join(&name)).map_err(io("rename into the outbox"))?;
        names.push((name, data));
    }
    Ok(names)
}

/// Waits until every file arrived in `inbox` with the right content.
pub(super) async fn wait_files(
    inbox: &Path,
    files: &[(String, Vec<u8>)],
    what: &str,
) -> Result<(), DemoError> {
    let bar = spinner(format!("waiting for {what}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = files
            .iter()
            .filter(|(name, data)| std::fs::read(inbox.join(name)).is_ok_and(|got| &got == data))
            .count();
        bar.set_message(format!("{what}: {arrived}/{}", files.len()));
        if arrived == files.len() {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() > deadline {
            bar.finish_and_clear();
            return Err(step(format!(
                "{what}: only {arrived} of {} files arrived",
                files.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn wait_outbox_empty(outbox: &Path) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(outbox).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    }) > 0
    {
        if Instant::now() > deadline {
            return Err(step("the outbox was not taken into the spool"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether any file under `dir` contains the plaintext marker.
pub(super) fn contains_marker(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let path = e.path();
        if path.is_dir() {
            contains_marker(&path)
        } else {
            std::fs::read(&path).is_ok_and(|b| b.windows(MARKER.len()).any(|w| w == MARKER))
        }
    })
}
