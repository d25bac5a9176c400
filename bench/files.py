#!/usr/bin/env python3
"""Static files: requests per server CPU-second of frontdesk's `files` routes against nginx
serving the same directory (`sendfile on`, `tcp_nopush on`, nginx's usual static setup), over
HTTP/1.1 keep-alive. The shared harness has no static-file scenario.

Each server runs one worker pinned to the last CPU; wrk runs on the others. Rounds are
interleaved; the figures are medians of the rounds, and the ratio is the median of the
per-round ratios. Server CPU is read from /proc (the nginx worker and its master).

Usage: bench/files.py [--rounds 3] [--seconds 5] [--conns 64] [--paths /index.html,/1k.bin,/64k.bin]
Needs nginx, wrk, taskset; frontdesk built with `cargo build --release`.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import cpu, frontdesk_bin, split_cpus, stop_all, wait_port  # noqa: E402

PORTS = {"nginx": 29901, "frontdesk": 29911}
FILES = {"index.html": 100, "1k.bin": 1024, "64k.bin": 65536, "1m.bin": 1024 * 1024}


def configs(work):
    www = f"{work}/www"
    os.makedirs(www, exist_ok=True)
    for name, size in FILES.items():
        open(f"{www}/{name}", "wb").write(os.urandom(size) if name.endswith(".bin") else b"x" * size)
    os.makedirs(f"{work}/nginx", exist_ok=True)
    open(f"{work}/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000000; keepalive_timeout 300s;
  types {{ text/html html; application/octet-stream bin; }}
  server {{ listen 127.0.0.1:{PORTS['nginx']} backlog=4096; root {www}; }} }}
""")
    open(f"{work}/fd.toml", "w").write(f"""[runtime]
workers = 1
watch = false
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:{PORTS['frontdesk']}"
[[route]]
files = {{ root = "{www}", precompressed = [] }}
""")


def run_wrk(url, args, load_cpus):
    out = subprocess.run(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s", url],
                         capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m or "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk failed on {url}:\n{out}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--paths", default="/index.html,/1k.bin,/64k.bin")
    args = ap.parse_args()
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="files-bench-")
    os.chmod(work, 0o755)  # nginx's worker (not root) reads the files
    procs = []
    try:
        configs(work)
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers = {
            "nginx": subprocess.Popen(["taskset", "-c", proxy_cpu, "nginx", "-p", f"{work}/nginx", "-c",
                                       f"{work}/nginx.conf", "-e", "stderr"], **quiet),
            "frontdesk": subprocess.Popen(["taskset", "-c", proxy_cpu, frontdesk_bin(), "run", "--config",
                                           f"{work}/fd.toml"], **quiet),
        }
        procs.extend(servers.values())
        for port in PORTS.values():
            wait_port(port)
        paths = args.paths.split(",")
        results = {}
        for _ in range(args.rounds):
            for path in paths:
                for name, proc in servers.items():
                    u0, s0 = cpu(proc.pid)
                    done = run_wrk(f"http://127.0.0.1:{PORTS[name]}{path}", args, load_cpus)
                    u1, s1 = cpu(proc.pid)
                    used = max(u1 + s1 - u0 - s0, 1e-3)
                    results.setdefault((path, name), []).append((done / args.seconds, done / used))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"wrk -t1 -c{args.conns}, {args.rounds} rounds x {args.seconds} s, servers on CPU {proxy_cpu}, "
              f"wrk on {load_cpus}\n")
        print("| path | frontdesk req/CPU-s | nginx req/CPU-s | ratio per round | median | frontdesk req/s | nginx req/s |")
        print("|---|---:|---:|---|---:|---:|---:|")
        for path in paths:
            f, n = results[(path, "frontdesk")], results[(path, "nginx")]
            ratios = [a[1] / b[1] for a, b in zip(f, n)]
            print(f"| `{path}` | {med([x[1] for x in f]):,.0f} | {med([x[1] for x in n]):,.0f} | "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} | {med(ratios):.2f} | "
                  f"{med([x[0] for x in f]):,.0f} | {med([x[0] for x in n]):,.0f} |")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
