//! The exporting site: where an allowed connection of an exported service
//! goes — the export's fixed `target`, or the original destination the
//! peer carried when it is inside the export's own `destinations`/`ports`.
//!
//! Decided before the connection is audited `allow`, so that a refused
//! destination is a `deny` with `destination_not_allowed` at both sites
//! (the dialler learns it from the `pg2` status frame).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::destination::Destinations;
use super::socket;

/// Where to connect an allowed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The export's fixed `host:port`.
    Fixed(String),
    /// The original destination the peer carried.
    Carried(SocketAddr),
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Fixed(target) => f.write_str(target),
            Plan::Carried(dest) => write!(f, "{dest}"),
        }
    }
}

/// Where the connection of `service` goes, or why it may not go anywhere
/// (the `detail` of a `destination_not_allowed` denial). `None` when the
/// service has no export.
///
/// A fixed target takes what plain tunnels send; an intercepted connection
/// only if its original destination is the target itself (resolved within
/// `resolve_timeout`) — never another host's traffic to the wrong server.
pub async fn plan(
    service: &str,
    fixed: Option<&String>,
    carried: Option<&Destinations>,
    original: Option<SocketAddr>,
    resolve_timeout: Duration,
) -> Option<Result<Plan, String>> {
    if let Some(lists) = carried {
        let Some(dest) = original else {
            return Some(Err(format!(
                "export {service} connects original destinations only, and the peer sent none \
                 (a [[tunnel]], not an [[intercept]]): give the export a target, or intercept \
                 at the peer"
            )));
        };
        return Some(
            lists
                .admit(dest)
                .map(Plan::Carried)
                .map_err(|refusal| format!("export {service}: {refusal}")),
        );
    }
    let target = fixed?;
    let Some(dest) = original else {
        return Some(Ok(Plan::Fixed(target.clone())));
    };
    let resolved = tokio::time::timeout(resolve_timeout, tokio::net::lookup_host(target.as_str()));
    let resolved: Option<Vec<SocketAddr>> = match resolved.await {
        Ok(Ok(addrs)) => Some(addrs.collect()),
        _ => None,
    };
    match resolved {
        Some(addrs) if !addrs.contains(&dest) => Some(Err(format!(
            "export {service} has the fixed target {target}; the peer intercepted a connection \
             to {dest}: list the peer's servers in destinations/ports instead of target"
        ))),
        // The target itself, or not resolvable now (connecting will say so).
        _ => Some(Ok(Plan::Fixed(target.clone()))),
    }
}

/// Connects `plan` from a socket carrying `mark` (see [`socket::connect`]).
///
/// # Errors
/// Resolution, marking and connection errors.
pub async fn connect(plan: &Plan, mark: u32) -> std::io::Result<TcpStream> {
    match plan {
        Plan::Fixed(target) => socket::connect(target, mark).await,
        Plan::Carried(dest) => socket::connect_addr(*dest, mark).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::preamble::Origin;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const WAIT: Duration = Duration::from_secs(5);

    fn intercepted(dest: &str) -> Origin {
        Origin::Intercepted {
            source: addr("127.1.10.11:50000"),
            destination: addr(dest),
        }
    }

    fn tunnelled() -> Origin {
        Origin::Proxied {
            source: addr("127.1.10.11:50000"),
            destination: addr("127.1.0.20:445"),
        }
    }

    #[tokio::test]
    async fn carried_destinations_are_connected_only_inside_the_exports_lists() {
        let lists = Destinations {
            nets: vec!["127.2.20.0/24".parse().unwrap()],
            ports: vec![445],
        };
        let p = |origin: Origin| {
            plan(
                "backup-smb",
                None,
                Some(&lists),
                origin.original_destination(),
                WAIT,
            )
        };
        assert_eq!(
            p(intercepted("127.2.20.50:445")).await,
            Some(Ok(Plan::Carried(addr("127.2.20.50:445"))))
        );
        let outside = p(intercepted("127.2.30.1:445")).await.unwrap().unwrap_err();
        assert!(
            outside.contains("127.2.30.1:445 is outside destinations"),
            "{outside}"
        );
        let port = p(intercepted("127.2.20.50:139"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(port.contains("outside ports"), "{port}");
        for origin in [tunnelled(), Origin::Local] {
            let none = p(origin).await.unwrap().unwrap_err();
            assert!(none.contains("the peer sent none"), "{none}");
        }
        assert_eq!(
            plan("x", None, None, tunnelled().original_destination(), WAIT).await,
            None
        );
    }

    #[tokio::test]
    async fn a_fixed_target_takes_tunnels_and_only_its_own_intercepted_traffic() {
        let target = "127.0.0.1:4450".to_owned();
        let p = |origin: Origin| {
            plan(
                "backup-smb",
                Some(&target),
                None,
                origin.original_destination(),
                WAIT,
            )
        };
        assert_eq!(p(tunnelled()).await, Some(Ok(Plan::Fixed(target.clone()))));
        assert_eq!(
            p(Origin::Local).await,
            Some(Ok(Plan::Fixed(target.clone())))
        );
        assert_eq!(
            p(intercepted("127.0.0.1:4450")).await,
            Some(Ok(Plan::Fixed(target.clone())))
        );
        let other = p(intercepted("127.0.0.2:4450")).await.unwrap().unwrap_err();
        assert!(other.contains("fixed target 127.0.0.1:4450"), "{other}");
    }
}
