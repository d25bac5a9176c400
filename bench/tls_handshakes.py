#!/usr/bin/env python3
"""TLS handshakes per proxy CPU-second, frontdesk against nginx (TLS 1.3, ECDSA P-256
certificate): full handshakes (`openssl s_time -new`) and resumed sessions (`-reuse`). The
client is single-threaded openssl, pinned away from the proxy; the figure that counts is
handshakes per proxy CPU-second, read from /proc like cpu_split.py.

Usage: bench/tls_handshakes.py [--seconds 5] [--rounds 3]
"""
import argparse, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import cpu, frontdesk_bin, stop_all, wait_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ncpu = os.cpu_count()
    proxy_cpu, load_cpus = str(ncpu - 1), ",".join(str(i) for i in range(ncpu - 1))
    work = tempfile.mkdtemp(prefix="tlsbench-")
    procs = []
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-days", "2", "-subj", "/CN=bench.test",
                        "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)
        os.makedirs(f"{work}/nginx", exist_ok=True)
        open(f"{work}/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off;
  ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
  server {{ listen 127.0.0.1:29401 ssl; ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;
    location / {{ return 200 "ok"; }} }} }}
""")
        nginx = subprocess.Popen(["taskset", "-c", proxy_cpu, "nginx", "-p", f"{work}/nginx", "-c", f"{work}/nginx.conf", "-e", "stderr"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nginx)
        open(f"{work}/fd.toml", "w").write(f"""[runtime]
workers = 1
watch = false
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:29402"
tls = [ {{ cert = "{work}/cert.pem", key = "{work}/key.pem" }} ]
[[route]]
respond = {{ status = 200, body = "ok" }}
""")
        fd = subprocess.Popen(["taskset", "-c", proxy_cpu, frontdesk_bin(), "run", "--config", f"{work}/fd.toml"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(fd)
        wait_port(29401)
        wait_port(29402)
        results = {}
        for _ in range(args.rounds):
            for mode in ("-new", "-reuse"):
                for name, proc, port in (("nginx", nginx, 29401), ("frontdesk", fd, 29402)):
                    u0, s0 = cpu(proc.pid)
                    out = subprocess.run(["taskset", "-c", load_cpus, "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
                                          mode, "-tls1_3", "-time", str(args.seconds)], capture_output=True, text=True).stdout
                    u1, s1 = cpu(proc.pid)
                    m = re.findall(r"(\d+) connections in ([\d.]+) real seconds", out)
                    if not m:
                        sys.exit(f"no s_time result for {name} {mode}:\n{out}")
                    conns = int(m[-1][0])
                    results.setdefault((mode, name), []).append((conns / args.seconds, conns / max(u1 + s1 - u0 - s0, 1e-3)))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print("| handshakes | target | per second | per proxy CPU-s | per CPU-s vs nginx |")
        print("|---|---|---:|---:|---:|")
        for mode in ("-new", "-reuse"):
            base = med([r[1] for r in results[(mode, "nginx")]])
            for name in ("nginx", "frontdesk"):
                rs = results[(mode, name)]
                per_s, per_cpu = med([r[0] for r in rs]), med([r[1] for r in rs])
                label = "full (TLS 1.3)" if mode == "-new" else "resumed (TLS 1.3)"
                print(f"| {label} | {name} | {per_s:,.0f} | {per_cpu:,.0f} | {per_cpu / base:.2f} |")
        print(f"\n{args.rounds} rounds x {args.seconds}s, ECDSA P-256, openssl s_time on CPU {load_cpus}, proxy on CPU {proxy_cpu}.")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
