//! Consistent hashing on a ring of virtual nodes (Karger et al.). When a backend leaves, only the
//! keys that mapped to it move; the rest keep their backend.

use crate::route::RequestView;
use std::net::IpAddr;

/// Which part of a request is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Path,
    Header(http::HeaderName),
    Cookie(String),
}

impl HashKey {
    pub fn parse(s: &str) -> Result<HashKey, String> {
        match s {
            "client_ip" => Ok(HashKey::ClientIp),
            "path" => Ok(HashKey::Path),
            _ => {
                if let Some(h) = s.strip_prefix("header:") {
                    http::HeaderName::from_bytes(h.trim().as_bytes())
                        .map(HashKey::Header)
                        .map_err(|_| format!("invalid header name `{h}`"))
                } else if let Some(c) = s.strip_prefix("cookie:") {
                    Ok(HashKey::Cookie(c.trim().to_string()))
                } else {
                    Err(format!("unknown hash key `{s}`"))
                }
            }
        }
    }

    /// Hash of this key for a request; None when the request lacks it (a random backend is used).
    pub fn hash<R: RequestView>(&self, req: &R, client: IpAddr) -> Option<u64> {
        match self {
            HashKey::ClientIp => Some(match client {
                IpAddr::V4(v4) => hash_bytes(&v4.octets()),
                IpAddr::V6(v6) => hash_bytes(&v6.octets()),
            }),
            HashKey::Path => Some(hash_bytes(req.path().as_bytes())),
            HashKey::Header(name) => req.header(name.as_str()).map(hash_bytes),
            HashKey::Cookie(name) => crate::route::cookie_value(req, name).map(|v| hash_bytes(v.as_bytes())),
        }
    }
}

/// FNV-1a followed by a 64-bit finalizer (splitmix64) so that similar keys spread over the ring.
/// Stable across builds and platforms, so every instance maps a key to the same backend.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Virtual nodes per unit of weight: enough for an even spread over a handful of backends.
const VNODES_PER_WEIGHT: u32 = 160;

pub struct HashRing {
    /// (point on the ring, backend index), sorted by point.
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// Builds the ring from backend addresses and weights. Points depend only on the address, so
    /// removing one backend leaves every other backend's points where they were.
    pub fn new(addrs: &[&str], weights: &[u32]) -> HashRing {
        let mut points = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            for v in 0..weights[i].max(1) * VNODES_PER_WEIGHT {
                points.push((hash_bytes(format!("{addr}#{v}").as_bytes()), i));
            }
        }
        points.sort_unstable();
        HashRing { points }
    }

    /// The first usable backend clockwise from `hash`.
    pub fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let n = self.points.len();
        let mut seen_last = usize::MAX;
        for k in 0..n {
            let (_, i) = self.points[(start + k) % n];
            if i != seen_last && usable(i) {
                return Some(i);
            }
            seen_last = i;
        }
        None
    }
}
