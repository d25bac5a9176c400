//! The real binary as a child process, with its stderr lines on a channel.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A frontdesk process whose stderr lines arrive on a channel.
pub struct Process {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    ready: String,
}

impl Process {
    pub fn start(config: &std::path::Path) -> (Process, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut p = Process {
            child,
            lines,
            ready: String::new(),
        };
        let ready = p.wait_for("frontdesk ready");
        p.ready = ready.clone();
        let addr = ready
            .split("listeners=")
            .nth(1)
            .unwrap()
            .split([',', ' '])
            .next()
            .unwrap()
            .to_string();
        (p, addr)
    }

    /// The admin listener's address from the ready line.
    #[cfg_attr(not(feature = "acceleration"), allow(dead_code))] // used by the acceleration tests
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        let addr = self.ready.split("admin=").nth(1).expect("admin listener configured");
        addr.split_whitespace().next().unwrap_or("").parse().unwrap()
    }

    /// Every line printed before the first containing `needle`.
    #[cfg_attr(not(feature = "acceleration"), allow(dead_code))] // used by the acceleration tests
    pub fn lines_until(&mut self, needle: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut before = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return before,
                Ok(line) => before.push(line),
                Err(_) => break,
            }
        }
        panic!("frontdesk never printed {needle:?}; it printed meanwhile: {before:#?}");
    }

    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut other = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => other.push(line),
                Err(_) => break,
            }
        }
        panic!("frontdesk never printed {needle:?}; it printed meanwhile: {other:#?}");
    }

    /// The next line printed, if one comes within `wait`.
    pub fn next_line(&mut self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
