//! Which `Host` and `Origin` values the hub answers (SPEC §6): the DNS-rebinding defence.
//!
//! A web page can rebind its own name (`evil.example`) to 127.0.0.1 after it has loaded. The
//! browser then treats the hub as that page's own origin: its requests carry
//! `Host: evil.example:8000` and a matching `Origin`, so an Origin check alone ("Origin equals
//! Host") lets it read the account. Only the `Host` header still names the attacker, so the
//! account routes answer only hosts we actually serve: the loopback names with the bound port,
//! the bind address, and the `HUB_ALLOWED_HOSTS` entries.
//!
//! Default ports are normalised on both sides. An `Origin` has a scheme, so its default port is
//! exact (`http` 80, `https` 443). A `Host` without a port stands for the default port of the
//! scheme the browser used, which the hub cannot see behind a TLS-terminating proxy (it speaks
//! plain HTTP itself): it matches a served port of 80 or 443.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{AllowedHosts, AllowedOrigins};

/// The names a browser on this machine uses for the hub, whatever the bind address.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `host[:port]` as sent in `Host` or written in `HUB_ALLOWED_HOSTS`: the name lower-cased (an
/// IPv6 literal in brackets, IP literals in canonical form), the port when one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// `None` for anything that is not a plain `host[:port]` (userinfo, paths, spaces, a bare
    /// IPv6 address, a port that is not 1-5 digits).
    pub fn parse(text: &str) -> Option<Authority> {
        if text.is_empty() || text.len() > 300 {
            return None;
        }
        let text = text.to_ascii_lowercase();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = inside.parse().ok()?;
            let port = if after.is_empty() {
                ""
            } else {
                after.strip_prefix(':')?
            };
            (format!("[{ip}]"), port)
        } else {
            let (name, port) = match text.split_once(':') {
                Some((name, port)) => (name, port),
                None => (text.as_str(), ""),
            };
            // A fully qualified name may end in a dot; it is the same host.
            let name = name.strip_suffix('.').unwrap_or(name);
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !valid {
                return None;
            }
            let name = match name.parse::<Ipv4Addr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => name.to_string(),
            };
            (name, port)
        };
        // RFC 3986 allows an empty port: it means the default one.
        let port = match port {
            "" => None,
            p if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
            _ => return None,
        };
        Some(Authority { host, port })
    }
}

/// A request without a port in its `Host` reached a default port: 80 or 443 (see module docs).
fn host_port_is(given: Option<u16>, served: u16) -> bool {
    match given {
        Some(p) => p == served,
        None => served == 80 || served == 443,
    }
}

/// The `Host` values the account routes answer.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// `HUB_ALLOWED_HOSTS=*`: no check (a proxy rewrites `Host`).
    any: bool,
    /// Loopback names and the bind address, each with the bound port.
    served: Vec<Authority>,
    /// `HUB_ALLOWED_HOSTS` entries; no port = any port.
    extra: Vec<Authority>,
}

impl HostPolicy {
    /// `bound` is the address actually listened on (the real port when the config said 0).
    pub fn new(allowed: &AllowedHosts, bound: SocketAddr) -> HostPolicy {
        let port = Some(bound.port());
        let mut served: Vec<Authority> = LOOPBACK_NAMES
            .iter()
            .map(|name| Authority {
                host: name.to_string(),
                port,
            })
            .collect();
        if !bound.ip().is_unspecified() {
            let host = match bound {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            if !served.iter().any(|a| a.host == host) {
                served.push(Authority { host, port });
            }
        }
        let (any, extra) = match allowed {
            AllowedHosts::Any => (true, Vec::new()),
            AllowedHosts::List(items) => {
                let mut extra = Vec::new();
                for item in items {
                    match Authority::parse(item) {
                        Some(a) => extra.push(a),
                        // config.rs validates entries with the same parser; this is a backstop.
                        None => {
                            log::warn!(target: "http", "HUB_ALLOWED_HOSTS entry {item:?} ignored: not host[:port]")
                        }
                    }
                }
                (false, extra)
            }
        };
        if bound.ip().is_unspecified() && !any && extra.is_empty() {
            log::warn!(target: "http", "listening on {bound}, but only localhost, 127.0.0.1 and [::1] are served: list the names desks use in HUB_ALLOWED_HOSTS");
        }
        HostPolicy { any, served, extra }
    }

    /// Whether a request whose `Host` header is `host` (`None`: missing, repeated or not
    /// `host[:port]`) may see account data.
    pub fn allows(&self, host: Option<&Authority>) -> bool {
        if self.any {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let served = self
            .served
            .iter()
            .any(|a| a.host == host.host && a.port.is_some_and(|p| host_port_is(host.port, p)));
        served
            || self
                .extra
                .iter()
                .any(|a| a.host == host.host && a.port.is_none_or(|p| host_port_is(host.port, p)))
    }
}

/// A browser `Origin` (`scheme://host[:port]`) with its port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `None` for `null`, opaque or non-HTTP origins and anything with a path or userinfo.
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim_end_matches('/');
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)?;
        let authority = Authority::parse(rest)?;
        Some(Origin {
            port: authority.port.unwrap_or(default),
            host: authority.host,
            scheme,
        })
    }

    /// "Same host": this origin's host:port is the request's `Host`, whose missing port means
    /// the default port of the origin's scheme (`http://localhost` ≡ `Host: localhost:80`).
    pub fn is_host(&self, host: &Authority) -> bool {
        let host_port = host
            .port
            .or_else(|| default_port(&self.scheme))
            .unwrap_or(0);
        self.host == host.host && self.port == host_port
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Which browser origins may open a WebSocket (`HUB_ALLOWED_ORIGINS`), parsed once.
#[derive(Debug, Clone)]
pub enum OriginPolicy {
    SameHost,
    Any,
    List(Vec<Origin>),
}

impl OriginPolicy {
    pub fn new(allowed: &AllowedOrigins) -> OriginPolicy {
        match allowed {
            AllowedOrigins::SameHost => OriginPolicy::SameHost,
            AllowedOrigins::Any => OriginPolicy::Any,
            AllowedOrigins::List(items) => OriginPolicy::List(
                items
                    .iter()
                    .filter_map(|item| {
                        let parsed = Origin::parse(item);
                        if parsed.is_none() {
                            log::warn!(target: "http", "HUB_ALLOWED_ORIGINS entry {item:?} ignored: not scheme://host[:port]");
                        }
                        parsed
                    })
                    .collect(),
            ),
        }
    }

    /// `origin`: the request's `Origin` header (`None` = absent: not a browser, allowed);
    /// `host`: its parsed `Host`.
    pub fn allows(&self, origin: Option<&str>, host: Option<&Authority>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if let OriginPolicy::Any = self {
            return true;
        }
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => list.contains(&origin),
            OriginPolicy::SameHost => host.is_some_and(|h| origin.is_host(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Option<Authority> {
        Authority::parse(text)
    }

    fn a(host: &str, port: Option<u16>) -> Option<Authority> {
        Some(Authority {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn authorities_parse_and_normalise() {
        assert_eq!(auth("LocalHost:8000"), a("localhost", Some(8000)));
        assert_eq!(auth("desk.example"), a("desk.example", None));
        assert_eq!(auth("desk.example.:443"), a("desk.example", Some(443)));
        assert_eq!(auth("desk.example:"), a("desk.example", None));
        assert_eq!(auth("[::1]:8000"), a("[::1]", Some(8000)));
        assert_eq!(auth("[0:0:0:0:0:0:0:1]"), a("[::1]", None));
        assert_eq!(auth("127.0.0.1:80"), a("127.0.0.1", Some(80)));
        for bad in [
            "",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]:80",
            "user@localhost:8000",
            "localhost:8000/x",
            "localhost:+80",
            "localhost:65536",
            "localhost:123456",
            "local host",
            "localhost:80:80",
            ":8000",
        ] {
            assert_eq!(auth(bad), None, "{bad:?}");
        }
    }

    fn policy(hosts: &[&str], bound: &str) -> HostPolicy {
        let allowed = if hosts == ["*"] {
            AllowedHosts::Any
        } else {
            AllowedHosts::List(hosts.iter().map(|s| s.to_string()).collect())
        };
        HostPolicy::new(&allowed, bound.parse().unwrap())
    }

    fn allows(p: &HostPolicy, host: &str) -> bool {
        p.allows(auth(host).as_ref())
    }

    #[test]
    fn loopback_names_with_the_bound_port() {
        let p = policy(&[], "127.0.0.1:8000");
        for ok in [
            "localhost:8000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "LOCALHOST:8000",
        ] {
            assert!(allows(&p, ok), "{ok}");
        }
        for bad in [
            "localhost",
            "localhost:8001",
            "127.0.0.2:8000",
            "evil.example:8000",
            "localhost.evil.example:8000",
        ] {
            assert!(!allows(&p, bad), "{bad}");
        }
        assert!(!p.allows(None), "missing Host");
    }

    #[test]
    fn the_bind_address_is_served_unless_unspecified() {
        let p = policy(&[], "192.0.2.10:8000");
        assert!(allows(&p, "192.0.2.10:8000"));
        assert!(!allows(&p, "192.0.2.10:8001"));
        let p = policy(&[], "[2001:db8::1]:8000");
        assert!(allows(&p, "[2001:db8::1]:8000"));
        let p = policy(&[], "0.0.0.0:8000");
        assert!(!allows(&p, "0.0.0.0:8000"));
        assert!(allows(&p, "localhost:8000"));
    }

    #[test]
    fn default_ports_on_both_sides() {
        // Bound on 80: a Host without a port is that port.
        let p = policy(&[], "127.0.0.1:80");
        assert!(allows(&p, "localhost"));
        assert!(allows(&p, "localhost:80"));
        // Entries: without a port = any port; with a default port = a Host without one too.
        let p = policy(
            &["desk.example", "api.example:443", "ops.example:80"],
            "127.0.0.1:8000",
        );
        for ok in [
            "desk.example",
            "desk.example:9999",
            "api.example",
            "api.example:443",
            "ops.example",
            "ops.example:80",
        ] {
            assert!(allows(&p, ok), "{ok}");
        }
        for bad in ["api.example:80", "api.example:8443", "ops.example:443"] {
            assert!(!allows(&p, bad), "{bad}");
        }
        assert!(allows(
            &policy(&["*"], "127.0.0.1:8000"),
            "evil.example:8000"
        ));
        assert!(policy(&["*"], "127.0.0.1:8000").allows(None));
    }

    #[test]
    fn origins_same_host_and_lists() {
        let same = OriginPolicy::SameHost;
        let host = |h: &str| auth(h);
        let check = |p: &OriginPolicy, o: &str, h: &str| p.allows(Some(o), host(h).as_ref());
        assert!(check(&same, "http://localhost", "localhost:80"));
        assert!(check(&same, "http://localhost:80/", "localhost"));
        assert!(check(&same, "https://desk.example", "desk.example"));
        assert!(check(&same, "https://desk.example", "desk.example:443"));
        assert!(check(&same, "HTTP://LocalHost:8000", "localhost:8000"));
        assert!(!check(&same, "http://localhost", "localhost:8000"));
        assert!(!check(&same, "http://desk.example:443", "desk.example"));
        assert!(!check(&same, "null", "localhost:8000"));
        assert!(!check(&same, "file://", "localhost:8000"));
        assert!(same.allows(None, None), "no Origin: not a browser");

        let list = OriginPolicy::new(&AllowedOrigins::List(vec![
            "https://desk.example:443".into(),
            "http://ops.example".into(),
        ]));
        for ok in [
            "https://desk.example",
            "https://DESK.example:443",
            "http://ops.example:80",
        ] {
            assert!(check(&list, ok, "x:1"), "{ok}");
        }
        for bad in [
            "http://desk.example",
            "https://desk.example:8443",
            "https://ops.example",
            "https://desk.example.evil.example",
        ] {
            assert!(!check(&list, bad, "desk.example"), "{bad}");
        }
    }
}
