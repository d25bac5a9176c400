#!/usr/bin/env python3
"""HTTP/2 requests per proxy CPU-second: frontdesk against HAProxy and nginx, as the performance
issue's target 3 states it — `h2load -m 100`, over h2c (prior knowledge) and over TLS (ALPN h2,
ECDSA P-256). The shared harness covers h2c at `-m 10` only; this script adds the rest. Mode
`h1tls` measures HTTP/1.1 over TLS (ALPN http/1.1, one request at a time per keep-alive
connection), which the harness does not cover either.

Each proxy runs one worker pinned to the last CPU and balances over two nginx origins serving
files of 100 B (`/`), 1 KiB (`/1k`) and 64 KiB (`/64k`) with keep-alive; h2load and the
origins run on the other CPUs. Rounds are interleaved; the figures are medians of the rounds,
and the ratios are medians of the per-round ratios. Proxy CPU is read from /proc.

Usage: bench/h2_proxies.py [--rounds 3] [--seconds 6] [--conns 64] [--streams 100]
                           [--paths /,/1k,/64k] [--modes h2c,tls,h1tls]
"""
import argparse, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import cpu, ecdsa_cert, frontdesk_bin, split_cpus, stop_all, wait_port  # noqa: E402

# The origins listen with a backlog of 4096, as in the shared harness: at -m 100 a proxy opens
# thousands of upstream connections at once when a run starts.
ORIGINS = (29511, 29512)
# (h2c port, TLS port) per proxy
PORTS = {"nginx": (29521, 29522), "haproxy": (29531, 29532), "frontdesk": (29541, 29542)}


def configs(work):
    www = f"{work}/www"
    os.makedirs(www, exist_ok=True)
    for name, size in (("index.html", 100), ("1k", 1024), ("64k", 65536)):
        open(f"{www}/{name}", "wb").write(b"x" * size)
    os.makedirs(f"{work}/origin", exist_ok=True)
    os.makedirs(f"{work}/nginx", exist_ok=True)
    open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit; worker_rlimit_nofile 65536;
events {{ worker_connections 32768; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s; sendfile on; tcp_nopush on;
  server {{ listen 127.0.0.1:{ORIGINS[0]} backlog=4096; listen 127.0.0.1:{ORIGINS[1]} backlog=4096; root {www}; }} }}
""")
    cert, key = f"{work}/cert.pem", f"{work}/key.pem"
    open(f"{work}/both.pem", "w").write(open(cert).read() + open(key).read())
    open(f"{work}/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit; worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_timeout 300s; keepalive_requests 100000000; http2_max_concurrent_streams 128;
  upstream origins {{ server 127.0.0.1:{ORIGINS[0]}; server 127.0.0.1:{ORIGINS[1]}; keepalive 512; keepalive_requests 100000000; }}
  server {{ listen 127.0.0.1:{PORTS['nginx'][0]} http2 backlog=4096; listen 127.0.0.1:{PORTS['nginx'][1]} ssl http2 backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://origins; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffer_size 16k; proxy_buffers 8 16k; proxy_max_temp_file_size 0; }} }} }}
""")
    open(f"{work}/haproxy.cfg", "w").write(f"""
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    http-reuse always
frontend fe_h2c
    bind 127.0.0.1:{PORTS['haproxy'][0]} proto h2
    default_backend origins
frontend fe_tls
    bind 127.0.0.1:{PORTS['haproxy'][1]} ssl crt {work}/both.pem alpn h2,http/1.1
    default_backend origins
backend origins
    balance roundrobin
    server o1 127.0.0.1:{ORIGINS[0]}
    server o2 127.0.0.1:{ORIGINS[1]}
""")
    open(f"{work}/fd.toml", "w").write(f"""[runtime]
workers = 1
watch = false
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:{PORTS['frontdesk'][0]}"
[[listener]]
listen = "127.0.0.1:{PORTS['frontdesk'][1]}"
tls = [ {{ cert = "{cert}", key = "{key}" }} ]
[upstream.origins]
balance = "round_robin"
servers = [ "127.0.0.1:{ORIGINS[0]}", "127.0.0.1:{ORIGINS[1]}" ]
pool = {{ max_idle = 512 }}
[[route]]
upstream = "origins"
""")


def run_load(url, args, load_cpus, mode):
    # HTTP/1.1 over TLS: one request at a time per keep-alive connection (h2load's -m would pipeline).
    proto = ["--h1", "-m", "1"] if mode == "h1tls" else ["-m", str(args.streams)]
    out = subprocess.run(["taskset", "-c", load_cpus, "h2load", "-c", str(args.conns), *proto,
                          "-D", str(args.seconds), url], capture_output=True, text=True).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not m or int(m.group(2)) == 0:
        sys.exit(f"h2load failed on {url}:\n{out}")
    done, ok = int(m.group(1)), int(m.group(2))
    if ok < done:
        print(f"warning: {done - ok} of {done} requests failed on {url}", file=sys.stderr)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--paths", default="/,/1k,/64k")
    ap.add_argument("--modes", default="h2c,tls")
    args = ap.parse_args()
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="h2bench-")
    os.chmod(work, 0o755)  # the origins' nginx workers (not root) read the files in it
    procs = []
    try:
        ecdsa_cert(work)
        configs(work)
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(subprocess.Popen(["taskset", "-c", load_cpus, "nginx", "-p", f"{work}/origin", "-c",
                                       f"{work}/origin.conf", "-e", "stderr"], **quiet))
        proxies = {
            "nginx": subprocess.Popen(["taskset", "-c", proxy_cpu, "nginx", "-p", f"{work}/nginx", "-c",
                                       f"{work}/nginx.conf", "-e", "stderr"], **quiet),
            "haproxy": subprocess.Popen(["taskset", "-c", proxy_cpu, "haproxy", "-f", f"{work}/haproxy.cfg"], **quiet),
            "frontdesk": subprocess.Popen(["taskset", "-c", proxy_cpu, frontdesk_bin(), "run", "--config",
                                           f"{work}/fd.toml"], **quiet),
        }
        procs.extend(proxies.values())
        for port in list(ORIGINS) + [p for pair in PORTS.values() for p in pair]:
            wait_port(port)
        modes = args.modes.split(",")
        paths = args.paths.split(",")
        results = {}
        for _ in range(args.rounds):
            for mode in modes:
                for path in paths:
                    for name, proc in proxies.items():
                        port = PORTS[name][0 if mode == "h2c" else 1]
                        scheme = "http" if mode == "h2c" else "https"
                        u0, s0 = cpu(proc.pid)
                        done = run_load(f"{scheme}://127.0.0.1:{port}{path}", args, load_cpus, mode)
                        u1, s1 = cpu(proc.pid)
                        used = max(u1 + s1 - u0 - s0, 1e-3)
                        results.setdefault((mode, path, name), []).append((done / args.seconds, done / used))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"h2load -c{args.conns} -m{args.streams} (h1tls: --h1 -m1), {args.rounds} rounds x {args.seconds} s, "
              f"proxies on CPU {proxy_cpu}, load and origins on {load_cpus}\n")
        print("| mode | path | frontdesk req/CPU-s | HAProxy | nginx | vs HAProxy | vs nginx | frontdesk req/s | HAProxy req/s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for mode in modes:
            for path in paths:
                r = {n: results[(mode, path, n)] for n in proxies}
                ratio = lambda other: med([f[1] / o[1] for f, o in zip(r["frontdesk"], r[other])])
                print(f"| {mode} | `{path}` | {med([x[1] for x in r['frontdesk']]):,.0f} | "
                      f"{med([x[1] for x in r['haproxy']]):,.0f} | {med([x[1] for x in r['nginx']]):,.0f} | "
                      f"{ratio('haproxy'):.2f} | {ratio('nginx'):.2f} | {med([x[0] for x in r['frontdesk']]):,.0f} | "
                      f"{med([x[0] for x in r['haproxy']]):,.0f} |")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
