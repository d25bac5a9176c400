#!/usr/bin/env python3
"""TLS handshakes per proxy CPU-second, frontdesk against nginx (TLS 1.3 by default, or 1.2 with
`--tls 1.2`; ECDSA P-256 certificate): full handshakes (`openssl s_time -new`), and full against resumed handshakes
with a client that keeps the session ticket it received and offers it on the next connection
(Python's ssl module; `openssl s_time -reuse` does not resume TLS 1.3 sessions). Each
connection sends one request and reads the answer (which also delivers the ticket). Clients
are single-threaded and pinned away from the proxy; the figure that counts is handshakes per
proxy CPU-second, read from /proc like cpu_split.py. Both servers accept deferred (nginx's
`listen ... deferred`, frontdesk's `defer_accept`).

With `--tls 1.2` the resumed handshake is TLS 1.2's abbreviated one (session ticket, no key
exchange); TLS 1.3 resumption in rustls is psk_dhe_ke only, so it still does an ECDHE.

With `--clients N` the Python client runs as N processes at once (all on the client CPUs), so
handshakes overlap instead of coming one at a time.

Usage: bench/tls_handshakes.py [--seconds 5] [--rounds 3] [--tls 1.3|1.2] [--clients 1]
"""
import argparse, multiprocessing, os, re, shutil, socket, ssl, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import cpu, ecdsa_cert, frontdesk_bin, split_cpus, stop_all, wait_port  # noqa: E402


def python_client(port, seconds, resume, version):
    """Connections per second with full or resumed handshakes; returns (count, resumed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    session, count, resumed = None, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raw = socket.create_connection(("127.0.0.1", port))
        # Without it the TLS 1.2 abbreviated handshake's last client flight waits for a
        # delayed ACK (40 ms per connection, for every server alike).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(raw, server_hostname="bench.test", session=session if resume else None)
        tls.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n")
        while tls.recv(4096):
            pass
        count += 1
        resumed += tls.session_reused
        if resume:
            session = tls.session
        tls.close()
    return count, resumed


def python_clients(n, port, seconds, resume, version):
    """`python_client` in `n` processes at once: the summed (count, resumed)."""
    if n == 1:
        return python_client(port, seconds, resume, version)
    with multiprocessing.Pool(n) as pool:
        results = pool.starmap(python_client, [(port, seconds, resume, version)] * n)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tls", choices=("1.3", "1.2"), default="1.3")
    ap.add_argument("--clients", type=int, default=1)
    args = ap.parse_args()
    version = ssl.TLSVersion.TLSv1_3 if args.tls == "1.3" else ssl.TLSVersion.TLSv1_2
    s_time_flag = "-tls1_3" if args.tls == "1.3" else "-tls1_2"
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="tlsbench-")
    procs = []
    try:
        ecdsa_cert(work)
        os.makedirs(f"{work}/nginx", exist_ok=True)
        open(f"{work}/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off;
  ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
  server {{ listen 127.0.0.1:29401 ssl deferred; ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;
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
defer_accept = true
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
            for mode in ("full", "resumed"):
                for name, proc, port in (("nginx", nginx, 29401), ("frontdesk", fd, 29402)):
                    os.sched_setaffinity(0, {int(c) for c in load_cpus.split(",")})
                    u0, s0 = cpu(proc.pid)
                    conns, reused = python_clients(args.clients, port, args.seconds, mode == "resumed", version)
                    u1, s1 = cpu(proc.pid)
                    if mode == "resumed" and reused < conns * 0.9:
                        sys.exit(f"{name}: only {reused} of {conns} sessions resumed")
                    results.setdefault((mode, name), []).append((conns / args.seconds, conns / max(u1 + s1 - u0 - s0, 1e-3)))
            for mode in ("-new",):
                for name, proc, port in (("nginx", nginx, 29401), ("frontdesk", fd, 29402)):
                    u0, s0 = cpu(proc.pid)
                    out = subprocess.run(["taskset", "-c", load_cpus, "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
                                          mode, s_time_flag, "-time", str(args.seconds)], capture_output=True, text=True).stdout
                    u1, s1 = cpu(proc.pid)
                    m = re.findall(r"(\d+) connections in ([\d.]+) real seconds", out)
                    if not m:
                        sys.exit(f"no s_time result for {name} {mode}:\n{out}")
                    conns = int(m[-1][0])
                    results.setdefault((mode, name), []).append((conns / args.seconds, conns / max(u1 + s1 - u0 - s0, 1e-3)))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print("| client | handshakes | target | per second | per proxy CPU-s | per CPU-s vs nginx | resumed ÷ full (per CPU-s) |")
        print("|---|---|---|---:|---:|---:|---:|")
        labels = {"-new": ("openssl s_time", "full"), "full": ("python ssl", "full"), "resumed": ("python ssl", "resumed (ticket)")}
        for mode in ("-new", "full", "resumed"):
            base = med([r[1] for r in results[(mode, "nginx")]])
            for name in ("nginx", "frontdesk"):
                rs = results[(mode, name)]
                per_s, per_cpu = med([r[0] for r in rs]), med([r[1] for r in rs])
                gain = ""
                if mode == "resumed":
                    gain = f"{per_cpu / med([r[1] for r in results[('full', name)]]):.2f}"
                client, label = labels[mode]
                print(f"| {client} | {label} | {name} | {per_s:,.0f} | {per_cpu:,.0f} | {per_cpu / base:.2f} | {gain} |")
        print(f"\n{args.rounds} rounds x {args.seconds}s, TLS {args.tls}, ECDSA P-256, {args.clients} Python client "
              f"process(es), clients on CPU {load_cpus}, proxy on CPU {proxy_cpu}.")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
