//! Point 9: reload (API, SIGHUP, file change) that keeps the old config on error and drops
//! nothing; graceful shutdown; the JSON access log.

use crate::harness::tls::temp_dir;
use crate::harness::*;
use std::time::Duration;

fn fixed(body: &str) -> String {
    format!("[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nrespond = {{ status = 200, body = \"{body}\" }}\n")
}

#[tokio::test]
async fn reload_applies_new_routes_and_rejects_bad_ones() {
    let p = proxy(&fixed("one")).await;
    let addr = p.addr(0);
    let mut kept = H1::connect(addr).await;
    assert_eq!(kept.get("x", "/").await.body, "one");
    p.reload(&fixed("two")).unwrap();
    assert_eq!(get(addr, "/").await.body, "two");
    assert_eq!(
        kept.get("x", "/").await.body,
        "two",
        "open keep-alive connection survives and sees the new config"
    );

    let err = p.reload("[[route]]\nupstream = \"missing\"\n").unwrap_err();
    assert!(err.contains("unknown upstream `missing`"), "{err}");
    assert_eq!(get(addr, "/").await.body, "two", "old config keeps serving");
    assert_eq!(p.addr(0), addr, "listener kept across reloads");
}

#[tokio::test]
async fn no_errors_under_load_during_reloads() {
    let a = Origin::named("a").await;
    let b = Origin::named("b").await;
    let cfg = |first: &Origin, second: &Origin| {
        format!(
            "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = {}\n[[route]]\nupstream = \"app\"\n",
            servers(&[first, second])
        )
    };
    let p = proxy(&cfg(&a, &b)).await;
    let addr = p.addr(0);
    let mut workers = Vec::new();
    for _ in 0..8 {
        workers.push(tokio::spawn(async move {
            let mut c = H1::connect(addr).await;
            let mut bad = 0;
            for i in 0..150 {
                // Mix keep-alive and fresh connections.
                let status = if i % 10 == 0 {
                    get(addr, "/").await.status
                } else {
                    c.get("x", "/").await.status
                };
                if status != 200 {
                    bad += 1;
                }
            }
            bad
        }));
    }
    for i in 0..30 {
        let text = if i % 2 == 0 { cfg(&b, &a) } else { cfg(&a, &b) };
        p.reload(&text).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        assert_eq!(w.await.unwrap(), 0, "no failed request during reloads");
    }
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_request() {
    let dir = temp_dir("log");
    let log = dir.join("access.log");
    let origin = Origin::named("o").await;
    let cfg = format!(
        "[log]\naccess = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nname = \"main\"\nupstream = \"app\"\n",
        log.display(),
        origin.addr
    );
    let p = proxy(&cfg).await;
    let a = get_host(p.addr(0), "log.test", "/hello?x=1").await;
    let logp = &log;
    eventually(Duration::from_secs(5), "log line written", || async move {
        std::fs::read_to_string(logp)
            .map(|s| s.lines().count() == 1)
            .unwrap_or(false)
    })
    .await;
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["host"], "log.test");
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["status"], 200);
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["route"], "main");
    assert_eq!(v["upstream"], origin.addr.to_string());
    assert_eq!(v["bytes_out"], 1);
    assert_eq!(v["request_id"], a.header("x-request-id"));
    for key in ["time", "bytes_in", "duration_ms", "upstream_ms"] {
        assert!(!v[key].is_null(), "{key} present");
    }
}

/// The real binary with `workers` workers, proxying to `origin` and logging to `log`; its config
/// file goes in `dir`.
fn logging_process(
    dir: &std::path::Path,
    workers: usize,
    log: &std::path::Path,
    origin: std::net::SocketAddr,
) -> (crate::harness::process::Process, std::net::SocketAddr) {
    let path = dir.join(format!("frontdesk-{workers}.toml"));
    let cfg = format!(
        "[runtime]\nworkers = {workers}\nwatch = false\n[log]\naccess = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{origin}\"]\n[[route]]\nupstream = \"app\"\n",
        log.display()
    );
    std::fs::write(&path, cfg).unwrap();
    let (proc, addr) = crate::harness::process::Process::start(&path);
    (proc, addr.parse().unwrap())
}

/// The real binary batches each worker's lines and hands them over when the worker runs out of
/// work: every line arrives, promptly, with one and two workers, and the last ones before a
/// SIGTERM are written before the process exits.
#[tokio::test]
async fn access_log_batches_of_the_workers_all_reach_the_file() {
    let dir = temp_dir("logbatch");
    let origin = Origin::named("o").await;
    for workers in [1, 2] {
        let log = dir.join(format!("access-{workers}.log"));
        let (mut proc, addr) = logging_process(&dir, workers, &log, origin.addr);
        let clients: Vec<_> = (0..4)
            .map(|c| {
                tokio::spawn(async move {
                    let mut conn = H1::connect(addr).await;
                    for i in 0..50 {
                        assert_eq!(conn.get("log.test", &format!("/c{c}/r{i}")).await.status, 200);
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        let logp = &log;
        let lines = || async move { std::fs::read_to_string(logp).map(|s| s.lines().count()).unwrap_or(0) };
        eventually(Duration::from_secs(5), "200 log lines written", || async move {
            lines().await == 200
        })
        .await;
        let text = std::fs::read_to_string(&log).unwrap();
        let mut paths = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["status"], 200, "{line}");
            paths.insert(v["path"].as_str().unwrap().to_string());
            ids.insert(v["request_id"].as_str().unwrap().to_string());
        }
        assert_eq!(
            (paths.len(), ids.len()),
            (200, 200),
            "every request logged once ({workers} workers)"
        );

        assert_eq!(get(addr, "/last").await.status, 200);
        proc.signal("-TERM");
        proc.wait_for("frontdesk stopped");
        assert!(proc.child.wait().unwrap().success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.lines().count(),
            201,
            "the last line is written before the exit ({workers} workers)"
        );
        assert!(text.lines().last().unwrap().contains("\"path\":\"/last\""));
    }
}

/// Log rotation as logrotate does it with nginx: the file is renamed, SIGUSR1 makes the proxy
/// open it again by name, and later lines go to the new file.
#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_a_rotation() {
    let dir = temp_dir("logrotate");
    let origin = Origin::named("o").await;
    let (log, rotated) = (dir.join("access.log"), dir.join("access.log.1"));
    let (mut proc, addr) = logging_process(&dir, 1, &log, origin.addr);
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };

    assert_eq!(get(addr, "/before").await.status, 200);
    eventually(Duration::from_secs(5), "first line", || async {
        lines(&log).len() == 1
    })
    .await;
    std::fs::rename(&log, &rotated).unwrap();
    proc.signal("-USR1");
    proc.wait_for("access log reopened");
    assert_eq!(get(addr, "/after").await.status, 200);
    eventually(Duration::from_secs(5), "a line in the new file", || async {
        lines(&log).len() == 1
    })
    .await;

    let (new, old) = (lines(&log), lines(&rotated));
    assert!(new[0].contains("\"path\":\"/after\""), "{new:?}");
    assert_eq!(old.len(), 1, "{old:?}");
    assert!(old[0].contains("\"path\":\"/before\""), "{old:?}");
    proc.signal("-TERM");
    proc.wait_for("frontdesk stopped");
    assert!(proc.child.wait().unwrap().success());
}

#[tokio::test]
async fn process_reloads_on_file_change_and_sighup_and_drains_on_sigterm() {
    let dir = temp_dir("proc");
    let path = dir.join("frontdesk.toml");
    let slow = Origin::start(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        status(200, "origin")
    })
    .await;
    let with = |body: &str| {
        format!(
            "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nmatch = {{ path = \"/slow\" }}\nupstream = \"app\"\n[[route]]\nrespond = {{ status = 200, body = \"{body}\" }}\n",
            slow.addr
        )
    };
    std::fs::write(&path, with("v1")).unwrap();
    let (mut proc, addr) = process::Process::start(&path);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert_eq!(get(addr, "/").await.body, "v1");

    // File change → automatic reload.
    std::fs::write(&path, with("v2")).unwrap();
    proc.wait_for("frontdesk reloaded");
    assert_eq!(get(addr, "/").await.body, "v2");

    // Invalid file → rejected, old config serves; SIGHUP after fixing it → applied.
    std::fs::write(&path, "[[route]]\nupstream = \"gone\"\n").unwrap();
    proc.wait_for("frontdesk reload rejected");
    assert_eq!(get(addr, "/").await.body, "v2");
    std::fs::write(&path, with("v3")).unwrap();
    proc.signal("-HUP");
    proc.wait_for("frontdesk reloaded");
    assert_eq!(get(addr, "/").await.body, "v3");

    // SIGTERM while a slow request is in flight: it completes, then the process exits 0.
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    let slow_ref = &slow;
    eventually(
        Duration::from_secs(5),
        "slow request reached the origin",
        || async move { slow_ref.requests() >= 1 },
    )
    .await;
    proc.signal("-TERM");
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    proc.wait_for("frontdesk stopped");
    let status = proc.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
