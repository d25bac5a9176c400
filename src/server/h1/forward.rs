//! The request head the fast path writes to the backend: the client's header lines copied in
//! runs, hop-by-hop and spoofable forwarding fields dropped, forwarding fields added.

use super::write::line;
use super::Conn;
use crate::route::Route;
use crate::server::conn::ConnInfo;

/// The upstream request head (and the buffered part of the body) into `c.wbuf`.
pub(super) fn build_request(
    c: &mut Conn,
    info: &ConnInfo,
    route: &Route,
    id_name: &[u8],
    request_id: &[u8],
    buffered_body: usize,
) {
    let (buf, head, out) = (&c.rbuf[..], &c.head, &mut c.wbuf);
    let reused = &mut c.forwarding;
    let ops: Vec<&crate::transform::HeaderOps> = route.stages.iter().filter_map(|s| s.request_header_ops()).collect();
    let replaced = |name: &[u8]| ops.iter().any(|o| o.replaces(name));
    out.clear();
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    let path = super::head::ascii_str(&buf[head.path.clone()]).unwrap_or("/");
    out.extend_from_slice(route.rewrite.apply(path).as_bytes());
    if let Some(q) = &head.query {
        out.push(b'?');
        out.extend_from_slice(&buf[q.clone()]);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_xff: Vec<&[u8]> = Vec::new();
    let mut prior_forwarded: Vec<&[u8]> = Vec::new();
    let (mut has_proto, mut has_fhost) = (false, false);
    // Kept header lines are copied in runs of adjacent lines (one copy instead of four per line).
    let mut run = LineRun::default();
    for (n, v) in &head.headers {
        let name = &buf[n.clone()];
        let value = &buf[v.clone()];
        let lower = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if is_hop_by_hop(name, value)
            || (head.lists_more_hop_fields && !super::head::is_protected(name) && head.connection_lists(buf, name))
            || lower(id_name)
            || replaced(name)
            // The proxy answers the expectation itself (as nginx does), so the backend gets none.
            || (head.expect_continue && lower(b"expect"))
        {
            run.flush(out, buf);
            continue;
        }
        if lower(b"x-forwarded-for") {
            prior_xff.push(value);
            run.flush(out, buf);
            continue;
        }
        if lower(b"forwarded") {
            prior_forwarded.push(value);
            run.flush(out, buf);
            continue;
        }
        if lower(b"x-forwarded-proto") {
            if !c.trusted {
                run.flush(out, buf);
                continue;
            }
            has_proto = true;
        }
        if lower(b"x-forwarded-host") {
            if !c.trusted {
                run.flush(out, buf);
                continue;
            }
            has_fhost = true;
        }
        run.keep(out, buf, n.start, v.end);
    }
    run.flush(out, buf);
    let host = head.host.as_ref().map(|r| &buf[r.clone()]).unwrap_or(b"");
    let forwarding = Forwarding {
        trusted: c.trusted,
        prior_xff: &prior_xff,
        prior_forwarded: &prior_forwarded,
        has_proto,
        has_fhost,
        host,
    };
    if !c.trusted && ops.is_empty() {
        // From an untrusted client the fields depend only on the host (the address and scheme
        // are the connection's), and a connection usually asks for one host.
        if reused.host != host || reused.lines.is_empty() {
            reused.lines.clear();
            write_forwarding(&mut reused.lines, info, &forwarding, |_| false);
            reused.host.clear();
            reused.host.extend_from_slice(host);
        }
        out.extend_from_slice(&reused.lines);
    } else {
        write_forwarding(out, info, &forwarding, replaced);
    }
    line(out, id_name, request_id);
    for o in &ops {
        o.write_raw(out);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&buf[head.len..head.len + buffered_body]);
}

/// The forwarding fields written for a connection's last request, and the host they were for.
#[derive(Default)]
pub(super) struct ReusedForwarding {
    host: Vec<u8>,
    lines: Vec<u8>,
}

/// What the forwarding fields are made from.
pub(crate) struct Forwarding<'a> {
    /// The peer is a trusted proxy: its forwarding fields are extended, not replaced.
    pub trusted: bool,
    pub prior_xff: &'a [&'a [u8]],
    pub prior_forwarded: &'a [&'a [u8]],
    /// A trusted peer sent X-Forwarded-Proto / X-Forwarded-Host (kept as they are).
    pub has_proto: bool,
    pub has_fhost: bool,
    /// The request's host as the client named it.
    pub host: &'a [u8],
}

/// X-Forwarded-For, -Proto, -Host and Forwarded as header lines, except those a route's
/// header stage `replaced`.
pub(crate) fn write_forwarding(out: &mut Vec<u8>, info: &ConnInfo, f: &Forwarding, replaced: impl Fn(&[u8]) -> bool) {
    let proto: &[u8] = if info.listener.tls.is_some() { b"https" } else { b"http" };
    let client = info.client_ip();
    let ip = client.text.as_bytes();
    let host = f.host;
    if !replaced(b"x-forwarded-for") {
        out.extend_from_slice(b"x-forwarded-for: ");
        if f.trusted {
            for p in f.prior_xff {
                out.extend_from_slice(p);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\r\n");
    }
    if !f.has_proto && !replaced(b"x-forwarded-proto") {
        line(out, b"x-forwarded-proto", proto);
    }
    if !f.has_fhost && !host.is_empty() && !replaced(b"x-forwarded-host") {
        line(out, b"x-forwarded-host", host);
    }
    if !replaced(b"forwarded") {
        out.extend_from_slice(b"forwarded: ");
        if f.trusted {
            for p in f.prior_forwarded {
                out.extend_from_slice(p);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(client.forwarded_for.as_bytes());
        out.extend_from_slice(b";proto=");
        out.extend_from_slice(proto);
        if !host.is_empty() {
            out.extend_from_slice(b";host=");
            if host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                out.extend_from_slice(host);
            } else if !host.iter().any(|&b| b == b'"' || b == b'\\') {
                // A port or an IPv6 literal: quoted, with nothing to escape.
                out.push(b'"');
                out.extend_from_slice(host);
                out.push(b'"');
            } else {
                out.push(b'"');
                for &b in host {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Adjacent header lines to copy as one slice. A line joins the run only when it ends in CRLF
/// right after its value; other lines (bare LF, trailing spaces) are rewritten normalised.
#[derive(Default)]
pub(super) struct LineRun {
    start: usize,
    end: usize,
}

impl LineRun {
    pub(super) fn keep(&mut self, out: &mut Vec<u8>, buf: &[u8], line_start: usize, value_end: usize) {
        if buf.get(value_end..value_end + 2) != Some(b"\r\n") {
            self.flush(out, buf);
            let colon = buf[line_start..value_end].iter().position(|&b| b == b':').unwrap_or(0);
            let value = buf[line_start + colon + 1..value_end].trim_ascii_start();
            line(out, &buf[line_start..line_start + colon], value);
            return;
        }
        if self.end != line_start || self.start == self.end {
            self.flush(out, buf);
            self.start = line_start;
        }
        self.end = value_end + 2;
    }

    pub(super) fn flush(&mut self, out: &mut Vec<u8>, buf: &[u8]) {
        out.extend_from_slice(&buf[self.start..self.end]);
        self.start = 0;
        self.end = 0;
    }
}

pub(crate) fn is_hop_by_hop(name: &[u8], value: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te") && !value.eq_ignore_ascii_case(b"trailers"),
        7 => name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"trailer"),
        10 => name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive"),
        16 => name.eq_ignore_ascii_case(b"proxy-connection"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    }
}
