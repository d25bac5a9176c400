//! Point 5: every balancing policy over real backends, sticky sessions, upstream TLS.

use crate::harness::*;
use http::Request;
use http_body_util::Full;
use std::collections::HashMap;

async fn three() -> (Origin, Origin, Origin) {
    (
        Origin::named("a").await,
        Origin::named("b").await,
        Origin::named("c").await,
    )
}

async fn tally(p: &TestProxy, n: usize) -> HashMap<String, usize> {
    let mut c = H1::connect(p.addr(0)).await;
    let mut out = HashMap::new();
    for _ in 0..n {
        *out.entry(c.get("x", "/").await.body).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (a, b, c) = three().await;
    let p = proxy(&one_upstream(&servers(&[&a, &b, &c]), "balance = \"round_robin\"")).await;
    let t = tally(&p, 30).await;
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{t:?}");
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let (a, b, _) = three().await;
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nbalance = \"weighted_round_robin\"\nservers = [\"{}\", {{ addr = \"{}\", weight = 3 }}]\n[[route]]\nupstream = \"app\"\n",
        a.addr, b.addr
    );
    let p = proxy(&cfg).await;
    let t = tally(&p, 40).await;
    assert_eq!(t["a"], 10);
    assert_eq!(t["b"], 30);
}

#[tokio::test]
async fn random_and_p2c_use_every_backend() {
    for policy in ["random", "p2c_ewma", "least_conn"] {
        let (a, b, c) = three().await;
        let p = proxy(&one_upstream(
            &servers(&[&a, &b, &c]),
            &format!("balance = \"{policy}\""),
        ))
        .await;
        let t = tally(&p, 90).await;
        let sum: usize = t.values().sum();
        assert_eq!(sum, 90);
        if policy != "least_conn" {
            // With sequential requests least_conn may legitimately prefer one idle backend.
            assert_eq!(t.len(), 3, "{policy}: {t:?}");
        }
    }
}

#[tokio::test]
async fn least_conn_avoids_the_busy_backend() {
    let slow = Origin::start(|_| async {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        status(200, "slow")
    })
    .await;
    let fast = Origin::named("fast").await;
    let p = proxy(&one_upstream(&servers(&[&slow, &fast]), "balance = \"least_conn\"")).await;
    let addr = p.addr(0);
    // Ties are broken at random, so send requests until one is held by the slow backend.
    let mut busy = Vec::new();
    for _ in 0..50 {
        busy.push(tokio::spawn(async move { get(addr, "/").await.body }));
        let slow_ref = &slow;
        let started = tokio::time::Instant::now();
        while slow_ref.requests() == 0
            && fast.requests() < busy.len()
            && started.elapsed() < std::time::Duration::from_secs(2)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if slow.requests() > 0 {
            break;
        }
    }
    assert_eq!(slow.requests(), 1, "one request is in flight on the slow backend");
    // While it is busy, every new request goes to the idle backend.
    for _ in 0..10 {
        assert_eq!(get(addr, "/").await.body, "fast");
    }
    assert_eq!(slow.requests(), 1);
    for b in busy {
        b.await.unwrap();
    }
}

#[tokio::test]
async fn hash_by_header_is_consistent() {
    let (a, b, c) = three().await;
    let p = proxy(&one_upstream(
        &servers(&[&a, &b, &c]),
        "balance = \"hash\"\nhash_key = \"header:x-user\"",
    ))
    .await;
    let mut owner = HashMap::new();
    for round in 0..3 {
        for user in 0..20 {
            let req = Request::get("/")
                .header("host", "x")
                .header("x-user", format!("user-{user}"))
                .body(Full::default())
                .unwrap();
            let who = send(p.addr(0), req).await.body;
            let prev = owner.entry(user).or_insert(who.clone());
            assert_eq!(*prev, who, "user-{user} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = owner.values().collect();
    assert!(distinct.len() >= 2, "keys spread over backends: {owner:?}");
}

#[tokio::test]
async fn sticky_cookie_pins_a_client() {
    let (a, b, c) = three().await;
    let p = proxy(&one_upstream(&servers(&[&a, &b, &c]), "sticky = { cookie = \"srv\" }")).await;
    let first = get(p.addr(0), "/").await;
    let cookie = first.header("set-cookie").to_string();
    assert!(cookie.starts_with("srv="), "sticky cookie set: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let req = Request::get("/")
            .header("host", "x")
            .header("cookie", pair.as_str())
            .body(Full::default())
            .unwrap();
        let a = send(p.addr(0), req).await;
        assert_eq!(a.body, first.body, "pinned to the first backend");
        assert_eq!(a.header("set-cookie"), "", "no new cookie while the pin holds");
    }
}

#[tokio::test]
async fn upstream_tls_with_ca_and_sni() {
    let pki = tls::Pki::new();
    let (cert, key) = pki.issue("origin", &["origin.test"]);
    // A TLS origin: a frontdesk listener with a fixed response plays the backend.
    let backend_cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n[[route]]\nrespond = {{ status = 200, body = \"tls backend\" }}\n",
        cert.display(),
        key.display()
    );
    let backend = proxy(&backend_cfg).await;
    let front = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\ntls = {{ sni = \"origin.test\", ca = \"{}\" }}\n[[route]]\nupstream = \"app\"\n",
        backend.addr(0),
        pki.ca_path().display()
    );
    let p = proxy(&front).await;
    let a = get(p.addr(0), "/").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "tls backend");

    // Wrong SNI name: verification fails, 502.
    let wrong = front.replace("origin.test", "other.test");
    let p = proxy(&wrong).await;
    assert_eq!(get(p.addr(0), "/").await.status, 502);
}
