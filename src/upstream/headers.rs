//! Header hygiene at the proxy boundary: hop-by-hop fields (RFC 9110 §7.6.1) are removed in both
//! directions, and X-Forwarded-* / Forwarded (RFC 7239) describe the client to the backend.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop fields. `keep_upgrade` keeps `Upgrade` and sets `Connection: upgrade`
/// (WebSocket handshakes); `TE: trailers` is kept because gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names instead of a removal per field.
    // The names of HOP_BY_HOP and TE, matched as text (a test keeps the two lists together).
    let any = headers.keys().any(|k| {
        matches!(
            k.as_str(),
            "connection" | "te" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "trailer"
        )
    });
    if !any {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        if conn.as_bytes() != b"keep-alive" && conn.as_bytes() != b"close" {
            let listed: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .collect();
            for name in listed {
                if !(keep_upgrade && name == header::UPGRADE) {
                    headers.remove(&name);
                }
            }
        }
    }
    let upgrade = if keep_upgrade {
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(te) = headers.get(header::TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            headers.remove(header::TE);
        }
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The client's address as the forwarding headers spell it; formatted once per connection.
pub struct ClientIp {
    /// `10.0.0.1`, `::1`: the X-Forwarded-For element.
    pub text: HeaderValue,
    /// `for=10.0.0.1`, `for="[::1]"`: the start of the Forwarded element.
    pub forwarded_for: Box<str>,
}

impl ClientIp {
    pub fn new(ip: IpAddr) -> ClientIp {
        let text = ip.to_string();
        let forwarded_for = match ip {
            IpAddr::V4(_) => format!("for={text}"),
            IpAddr::V6(_) => format!("for=\"[{text}]\""),
        };
        ClientIp {
            text: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_for: forwarded_for.into_boxed_str(),
        }
    }
}

/// Who the client is, as told to the backend.
pub struct ClientFacts<'a> {
    pub ip: &'a ClientIp,
    /// The peer is a trusted proxy: keep what it says and append to it.
    pub trusted: bool,
    pub proto: &'static str,
    pub host: &'a str,
}

pub fn add_forwarded(headers: &mut HeaderMap, facts: &ClientFacts) {
    // Room for the four fields below and the request id the pipeline adds next, at once (one
    // rehash at most, not one per insert).
    headers.reserve(5);
    let ip = &facts.ip.text;
    if facts.trusted {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            headers.insert(X_FORWARDED_FOR, ip.clone());
        } else {
            let xff = format!("{}, {}", prior.join(", "), facts.ip.text.to_str().unwrap_or(""));
            set(headers, X_FORWARDED_FOR, &xff);
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(facts.proto));
        }
        if !headers.contains_key(&X_FORWARDED_HOST) && !facts.host.is_empty() {
            set(headers, X_FORWARDED_HOST, facts.host);
        }
    } else {
        headers.insert(X_FORWARDED_FOR, ip.clone());
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(facts.proto));
        if facts.host.is_empty() {
            headers.remove(&X_FORWARDED_HOST);
        } else {
            set(headers, X_FORWARDED_HOST, facts.host);
        }
    }
    let mut element = String::with_capacity(facts.ip.forwarded_for.len() + facts.host.len() + 24);
    element.push_str(&facts.ip.forwarded_for);
    element.push_str(";proto=");
    element.push_str(facts.proto);
    if !facts.host.is_empty() {
        element.push_str(";host=");
        if facts
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            element.push_str(facts.host);
        } else {
            element.push('"');
            for ch in facts.host.chars() {
                if ch == '\\' || ch == '"' {
                    element.push('\\');
                }
                element.push(ch);
            }
            element.push('"');
        }
    }
    let prior: Vec<&str> = if facts.trusted {
        headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let value = if prior.is_empty() {
        element
    } else {
        format!("{}, {element}", prior.join(", "))
    };
    set_owned(headers, header::FORWARDED, value);
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// As `set`, taking the text's buffer instead of copying it.
fn set_owned(headers: &mut HeaderMap, name: HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hop_by_hop_field_alone_is_removed() {
        // The quick check must know every name the removal knows.
        for name in HOP_BY_HOP.iter().chain([&header::TE]) {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), http::HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h, false);
            assert!(h.is_empty(), "{name} was kept");
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_listed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        let mut h = map(&[("te", "trailers"), ("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn untrusted_peer_cannot_spoof_forwarded_headers() {
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        let ip = ClientIp::new("10.0.0.1".parse().unwrap());
        let facts = ClientFacts {
            ip: &ip,
            trusted: false,
            proto: "http",
            host: "a.test",
        };
        add_forwarded(&mut h, &facts);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.test");
        assert_eq!(h.get("forwarded").unwrap(), "for=10.0.0.1;proto=http;host=a.test");
    }

    #[test]
    fn trusted_peer_chain_is_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        let ip = ClientIp::new("::1".parse().unwrap());
        let facts = ClientFacts {
            ip: &ip,
            trusted: true,
            proto: "http",
            host: "a.test:8080",
        };
        add_forwarded(&mut h, &facts);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, ::1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=1.1.1.1, for=\"[::1]\";proto=http;host=\"a.test:8080\""
        );
        let mut h = HeaderMap::new();
        let facts = ClientFacts {
            host: "a\"b\\c",
            ..facts
        };
        add_forwarded(&mut h, &facts);
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=\"[::1]\";proto=http;host=\"a\\\"b\\\\c\""
        );
    }
}
