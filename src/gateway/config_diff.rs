//! Which keys of a re-read config file differ from the running config.
//!
//! SIGHUP re-reads the config file before anything else. A file that does
//! not parse is refused as a whole; a file that parses but changes keys the
//! running gateway cannot apply live (today: every key but the tunnels, the
//! intercepts, the exports, `[admin]`, `[limits]`, `gateway.mark` and
//! `spool.old_keys` — peer, spool, file paths) is refused too, with the
//! changed keys named, so "reload ok" never hides a change that only the
//! next restart would bring. A key leaves [`restart_needed`] only when
//! something applies it live.
//!
//! The socket mark needs a capability (`CAP_NET_ADMIN`) when it goes on or
//! changes: [`mark_change`] checks it for the new value before anything is
//! applied, so a reload that would leave the gateway unable to mark its
//! sockets is refused as a whole, with the same text as at start.
//!
//! The comparison destructures every struct exhaustively: a new config field
//! does not compile until it is compared here.

use std::path::Path;

use crate::config::{Audit, Config, ConfigLines, Gateway, Limits, Peer, Spool, Tls};

/// The keys (as written in the config file, e.g. `tunnel[0].listen`) whose
/// values differ between the running config and `new`, in file order.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<String> {
    let Config {
        path: _,
        gateway,
        tls,
        peer,
        admin,
        audit,
        spool,
        tunnels,
        exports,
        intercepts,
        limits,
        lines: ConfigLines { .. },
    } = running;
    let mut changed = Changed::default();
    diff_gateway(&mut changed, gateway, &new.gateway);
    diff_tls(&mut changed, tls, &new.tls);
    diff_peer(&mut changed, peer, &new.peer);
    // Applied live: SIGHUP binds, moves or stops the endpoint and takes the
    // sync interval (gateway::admin_endpoint).
    let _ = admin;
    let Audit { path, on_failure } = audit;
    changed.check("audit.path", path, &new.audit.path);
    changed.check("audit.on_failure", on_failure, &new.audit.on_failure);
    diff_spool(&mut changed, spool.as_ref(), new.spool.as_ref());
    // Applied live: SIGHUP binds, stops and updates tunnels (gateway::tunnels).
    let _ = tunnels;
    // Applied live: SIGHUP replaces the export routes (gateway::exports).
    let _ = exports;
    // Applied live: SIGHUP binds, stops and updates intercepts (gateway::intercepts).
    let _ = intercepts;
    // Applied live: SIGHUP applies the limits to what comes next
    // (proxy::Context::apply_limits); established connections keep theirs.
    let Limits {
        handshake_timeout: _,
        idle_timeout: _,
        max_connections: _,
        max_handshakes_per_source: _,
        max_handshakes_per_peer: _,
        shutdown_grace: _,
        shutdown_delay: _,
    } = limits;
    changed.0
}

#[derive(Default)]
struct Changed(Vec<String>);

impl Changed {
    fn check<T: PartialEq + ?Sized>(&mut self, key: &str, old: &T, new: &T) {
        if old != new {
            self.0.push(key.to_owned());
        }
    }
}

fn diff_gateway(c: &mut Changed, old: &Gateway, new: &Gateway) {
    let Gateway {
        pool,
        peer_pool,
        policy,
        // Applied live: the mark in force is `Config::socket_mark`, switched
        // on, off or changed by SIGHUP once its capability is checked
        // ([`mark_change`]).
        mark: _,
    } = old;
    c.check("gateway.pool", pool, &new.pool);
    c.check("gateway.peer_pool", peer_pool, &new.peer_pool);
    c.check("gateway.policy", policy, &new.policy);
}

fn diff_tls(c: &mut Changed, old: &Tls, new: &Tls) {
    let Tls {
        cert,
        key,
        ca,
        crl,
        crl_overdue,
    } = old;
    c.check("tls.cert", cert, &new.cert);
    c.check("tls.key", key, &new.key);
    c.check("tls.ca", ca, &new.ca);
    c.check("tls.crl", crl, &new.crl);
    c.check("tls.crl_overdue", crl_overdue, &new.crl_overdue);
}

fn diff_peer(c: &mut Changed, old: &Peer, new: &Peer) {
    let Peer {
        listen,
        connect,
        heartbeat,
    } = old;
    c.check("peer.listen", listen, &new.listen);
    c.check("peer.connect", connect, &new.connect);
    c.check("peer.heartbeat_secs", heartbeat, &new.heartbeat);
}

fn diff_spool(c: &mut Changed, old: Option<&Spool>, new: Option<&Spool>) {
    match (old, new) {
        (None, None) => {}
        (
            Some(Spool {
                dir,
                key,
                outbox,
                inbox,
                max_bytes,
                // Applied live: SIGHUP re-reads the previous keys (gateway::spool_keys).
                old_keys: _,
                settle,
                stall,
                max_age,
            }),
            Some(new),
        ) => {
            c.check("spool.max_age_days", max_age, &new.max_age);
            c.check("spool.dir", dir, &new.dir);
            c.check("spool.key", key, &new.key);
            c.check("spool.outbox", outbox, &new.outbox);
            c.check("spool.inbox", inbox, &new.inbox);
            c.check("spool.max_bytes", max_bytes, &new.max_bytes);
            c.check("spool.settle_ms", settle, &new.settle);
            c.check("spool.stall_secs", stall, &new.stall);
        }
        _ => c.0.push("[spool]".to_owned()),
    }
}

/// The mark a reload brings, checked: `Ok(None)` when the mark in force
/// (`running`) stays, `Ok(Some(mark))` when sockets opened from now on
/// must carry `mark` (0: none) and `check` (the capability,
/// `intercept::socket::check_mark`) allows it, and the refusal — the text
/// a start without the capability prints, naming `gateway.mark`, the file
/// and the fix — when it does not. Switching the mark off needs nothing.
pub(super) fn mark_change(
    running: u32,
    new: &Config,
    check: impl FnOnce(u32) -> std::io::Result<()>,
) -> Result<Option<u32>, String> {
    let mark = new.socket_mark();
    if mark == running {
        return Ok(None);
    }
    if mark != 0 {
        check(mark).map_err(|source| mark_refusal(&new.path, mark, source))?;
    }
    Ok(Some(mark))
}

fn mark_refusal(file: &Path, mark: u32, source: std::io::Error) -> String {
    let refusal = super::GatewayError::Mark {
        file: file.to_path_buf(),
        mark,
        source,
    };
    format!("{refusal} — nothing was reloaded")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[gateway]\npool = \"pool01.site1.example\"\npeer_pool = \"pool02.site2.example\"\npolicy = \"p.toml\"\n\
        [tls]\ncert = \"c.crt\"\nkey = \"c.key\"\nca = \"ca.crt\"\n\
        [peer]\nlisten = \"127.0.0.1:7443\"\nconnect = \"127.0.0.1:7444\"\n\
        [audit]\npath = \"audit.jsonl\"\n\
        [[tunnel]]\nservice = \"backup-smb\"\nlisten = \"127.0.0.1:8445\"\nallow_sources = [\"127.0.0.0/8\"]\n";

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/srv/pg/site1.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_same_file_changes_nothing_even_reformatted() {
        let a = parse(BASE);
        let b = parse(&format!("# a comment\n\n{BASE}"));
        assert!(restart_needed(&a, &b).is_empty());
    }

    #[test]
    fn listeners_and_lists_are_named_by_key() {
        let a = parse(BASE);
        // Tunnels are applied live (gateway::tunnels).
        let moved = parse(&BASE.replace("127.0.0.1:8445", "127.0.0.1:9445"));
        assert!(restart_needed(&a, &moved).is_empty());
        let peer = parse(&BASE.replace("127.0.0.1:7443", "127.0.0.1:7000"));
        assert_eq!(restart_needed(&a, &peer), ["peer.listen"]);
        let more = parse(&format!(
            "{BASE}[[export]]\nservice = \"backup-smb\"\ntarget = \"127.0.0.1:445\"\n[limits]\nidle_timeout_secs = 60\n"
        ));
        // Exports and limits are applied live (gateway::exports,
        // proxy::Context::apply_limits).
        assert!(restart_needed(&a, &more).is_empty());
        let limits = parse(&format!(
            "{BASE}[limits]\nhandshake_timeout_secs = 2\nidle_timeout_secs = 60\nmax_connections = 3\n\
             max_handshakes_per_source = 2\nmax_handshakes_per_peer = 5\nshutdown_grace_secs = 1\n\
             shutdown_delay_secs = 2\n"
        ));
        assert!(restart_needed(&a, &limits).is_empty());
        assert!(restart_needed(&limits, &a).is_empty());
        // An export with `destinations` switches the socket mark on: live,
        // once its capability is checked (mark_change).
        let carried = parse(&format!(
            "{BASE}[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.9.0.0/16\"]\nports = [445]\n"
        ));
        assert!(restart_needed(&a, &carried).is_empty());
        assert!(restart_needed(&carried, &a).is_empty());
        // The admin endpoint is applied live (gateway::admin_endpoint).
        let admin = parse(&format!("{BASE}[admin]\nlisten = \"127.0.0.1:9101\"\n"));
        assert!(restart_needed(&a, &admin).is_empty());
    }

    #[test]
    fn a_mark_switched_on_without_the_capability_refuses_the_reload() {
        let plain = parse(BASE);
        let carried = parse(&format!(
            "{BASE}[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.9.0.0/16\"]\nports = [445]\n"
        ));
        let eperm = |_| Err(std::io::Error::from_raw_os_error(1));
        let error = mark_change(plain.socket_mark(), &carried, eperm).unwrap_err();
        assert!(
            error.contains("site1.toml: gateway.mark")
                && error.contains("SO_MARK 0x5047")
                && error.contains("CAP_NET_ADMIN")
                && error.contains("nothing was reloaded"),
            "{error}"
        );
        // With the capability: the new mark, for sockets opened from now on.
        let checked = std::cell::Cell::new(None);
        let granted = |mark| {
            checked.set(Some(mark));
            Ok(())
        };
        assert_eq!(mark_change(0, &carried, granted), Ok(Some(0x5047)));
        assert_eq!(checked.get(), Some(0x5047), "the new mark was checked");
        // Switching it off, or keeping it, needs no capability.
        assert_eq!(mark_change(0x5047, &plain, eperm), Ok(Some(0)));
        assert_eq!(mark_change(0x5047, &carried, eperm), Ok(None));
        // A changed `gateway.mark` while intercepting goes live the same way.
        let other = parse(&format!(
            "{}[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.9.0.0/16\"]\nports = [445]\n",
            BASE.replace("policy = \"p.toml\"\n", "policy = \"p.toml\"\nmark = 7\n")
        ));
        assert!(restart_needed(&carried, &other).is_empty());
        assert!(mark_change(0x5047, &other, eperm).is_err());
        assert_eq!(mark_change(0x5047, &other, |_| Ok(())), Ok(Some(7)));
    }
}
