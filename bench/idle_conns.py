#!/usr/bin/env python3
"""Memory per idle keep-alive client connection: RSS of a running frontdesk before and after
opening N connections that each made one request and then stay open.

Usage: bench/idle_conns.py [--connections 10000]   (frontdesk built with cargo build --release)
"""
import argparse, os, resource, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import frontdesk_bin  # noqa: E402


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    args = ap.parse_args()
    want = args.connections + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(want * 2, hard) if hard != resource.RLIM_INFINITY else want * 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), hard))
    work = tempfile.mkdtemp(prefix="idle-")
    open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:29203; location / {{ return 200 "ok"; }} }} }}
""")
    origin = subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/origin.conf", "-e", "stderr"])
    cfg = f"""[runtime]
workers = 1
watch = false
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:29201"
limits = {{ idle_timeout = "10m", header_read_timeout = "10m" }}
[upstream.origin]
servers = ["127.0.0.1:29203"]
[[route]]
upstream = "origin"
"""
    open(f"{work}/fd.toml", "w").write(cfg)
    proc = subprocess.Popen([frontdesk_bin(), "run", "--config", f"{work}/fd.toml"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard)))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", 29201), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # Warm up allocator and runtime with a few connections first.
        warm = [socket.create_connection(("127.0.0.1", 29201)) for _ in range(100)]
        for s in warm:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        conns = []
        for i in range(args.connections):
            s = socket.create_connection(("127.0.0.1", 29201))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conns.append(s)
        for s in conns:
            s.recv(4096)
        # Connections give their buffers back after one or two seconds of idleness (their timer
        # ticks every second); on a busy machine 10,000 of them take longer. Wait at least 3 s,
        # then until RSS holds still for a second (up to 30 s).
        time.sleep(3)
        after, deadline = rss_kib(proc.pid), time.time() + 27
        while time.time() < deadline:
            time.sleep(1)
            now = rss_kib(proc.pid)
            if abs(now - after) <= 64:
                break
            after = now
        per = (after - base) * 1024 / args.connections
        print(f"idle baseline RSS {base} KiB; with {args.connections} more idle keep-alive connections {after} KiB; "
              f"{per:.0f} bytes ({per / 1024:.2f} KiB) per connection")
        for s in conns + warm:
            s.close()
    finally:
        proc.terminate()
        proc.wait(5)
        origin.terminate()
        origin.wait(5)


if __name__ == "__main__":
    main()
