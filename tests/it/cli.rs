//! Point 1 and "bad input": the binary's commands, exit codes and diagnostics.

use crate::harness::tls::temp_dir;
use std::process::Command;

fn frontdesk(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(args)
        .output()
        .expect("run frontdesk");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir("cli").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn version_prints_the_crate_version() {
    let (code, out, _) = frontdesk(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("frontdesk {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_the_documented_minimal_config() {
    // The exact example from the core issue, with its certificate files present.
    let pki = crate::harness::tls::Pki::new();
    // Written as a.pem/a.key and b.pem/b.key next to the config, as the example names them.
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let text = include_str!("../../examples/minimal.toml");
    let path = pki.dir.join("frontdesk.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = frontdesk(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains(": ok (2 listener(s), 1 route(s), 1 upstream(s) with 2 backend(s))"),
        "{out}"
    );
}

#[test]
fn check_lists_every_error_with_location_and_hint() {
    let path = write(
        "bad.toml",
        r#"[[listener]]
listen = "127.0.0.1:notaport"

[upstream.app]
servers = ["127.0.0.1:9001"]

[upstream.other]
servers = ["127.0.0.1:9002"]
balance = "fastest"

[[route]]
match = { path_regex = "([unclosed" }
upstream = "app"

[[route]]
upstream = "missing"

[[route]]
upstream = "app"
respond = { status = 200 }
"#,
    );
    let (code, _, err) = frontdesk(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let p = path.display().to_string();
    for expected in [
        format!("{p}:2:10: error: invalid listen address `127.0.0.1:notaport`"),
        format!("{p}:9:11: error: unknown variant `fastest`"),
        format!("{p}:12:24: error: invalid path_regex: unclosed character class"),
        format!("{p}:16:12: error: unknown upstream `missing`"),
        format!("{p}:18:1: error: route `route-3` must have exactly one action, found 2"),
        "hint: declared upstreams: app".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_reports_unknown_keys_and_syntax_errors() {
    let path = write(
        "typo.toml",
        "[[listener]]\nlisten = \"127.0.0.1:0\"\nlisten_port = 80\n",
    );
    let (code, _, err) = frontdesk(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(":3:1: error: unknown field `listen_port`"), "{err}");

    let path = write("syntax.toml", "[[listener]\nlisten = 1\n");
    let (code, _, err) = frontdesk(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(":1:"), "{err}");
    assert!(err.contains("TOML syntax"), "{err}");
}

#[test]
fn run_refuses_a_bad_config() {
    let path = write("bad-run.toml", "[[route]]\nupstream = \"nowhere\"\n");
    let (code, _, err) = frontdesk(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("unknown upstream `nowhere`"), "{err}");
    let (code, _, err) = frontdesk(&["--config", "/nonexistent/frontdesk.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn runtime_workers_sets_the_worker_thread_count() {
    let path = write("workers.toml", "[runtime]\nworkers = 3\n[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nrespond = { status = 204 }\n");
    let (proc, _addr) = crate::harness::process::Process::start(&path);
    // A thread takes its name when it first runs, which on a loaded machine can come a little
    // after it exists: look again until the names are there (or 5 s pass).
    let count = || {
        std::fs::read_dir(format!("/proc/{}/task", proc.child.id()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "frontdesk-worke") // comm is cut to 15 bytes
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut workers = count();
    while workers < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        workers = count();
    }
    assert_eq!(workers, 3);
}
