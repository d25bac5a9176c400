//! Parse/limits stage: strict checks on the request head before anything else looks at it.
//! A request failing here is answered 400/413/414/431 and never forwarded.

use super::conn::ConnInfo;
use crate::pipeline::respond::ProxyError;
use http::request::Parts;
use http::{header, Version};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_resets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 100 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 128,
            h2_max_pending_resets: 50,
        }
    }
}

pub fn check_request(parts: &Parts, limits: &Limits, conn: &ConnInfo) -> Result<(), ProxyError> {
    if conn.is_ambiguous_request() {
        return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(ProxyError::UriTooLong);
    }
    if parts.headers.len() > limits.max_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    let header_bytes: usize = parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes + target_len > limits.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    if let Some(te) = parts.headers.get(header::TRANSFER_ENCODING) {
        // hyper accepts any coding list ending in chunked; forwarding "gzip, chunked" de-chunked
        // would silently change the body, so only plain chunked is allowed.
        if !te.as_bytes().eq_ignore_ascii_case(b"chunked")
            || parts.headers.get_all(header::TRANSFER_ENCODING).iter().count() > 1
        {
            return Err(ProxyError::BadRequest("unsupported Transfer-Encoding"));
        }
    }
    if parts.version == Version::HTTP_11 {
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Err(ProxyError::BadRequest("missing Host header")),
            (Some(_), Some(_)) => return Err(ProxyError::BadRequest("more than one Host header")),
            (Some(h), None) if h.to_str().is_err() || h.is_empty() => {
                return Err(ProxyError::BadRequest("invalid Host header"))
            }
            _ => {}
        }
    }
    let mut lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(cl) = lengths.next() {
        let n: u64 = cl
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ProxyError::BadRequest("invalid Content-Length"))?;
        if lengths.any(|other| other != cl) {
            return Err(ProxyError::BadRequest("conflicting Content-Length headers"));
        }
        if n > limits.max_body_bytes {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    Ok(())
}
