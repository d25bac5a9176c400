//! Seeded random conversations with the real binary, for the robustness tests: a small PRNG,
//! a driver that plays one connection's bytes, and a runner that plays many and checks that the
//! process neither panicked nor stopped.

use super::process::Process;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// xorshift64*: a fixed seed gives the same bytes on every run, so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// The seed from environment variable `var` (hex), or `default`.
    pub fn seed(var: &str, default: u64) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(default)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1)).map(|_| self.next() as u8).collect()
    }
}

/// A check of what came back on a connection: every request answered (`Ok(true)`), not yet
/// (`Ok(false)`), or never will be (`Err`).
pub type Answered = Box<dyn Fn(&[u8]) -> Result<bool, String> + Send + Sync>;

/// One connection: what the client sends, and for a well-formed conversation when it is done.
pub struct Script {
    pub bytes: Vec<u8>,
    pub answered: Option<Answered>,
}

/// Plays `script`: sends its bytes (with `pieces`, in pieces of 1–9 bytes chosen by that seed,
/// 1 ms apart, so that the server reads heads and frames a few bytes at a time), waits until
/// `answered` holds (when there is one), then closes the write side and reads until the server
/// closes. Every wait is bounded by `limit`.
async fn play(addr: SocketAddr, script: Script, limit: Duration, pieces: Option<u64>) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    // The server may close before taking everything (it refused the input): not a failure.
    match pieces {
        None => {
            let _ = s.write_all(&script.bytes).await;
        }
        Some(seed) => {
            let (mut r, mut rest) = (Rng(seed | 1), &script.bytes[..]);
            while !rest.is_empty() {
                let n = (1 + r.below(9)).min(rest.len());
                if s.write_all(&rest[..n]).await.is_err() {
                    break;
                }
                rest = &rest[n..];
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 16384];
    if let Some(answered) = &script.answered {
        let waited = tokio::time::timeout(limit, async {
            loop {
                if answered(&got)? {
                    return Ok(());
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        return match answered(&got)? {
                            true => Ok(()),
                            false => Err("closed before answering all".to_string()),
                        }
                    }
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("{e}; got {:?}", String::from_utf8_lossy(&got))),
            Err(_) => {
                return Err(format!(
                    "not all answered in {limit:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
    let _ = s.shutdown().await;
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| format!("still open {limit:?} after the client closed"))
}

/// Plays every script, 24 connections at a time, each bounded by 10 s; every fourth one is sent
/// in pieces. Returns the failures.
async fn play_all(addr: SocketAddr, scripts: Vec<Script>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut scripts = scripts.into_iter().enumerate().peekable();
    while scripts.peek().is_some() {
        let batch: Vec<_> = scripts
            .by_ref()
            .take(24)
            .map(|(i, script)| {
                let pieces = (i % 4 == 1).then_some(i as u64 * 0x9e37_79b9);
                (i, tokio::spawn(play(addr, script, Duration::from_secs(10), pieces)))
            })
            .collect();
        for (i, task) in batch {
            if let Err(e) = task.await.unwrap() {
                failures.push(format!("connection {i}: {e}"));
            }
        }
    }
    failures
}

/// 300 seeded connections played against a fresh process in front of a `reading_origin`: every
/// third one `well_formed` (which also says how many of its requests are for the origin), the
/// others `hostile`. The seed comes from `seed_var` (hex) or is `default_seed`.
pub async fn run(
    tag: &str,
    seed_var: &str,
    default_seed: u64,
    well_formed: fn(&mut Rng) -> (Script, usize),
    hostile: fn(&mut Rng) -> Script,
) -> Run {
    let origin = reading_origin().await;
    let (config, log) = fixed_and_origin_config(tag, origin.addr);
    let (proc, addr) = Process::start(&config);
    let addr: SocketAddr = addr.parse().unwrap();
    let seed = Rng::seed(seed_var, default_seed);
    let mut r = Rng(seed);
    let mut to_origin = 0;
    let scripts: Vec<Script> = (0..300)
        .map(|i| {
            if i % 3 == 0 {
                let (script, n) = well_formed(&mut r);
                to_origin += n;
                script
            } else {
                hostile(&mut r)
            }
        })
        .collect();
    let failures = play_all(addr, scripts).await;
    Run {
        addr,
        proc,
        origin,
        log,
        seed,
        failures,
        to_origin,
    }
}

/// A played `run`: the caller checks that the proxy still serves, then calls `check`.
pub struct Run {
    pub addr: SocketAddr,
    proc: Process,
    origin: super::Origin,
    log: std::path::PathBuf,
    seed: u64,
    failures: Vec<String>,
    to_origin: usize,
}

impl Run {
    /// No panic, no failed connection, and every well-formed request for the origin reached
    /// it (the hostile connections may add some of their own).
    pub fn check(mut self) {
        let seed = self.seed;
        let panics = panics(&mut self.proc);
        assert!(panics.is_empty(), "seed {seed:#x}: the proxy panicked: {panics:#?}");
        assert!(self.failures.is_empty(), "seed {seed:#x}: {:#?}", self.failures);
        let reached = self.origin.requests.load(std::sync::atomic::Ordering::SeqCst);
        let to_origin = self.to_origin;
        assert!(
            reached >= to_origin,
            "{reached} requests reached the origin, {to_origin} expected at least"
        );
        // Whatever the requests carried, each access log line is one JSON object, and every
        // request for the origin has one (lines are written in batches: give them a moment).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.lines().count() >= to_origin || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("seed {seed:#x}: access log line is not JSON ({e}): {line:?}"));
            assert!(v["status"].is_u64() && v["path"].is_string(), "seed {seed:#x}: {line}");
        }
        assert!(
            text.lines().count() >= to_origin,
            "seed {seed:#x}: {} access log lines for {to_origin} requests to the origin",
            text.lines().count()
        );
    }
}

/// The panic reports the process has printed, and whether it is still running.
fn panics(proc: &mut Process) -> Vec<String> {
    assert!(proc.child.try_wait().unwrap().is_none(), "the process exited");
    let mut printed = Vec::new();
    while let Some(line) = proc.next_line(Duration::from_millis(300)) {
        printed.push(line);
    }
    printed.into_iter().filter(|l| l.contains("panicked")).collect()
}

/// Writes a config file for `Process::start`: one plain listener, `/fixed` answered by the
/// proxy itself, everything else proxied to `origin`, the access log in the same folder.
/// Returns the paths of the config and of the log.
fn fixed_and_origin_config(tag: &str, origin: SocketAddr) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = super::tls::temp_dir(tag);
    let (path, log) = (dir.join("frontdesk.toml"), dir.join("access.log"));
    std::fs::write(
        &path,
        format!(
            "[log]\naccess = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{origin}\"]\n\
             [[route]]\nmatch = {{ path = \"/fixed\" }}\nrespond = {{ status = 200, body = \"fixed\" }}\n\
             [[route]]\nupstream = \"app\"\n",
            log.display()
        ),
    )
    .unwrap();
    (path, log)
}

/// An origin that reads each request's whole body, then answers 200 "o" (one that answers
/// first and closes is tested on its own: fastpath.rs).
async fn reading_origin() -> super::Origin {
    super::Origin::start(|req| async move {
        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
        super::status(200, "o")
    })
    .await
}
