//! The things under test, started fresh for every round: the backends
//! themselves ("direct"), a pairgate pair, and each rival pair. Every
//! subject exposes the same two plaintext entry points — an echo service and
//! a discard service — so the load generators cannot tell them apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::rivals::{self, Rival, RivalProcess, Route, SiteFiles};
use super::BenchError;
use crate::{GatewayProcess, Pairgate, Pki, SiteSpec, POOL1, POOL2};

const ECHO: &str = "bench-echo";
const DISCARD: &str = "bench-discard";

/// The pairing manifest of the pairgate pair: the two bench services and
/// the spool, which every site runs.
const POLICY: &str = "[[service]]\nname = \"bench-echo\"\n\n[[service]]\nname = \"bench-discard\"\n\n[[pair]]\npools = [\"pool01.site1.example\", \"pool02.site2.example\"]\n\
services = [\"bench-echo\", \"bench-discard\", \"spool\"]\n";

/// Enough room for the idle-connection test plus the load's stragglers.
const LIMITS: &str = "\n[limits]\nmax_connections = 4096\n";

/// What every subject shares: the folder, the PKI and the backends.
pub struct Lab {
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub echo: SocketAddr,
    pub discard: SocketAddr,
    site1: SiteFiles,
    site2: SiteFiles,
    /// Each site's spool master key (`pairgate spool keygen`).
    spool_keys: [PathBuf; 2],
}

impl Lab {
    /// Mints the PKI in `dir/certs` and writes the policy; the backends
    /// must already run (they live in the caller's runtime).
    ///
    /// # Errors
    /// When the PKI or a file cannot be written.
    pub fn create(
        dir: &Path,
        exe: &Path,
        echo: SocketAddr,
        discard: SocketAddr,
    ) -> Result<Lab, BenchError> {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).map_err(|source| BenchError::Io {
            what: format!("create {}", certs.display()),
            source,
        })?;
        let pairgate = Pairgate::new(exe);
        let pki = Pki::create(&pairgate, &certs, "pairgate bench pairing CA")?;
        let site = |file: &str, pool: &str| -> Result<SiteFiles, BenchError> {
            let (cert, key) = pki.issue(file, pool, 30)?;
            let combined = certs.join(format!("{file}-bench.pem"));
            rivals::write_combined_pem(&cert, &key, &combined)?;
            Ok(SiteFiles {
                cert,
                key,
                combined,
                ca: pki.ca_path(),
            })
        };
        let site1 = site("site1", POOL1)?;
        let site2 = site("site2", POOL2)?;
        let spool_keys = [certs.join("site1-spool.key"), certs.join("site2-spool.key")];
        for key in &spool_keys {
            pairgate.spool_keygen(key)?;
        }
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, POLICY).map_err(|source| BenchError::Io {
            what: format!("write {}", policy.display()),
            source,
        })?;
        Ok(Lab {
            dir: dir.to_owned(),
            exe: exe.to_owned(),
            echo,
            discard,
            site1,
            site2,
            spool_keys,
        })
    }
}

/// Processes kept alive for as long as the subject is measured.
enum Processes {
    None,
    Pairgate(Box<[GatewayProcess; 2]>),
    Rival(Box<[RivalProcess; 2]>),
}

/// A subject ready for load.
pub struct Running {
    pub name: String,
    /// Plaintext entry to the echo backend.
    pub echo: SocketAddr,
    /// Plaintext entry to the discard backend.
    pub discard: SocketAddr,
    _processes: Processes,
}

impl Running {
    /// The backends themselves: the baseline.
    pub fn direct(lab: &Lab) -> Running {
        Running {
            name: "direct".into(),
            echo: lab.echo,
            discard: lab.discard,
            _processes: Processes::None,
        }
    }

    /// `too_many_connections` denials in both gateways' audit logs so far;
    /// `None` for subjects without an audit log.
    pub fn evictions(&self) -> Option<u64> {
        match &self._processes {
            Processes::Pairgate(p) => Some(
                p.iter()
                    .flat_map(GatewayProcess::audit_lines)
                    .filter(|v| v["reason"] == "too_many_connections")
                    .count() as u64,
            ),
            _ => None,
        }
    }

    /// Process ids whose memory and CPU count (both sites), none for "direct".
    pub fn pids(&self) -> Vec<u32> {
        match &self._processes {
            Processes::None => Vec::new(),
            Processes::Pairgate(p) => p.iter().map(|g| g.child.id()).collect(),
            Processes::Rival(p) => p.iter().map(RivalProcess::pid).collect(),
        }
    }

    /// A pairgate pair on fresh ports, configured as operators run it (as in
    /// the demo): site1's tunnels → site2's exports, a peer link, a spool
    /// with an outbox at both sites, an admin endpoint.
    ///
    /// # Errors
    /// When a config cannot be written or a gateway does not start.
    pub fn pairgate(lab: &Lab) -> Result<Running, BenchError> {
        let (p1, p2) = (crate::free_port()?, crate::free_port()?);
        let (echo_port, discard_port) = (crate::free_port()?, crate::free_port()?);
        let spec = |name: &str,
                    files: &SiteFiles,
                    spool_key: &Path,
                    pools: (&str, &str),
                    ports: (u16, u16)|
         -> Result<SiteSpec, BenchError> {
            Ok(SiteSpec {
                name: name.into(),
                pool: pools.0.into(),
                peer_pool: pools.1.into(),
                cert: (files.cert.clone(), files.key.clone()),
                ca: files.ca.clone(),
                crl: None,
                peer_listen: ports.0,
                peer_connect: ports.1,
                tunnels: Vec::new(),
                exports: Vec::new(),
                extra: format!(
                    "{LIMITS}\n[spool]\ndir = \"{name}/spool\"\nkey = \"{}\"\n\
                     outbox = \"{name}/outbox\"\ninbox = \"{name}/inbox\"\n\
                     \n[admin]\nlisten = \"127.0.0.1:{}\"\n",
                    spool_key.display(),
                    crate::free_port()?
                ),
            })
        };
        let mut site1 = spec(
            "site1",
            &lab.site1,
            &lab.spool_keys[0],
            (POOL1, POOL2),
            (p1, p2),
        )?;
        let local = vec!["127.0.0.0/8".to_owned()];
        site1.tunnels = vec![
            (ECHO.into(), echo_port, local.clone()),
            (DISCARD.into(), discard_port, local),
        ];
        let mut site2 = spec(
            "site2",
            &lab.site2,
            &lab.spool_keys[1],
            (POOL2, POOL1),
            (p2, p1),
        )?;
        site2.exports = vec![(ECHO.into(), lab.echo), (DISCARD.into(), lab.discard)];
        let config1 = site1.write(&lab.dir)?;
        let config2 = site2.write(&lab.dir)?;
        let gw2 = GatewayProcess::start(&lab.exe, &config2, Some(&lab.dir.join("site2.log")))?;
        let gw1 = GatewayProcess::start(&lab.exe, &config1, Some(&lab.dir.join("site1.log")))?;
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Running {
            name: "pairgate".into(),
            echo: at(echo_port),
            discard: at(discard_port),
            _processes: Processes::Pairgate(Box::new([gw1, gw2])),
        })
    }

    /// A rival pair on fresh ports, configured like the pairgate pair.
    ///
    /// # Errors
    /// When the rival is not installed or does not start.
    pub fn rival(lab: &Lab, rival: Rival) -> Result<Running, BenchError> {
        let route = |name: &str, target| -> Result<Route, BenchError> {
            let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
            Ok(Route {
                name: name.into(),
                front: at(crate::free_port()?),
                peer: at(crate::free_port()?),
                target,
            })
        };
        let routes = [route("echo", lab.echo)?, route("discard", lab.discard)?];
        let (a, b) = match rival {
            Rival::Haproxy => (
                rivals::haproxy_site_a(&routes, &lab.site1, POOL2),
                rivals::haproxy_site_b(&routes, &lab.site2, POOL1),
            ),
            Rival::Stunnel => (
                rivals::stunnel_site_a(&routes, &lab.site1, POOL2),
                rivals::stunnel_site_b(&routes, &lab.site2, POOL1),
            ),
        };
        let name = rival.name();
        let file = |suffix: &str| lab.dir.join(format!("{name}-{suffix}"));
        let peers: Vec<SocketAddr> = routes.iter().map(|r| r.peer).collect();
        let fronts: Vec<SocketAddr> = routes.iter().map(|r| r.front).collect();
        let site_b =
            RivalProcess::start(rival, &b, &file("site2.cfg"), &peers, &file("site2.log"))?;
        let site_a =
            RivalProcess::start(rival, &a, &file("site1.cfg"), &fronts, &file("site1.log"))?;
        Ok(Running {
            name: name.into(),
            echo: routes[0].front,
            discard: routes[1].front,
            _processes: Processes::Rival(Box::new([site_a, site_b])),
        })
    }
}
