#!/usr/bin/env python3
"""A/B of two frontdesk builds: requests per proxy CPU-second, user and kernel CPU per request
and sleeps (voluntary context switches) per request, in interleaved rounds, with the ratio B÷A
taken within each round. For changes whose effect is smaller than the noise between separate
harness runs.

Both builds run at once on the last CPU with the same configuration (round robin over two
nginx origins, as bench/frontdesk.toml), each on its own port; wrk and the origins run on the
other CPUs, and only one build is under load at a time. The origins serve `/` (100 B, a
`return 200`), `/1k` and `/64k` (files with sendfile and tcp_nopush, as the shared harness).
With `--upstream-tls` the origins speak TLS 1.2/1.3 (ECDSA P-256, OpenSSL's own choice of
suite order, i.e. the client's); `--max-idle 0` makes every request open a new upstream
connection. With `--access-log` both builds write their access log to a file (it is off
otherwise, as in the harness).

Usage: bench/ab.py --a OLD_BINARY [--b NEW_BINARY] [--path /] [--conns 64] [--rounds 4]
                   [--seconds 6] [--upstream-tls] [--max-idle 512] [--access-log]
B defaults to the release build of this checkout.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import cpu, ecdsa_cert, frontdesk_bin, split_cpus, stop_all, wait_port  # noqa: E402

ORIGINS = (29601, 29602)
PORTS = {"A": 29611, "B": 29621}


def origin_conf(work, tls):
    ssl = (f"ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {work}/cert.pem; "
           f"ssl_certificate_key {work}/key.pem;") if tls else ""
    listen = " ".join(f"listen 127.0.0.1:{p}{' ssl' if tls else ''} backlog=4096;" for p in ORIGINS)
    return f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; etag off;
  keepalive_requests 100000000; keepalive_timeout 300s; default_type application/octet-stream;
  server {{ {listen} {ssl} root {work}/www;
    location = / {{ return 200 "{'x' * 100}"; }}
    location / {{ }} }} }}
"""


def frontdesk_conf(port, tls, max_idle, access="off"):
    upstream_tls = 'tls = { sni = "bench.test", verify = false }\n' if tls else ""
    servers = ", ".join(f'"127.0.0.1:{p}"' for p in ORIGINS)
    return f"""[runtime]
workers = 1
watch = false
[log]
access = "{access}"
[[listener]]
listen = "127.0.0.1:{port}"
[upstream.origins]
balance = "round_robin"
servers = [ {servers} ]
{upstream_tls}pool = {{ max_idle = {max_idle} }}
[[route]]
upstream = "origins"
"""


def sleeps(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the build to compare against")
    ap.add_argument("--b", default=frontdesk_bin())
    ap.add_argument("--path", default="/")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--upstream-tls", action="store_true")
    ap.add_argument("--max-idle", type=int, default=512)
    ap.add_argument("--access-log", action="store_true", help="both builds log to a file")
    args = ap.parse_args()
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="ab-")
    os.chmod(work, 0o755)  # run as root, the origin's nginx workers drop to nobody and must read the files
    procs = []

    def start(cmd, cpus):
        p = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        os.makedirs(f"{work}/www")
        for name, size in (("1k", 1024), ("64k", 65536)):
            open(f"{work}/www/{name}", "wb").write(b"y" * size)
        if args.upstream_tls:
            ecdsa_cert(work)
        open(f"{work}/origin.conf", "w").write(origin_conf(work, args.upstream_tls))
        start(["nginx", "-p", work, "-c", f"{work}/origin.conf", "-e", "stderr"], load_cpus)
        builds = {}
        for tag, binary in (("A", args.a), ("B", args.b)):
            conf = f"{work}/{tag}.toml"
            access = f"{work}/access-{tag}.log" if args.access_log else "off"
            open(conf, "w").write(frontdesk_conf(PORTS[tag], args.upstream_tls, args.max_idle, access))
            builds[tag] = start([binary, "run", "--config", conf], proxy_cpu).pid
        for port in ORIGINS + tuple(PORTS.values()):
            wait_port(port)
        rows = {"A": [], "B": []}
        for rnd in range(args.rounds):
            for tag in ("A", "B"):
                url = f"http://127.0.0.1:{PORTS[tag]}{args.path}"
                if rnd == 0:
                    subprocess.run(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}", "-d2s", url],
                                   capture_output=True)
                pid = builds[tag]
                (u0, s0), c0 = cpu(pid), sleeps(pid)
                out = subprocess.run(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}",
                                      f"-d{args.seconds}s", url], capture_output=True, text=True).stdout
                (u1, s1), c1 = cpu(pid), sleeps(pid)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
                if errors:
                    sys.exit(f"round {rnd + 1} {tag}: {errors.group(0)}")
                u, s = u1 - u0, s1 - s0
                rows[tag].append(dict(rps=n / args.seconds, per_cpu=n / (u + s), user=u / n * 1e6, kernel=s / n * 1e6,
                                      sleeps=(c1 - c0) / n))
        print("| round | A per CPU-s | B per CPU-s | B ÷ A | A user / kernel µs | B user / kernel µs "
              "| A sleeps/req | B sleeps/req | A req/s | B req/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ratios = []
        for i, (a, b) in enumerate(zip(rows["A"], rows["B"])):
            ratios.append(b["per_cpu"] / a["per_cpu"])
            print(f"| {i + 1} | {a['per_cpu']:,.0f} | {b['per_cpu']:,.0f} | {ratios[-1]:.2f} "
                  f"| {a['user']:.2f} / {a['kernel']:.2f} | {b['user']:.2f} / {b['kernel']:.2f} "
                  f"| {a['sleeps']:.3f} | {b['sleeps']:.3f} | {a['rps']:,.0f} | {b['rps']:,.0f} |")
        ratios.sort()
        print(f"\nB ÷ A per proxy CPU-second: median {ratios[len(ratios) // 2]:.2f}, range "
              f"{ratios[0]:.2f}–{ratios[-1]:.2f}. {args.rounds} interleaved rounds × {args.seconds} s, "
              f"`{args.path}`, {args.conns} connections, upstream {'TLS' if args.upstream_tls else 'plain'}, "
              f"max_idle {args.max_idle}, access log {'on' if args.access_log else 'off'}; proxies on CPU {proxy_cpu}, wrk and origins on {load_cpus}.")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
