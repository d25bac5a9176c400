//! `Cache-Status` (RFC 9211) values.

use http::HeaderValue;
use std::time::Duration;

pub const NAME: &str = "cache-status";

/// How the cache handled a request.
pub enum CacheStatus {
    /// Served from cache; `ttl` left (negative when served stale).
    Hit { ttl: i64, detail: Option<&'static str> },
    /// Forwarded: `fwd` is uri-miss, vary-miss, miss, request or stale.
    Forward {
        fwd: &'static str,
        fwd_status: Option<u16>,
        stored: bool,
        ttl: Option<i64>,
        collapsed: bool,
    },
}

impl CacheStatus {
    pub fn header(&self) -> HeaderValue {
        let mut v = String::from("frontdesk");
        match self {
            CacheStatus::Hit { ttl, detail } => {
                v.push_str(&format!("; hit; ttl={ttl}"));
                if let Some(d) = detail {
                    v.push_str(&format!("; detail={d}"));
                }
            }
            CacheStatus::Forward {
                fwd,
                fwd_status,
                stored,
                ttl,
                collapsed,
            } => {
                v.push_str(&format!("; fwd={fwd}"));
                if let Some(s) = fwd_status {
                    v.push_str(&format!("; fwd-status={s}"));
                }
                if *stored {
                    v.push_str("; stored");
                }
                if let Some(t) = ttl {
                    v.push_str(&format!("; ttl={t}"));
                }
                if *collapsed {
                    v.push_str("; collapsed");
                }
            }
        }
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("frontdesk"))
    }
}

pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
