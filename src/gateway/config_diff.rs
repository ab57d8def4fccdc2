//! Which keys of a re-read config file differ from the running config.
//!
//! SIGHUP re-reads the config file before anything else. A file that does
//! not parse is refused as a whole; a file that parses but changes keys the
//! running gateway cannot apply live (today: every key but the tunnels, the
//! intercepts, the exports, `[admin]` and `spool.old_keys` — peer, spool,
//! limits, file paths) is refused too, with the changed keys named, so "reload ok"
//! never hides a change that only the next restart would bring. A key
//! leaves [`restart_needed`] only when something applies it live.
//!
//! The comparison destructures every struct exhaustively: a new config field
//! does not compile until it is compared here.

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
    // The mark is set on the gateway's sockets only while it intercepts (an
    // `[[intercept]]`, or an export with `destinations`): an export that
    // switches it on or off is applied by a restart, which checks the
    // capability it needs.
    if gateway.mark == new.gateway.mark && running.socket_mark() != new.socket_mark() {
        changed.0.push("gateway.mark".to_owned());
    }
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
    diff_limits(&mut changed, limits, &new.limits);
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
        mark,
    } = old;
    c.check("gateway.pool", pool, &new.pool);
    c.check("gateway.peer_pool", peer_pool, &new.peer_pool);
    c.check("gateway.policy", policy, &new.policy);
    c.check("gateway.mark", mark, &new.mark);
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

fn diff_limits(c: &mut Changed, old: &Limits, new: &Limits) {
    let Limits {
        handshake_timeout,
        idle_timeout,
        max_connections,
        max_handshakes_per_source,
        max_handshakes_per_peer,
        shutdown_grace,
        shutdown_delay,
    } = old;
    let keys = [
        (
            "limits.handshake_timeout_secs",
            handshake_timeout,
            &new.handshake_timeout,
        ),
        ("limits.idle_timeout_secs", idle_timeout, &new.idle_timeout),
        (
            "limits.shutdown_grace_secs",
            shutdown_grace,
            &new.shutdown_grace,
        ),
        (
            "limits.shutdown_delay_secs",
            shutdown_delay,
            &new.shutdown_delay,
        ),
    ];
    for (key, old, new) in keys {
        c.check(key, old, new);
    }
    c.check(
        "limits.max_connections",
        max_connections,
        &new.max_connections,
    );
    c.check(
        "limits.max_handshakes_per_source",
        max_handshakes_per_source,
        &new.max_handshakes_per_source,
    );
    c.check(
        "limits.max_handshakes_per_peer",
        max_handshakes_per_peer,
        &new.max_handshakes_per_peer,
    );
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
        // Exports are applied live (gateway::exports).
        assert_eq!(restart_needed(&a, &more), ["limits.idle_timeout_secs"]);
        // An export with `destinations` switches the socket mark on: a restart.
        let carried = parse(&format!(
            "{BASE}[[export]]\nservice = \"backup-smb\"\ndestinations = [\"127.9.0.0/16\"]\nports = [445]\n"
        ));
        assert_eq!(restart_needed(&a, &carried), ["gateway.mark"]);
        assert_eq!(restart_needed(&carried, &a), ["gateway.mark"]);
        // The admin endpoint is applied live (gateway::admin_endpoint).
        let admin = parse(&format!("{BASE}[admin]\nlisten = \"127.0.0.1:9101\"\n"));
        assert!(restart_needed(&a, &admin).is_empty());
    }
}
