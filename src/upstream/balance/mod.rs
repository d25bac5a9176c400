//! Load balancing: picks one available backend of an upstream for a request.
//! Every policy skips backends that are down (health checks) or ejected (passive detection), and
//! the ones listed in `exclude` (already tried by this request).

pub mod hash;

pub use hash::{HashKey, HashRing};

use super::backend::Backend;
use super::shard::{self, Padded};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a policy may look at to choose.
pub struct PickInput<'a> {
    /// Hash of the request's key, for `hash` (computed only when that policy is used).
    pub key_hash: Option<u64>,
    pub exclude: &'a [usize],
}

pub enum Balancer {
    /// One counter per worker-thread shard (each starting elsewhere), so picks do not contend.
    RoundRobin(Box<[Padded<AtomicUsize>]>),
    /// nginx's smooth weighted round robin: current weights, adjusted on every pick.
    Weighted(Mutex<Vec<i64>>),
    LeastConn,
    P2cEwma,
    Random,
    Hash(HashRing, HashKey),
}

impl Balancer {
    /// Round robin starting at `first` (shards start spread out from there).
    pub fn round_robin(first: usize) -> Balancer {
        Balancer::RoundRobin(
            (0..shard::count())
                .map(|i| Padded(AtomicUsize::new(first + i)))
                .collect(),
        )
    }

    /// Does this policy read in-flight counts and latency? Others skip maintaining them.
    pub fn reads_load(&self) -> bool {
        matches!(self, Balancer::LeastConn | Balancer::P2cEwma)
    }

    pub fn pick(&self, backends: &[Arc<Backend>], weights: &[u32], input: &PickInput) -> Option<usize> {
        let usable = |i: usize| backends[i].is_available() && !input.exclude.contains(&i);
        let n = backends.len();
        if n == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin(counters) => {
                let start = counters[shard::index(counters.len())].0.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            Balancer::Weighted(current) => {
                let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
                if cur.len() != n {
                    *cur = vec![0; n];
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in (0..n).filter(|&i| usable(i)) {
                    let w = i64::from(weights[i]);
                    cur[i] += w;
                    total += w;
                    if best.is_none_or(|b| cur[i] > cur[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    cur[b] -= total;
                }
                best
            }
            Balancer::LeastConn => {
                let offset = fastrand::usize(..n);
                (0..n)
                    .map(|k| (offset + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| {
                        // Compare inflight/weight without division: scale by a common factor.
                        let load = backends[i].inflight.load(Ordering::Relaxed) as u64 + 1;
                        load * 1_000_000 / u64::from(weights[i].max(1))
                    })
            }
            Balancer::P2cEwma => {
                let candidates: Vec<usize> = (0..n).filter(|&i| usable(i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    m => {
                        let a = fastrand::usize(..m);
                        let mut b = fastrand::usize(..m - 1);
                        if b >= a {
                            b += 1;
                        }
                        let cost = |i: usize| {
                            let be = &backends[i];
                            // Unmeasured backends look cheap so they get tried.
                            (be.ewma_ns().max(1) as u128) * (be.inflight.load(Ordering::Relaxed) as u128 + 1)
                                / u128::from(weights[i].max(1))
                        };
                        let (a, b) = (candidates[a], candidates[b]);
                        Some(if cost(a) <= cost(b) { a } else { b })
                    }
                }
            }
            Balancer::Random => {
                let total: u64 = (0..n).filter(|&i| usable(i)).map(|i| u64::from(weights[i])).sum();
                if total == 0 {
                    return None;
                }
                let mut r = fastrand::u64(..total);
                for i in (0..n).filter(|&i| usable(i)) {
                    let w = u64::from(weights[i]);
                    if r < w {
                        return Some(i);
                    }
                    r -= w;
                }
                None
            }
            Balancer::Hash(ring, _) => {
                let h = input.key_hash.unwrap_or_else(|| fastrand::u64(..));
                ring.lookup(h, usable)
            }
        }
    }
}

#[cfg(test)]
mod tests;
