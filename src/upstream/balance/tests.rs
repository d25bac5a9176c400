use super::*;
use crate::upstream::backend::Backend;

fn backends(n: usize) -> Vec<Arc<Backend>> {
    (0..n)
        .map(|i| Arc::new(Backend::new(&format!("127.0.0.1:{}", 9000 + i))))
        .collect()
}

fn counts(b: &Balancer, bs: &[Arc<Backend>], weights: &[u32], rounds: usize) -> Vec<usize> {
    let mut c = vec![0; bs.len()];
    for _ in 0..rounds {
        let i = b
            .pick(
                bs,
                weights,
                &PickInput {
                    key_hash: None,
                    exclude: &[],
                },
            )
            .unwrap();
        c[i] += 1;
    }
    c
}

#[test]
fn round_robin_is_exact() {
    let bs = backends(3);
    let c = counts(&Balancer::round_robin(0), &bs, &[1, 1, 1], 300);
    assert_eq!(c, vec![100, 100, 100]);
}

#[test]
fn smooth_weighted_follows_weights_and_interleaves() {
    let bs = backends(3);
    let b = Balancer::Weighted(Mutex::new(Vec::new()));
    let weights = [5, 1, 1];
    let seq: Vec<usize> = (0..7)
        .map(|_| {
            b.pick(
                &bs,
                &weights,
                &PickInput {
                    key_hash: None,
                    exclude: &[],
                },
            )
            .unwrap()
        })
        .collect();
    // nginx's documented sequence for weights 5,1,1: a a b a c a a.
    assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    let c = counts(&b, &bs, &weights, 700);
    assert_eq!(c, vec![500, 100, 100]);
}

#[test]
fn random_is_within_tolerance_of_weights() {
    let bs = backends(2);
    let c = counts(&Balancer::Random, &bs, &[1, 3], 20_000);
    let share = c[1] as f64 / 20_000.0;
    assert!((share - 0.75).abs() < 0.03, "share of weight-3 backend was {share}");
}

#[test]
fn least_conn_prefers_the_idle_backend() {
    let bs = backends(3);
    bs[0].inflight.store(5, Ordering::Relaxed);
    bs[2].inflight.store(2, Ordering::Relaxed);
    let c = counts(&Balancer::LeastConn, &bs, &[1, 1, 1], 50);
    assert_eq!(c, vec![0, 50, 0]);
}

#[test]
fn p2c_ewma_avoids_the_slow_backend() {
    let bs = backends(2);
    for _ in 0..5 {
        bs[0].report_success(Some(std::time::Duration::from_millis(50)));
        bs[1].report_success(Some(std::time::Duration::from_millis(1)));
    }
    let c = counts(&Balancer::P2cEwma, &bs, &[1, 1], 100);
    assert_eq!(c, vec![0, 100]);
}

#[test]
fn unavailable_and_excluded_backends_are_skipped() {
    let bs = backends(3);
    bs[1].set_healthy(false);
    let rr = Balancer::round_robin(0);
    for _ in 0..10 {
        let i = rr
            .pick(
                &bs,
                &[1, 1, 1],
                &PickInput {
                    key_hash: None,
                    exclude: &[0],
                },
            )
            .unwrap();
        assert_eq!(i, 2);
    }
    bs[2].set_healthy(false);
    assert_eq!(
        rr.pick(
            &bs,
            &[1, 1, 1],
            &PickInput {
                key_hash: None,
                exclude: &[0]
            }
        ),
        None
    );
}

#[test]
fn hash_ring_spreads_keys_and_moves_few_when_a_backend_leaves() {
    let addrs: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:80")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let ring = HashRing::new(&refs, &[1; 5]);
    let keys: Vec<u64> = (0..10_000u32).map(|k| hash::hash_bytes(&k.to_le_bytes())).collect();
    let before: Vec<usize> = keys.iter().map(|&h| ring.lookup(h, |_| true).unwrap()).collect();
    let mut c = [0usize; 5];
    for &i in &before {
        c[i] += 1;
    }
    for &n in &c {
        assert!((1500..=2500).contains(&n), "uneven spread {c:?}");
    }
    // Backend 3 leaves: only its keys move, and they spread over the others.
    let after: Vec<usize> = keys.iter().map(|&h| ring.lookup(h, |i| i != 3).unwrap()).collect();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert_eq!(moved, c[3], "only the leaving backend's keys move");
    assert!(before.iter().zip(&after).all(|(&b, &a)| b == 3 || a == b));
    // A ring rebuilt without backend 3 agrees with skipping it.
    let refs4: Vec<&str> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, a)| *a)
        .collect();
    let ring4 = HashRing::new(&refs4, &[1; 4]);
    let same = keys
        .iter()
        .zip(&after)
        .filter(|(h, &a)| refs4[ring4.lookup(**h, |_| true).unwrap()] == refs[a])
        .count();
    assert_eq!(same, keys.len());
}

#[test]
fn hash_key_parsing() {
    assert_eq!(HashKey::parse("client_ip").unwrap(), HashKey::ClientIp);
    assert_eq!(HashKey::parse("cookie:sid").unwrap(), HashKey::Cookie("sid".into()));
    assert!(matches!(HashKey::parse("header:X-User").unwrap(), HashKey::Header(_)));
    assert!(HashKey::parse("body").is_err());
}
