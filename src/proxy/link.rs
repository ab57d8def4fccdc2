//! What this gateway knows about its link to the peer gateway, from the
//! heartbeat: up or down, since when, and the last error.

use std::sync::Mutex;

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// `None` until the first heartbeat finished.
    pub up: Option<bool>,
    /// When the link entered its current state.
    pub since: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct Link {
    state: Mutex<LinkState>,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            state: Mutex::new(LinkState {
                up: None,
                since: None,
                last_error: None,
            }),
        }
    }
}

impl Link {
    /// Records a heartbeat outcome at `now`.
    pub fn set_at(&self, result: Result<(), String>, now: OffsetDateTime) {
        let Ok(mut s) = self.state.lock() else { return };
        let up = result.is_ok();
        if s.up != Some(up) {
            s.up = Some(up);
            s.since = Some(now);
        }
        if let Err(e) = result {
            s.last_error = Some(e);
        }
    }

    pub fn set(&self, result: Result<(), String>) {
        self.set_at(result, OffsetDateTime::now_utc());
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().map(|s| s.clone()).unwrap_or(LinkState {
            up: None,
            since: None,
            last_error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_changes_only_with_the_state() {
        let link = Link::default();
        assert_eq!(link.state().up, None);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::seconds(10);
        let t2 = t0 + time::Duration::seconds(20);
        link.set_at(Ok(()), t0);
        link.set_at(Ok(()), t1);
        assert_eq!(link.state().since, Some(t0));
        link.set_at(Err("refused".into()), t2);
        let s = link.state();
        assert_eq!(
            (s.up, s.since, s.last_error.as_deref()),
            (Some(false), Some(t2), Some("refused"))
        );
    }
}
