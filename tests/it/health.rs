//! Point 6: active health checks (HTTP and TCP) and passive outlier detection.

use crate::harness::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn admin_state(p: &TestProxy) -> serde_json::Value {
    let a = get(p.admin(), "/upstreams").await;
    serde_json::from_str(&a.body).unwrap()
}

async fn backend_flag(p: &TestProxy, idx: usize, flag: &str) -> bool {
    admin_state(p).await["upstreams"]["app"][idx][flag].as_bool().unwrap()
}

#[tokio::test]
async fn active_http_check_takes_a_backend_out_and_back() {
    let sick = Arc::new(AtomicBool::new(false));
    let s = sick.clone();
    let flaky = Origin::start(move |req| {
        let sick = s.load(Ordering::SeqCst);
        async move {
            if req.uri().path() == "/healthz" && sick {
                status(500, "sick")
            } else {
                status(200, "flaky")
            }
        }
    })
    .await;
    let steady = Origin::named("steady").await;
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[upstream.app]
servers = {}
health = {{ path = "/healthz", interval = "50ms", timeout = "1s", rise = 2, fall = 2, expect_status = "200-299" }}
[[route]]
upstream = "app"
"#,
        servers(&[&flaky, &steady])
    );
    let p = proxy(&cfg).await;
    sick.store(true, Ordering::SeqCst);
    let pr = &p;
    eventually(Duration::from_secs(5), "flaky marked down", || async move {
        !backend_flag(pr, 0, "healthy").await
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            get(p.addr(0), "/").await.body,
            "steady",
            "a down backend gets no requests"
        );
    }
    sick.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "flaky back up", || async move {
        backend_flag(pr, 0, "healthy").await
    })
    .await;
    let mut saw_flaky = false;
    for _ in 0..4 {
        saw_flaky |= get(p.addr(0), "/").await.body == "flaky";
    }
    assert!(saw_flaky);
}

#[tokio::test]
async fn tcp_check_detects_a_closed_port() {
    let gone = Origin::named("gone").await;
    let up = Origin::named("up").await;
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = {}\nhealth = {{ interval = \"50ms\", fall = 1 }}\n[[route]]\nupstream = \"app\"\n",
        servers(&[&gone, &up])
    );
    let p = proxy(&cfg).await;
    gone.stop();
    let pr = &p;
    eventually(Duration::from_secs(5), "closed port marked down", || async move {
        !backend_flag(pr, 0, "healthy").await
    })
    .await;
    assert!(backend_flag(&p, 1, "healthy").await);
}

#[tokio::test]
async fn passive_detection_ejects_a_failing_backend() {
    let bad = Origin::start(|_| async { status(503, "bad") }).await;
    let good = Origin::named("good").await;
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = {}\npassive = {{ consecutive_failures = 3, base_ejection = \"30s\" }}\n[[route]]\nupstream = \"app\"\n",
        servers(&[&bad, &good])
    );
    let p = proxy(&cfg).await;
    let mut c = H1::connect(p.addr(0)).await;
    let mut bad_answers = 0;
    for _ in 0..20 {
        if c.get("x", "/").await.status == 503 {
            bad_answers += 1;
        }
    }
    assert_eq!(bad_answers, 3, "ejected after three 5xx in a row");
    assert!(backend_flag(&p, 0, "ejected").await);
    assert_eq!(bad.requests(), 3);
}
