#!/usr/bin/env python3
"""User vs kernel CPU per request, frontdesk against nginx (issue target: user CPU per request
<= 0.6x nginx's). shared/bench/run reports total proxy CPU only; this script reads utime and
stime of each proxy's process tree from /proc around identical wrk runs.

Layout as in shared/bench: proxy pinned to the last CPU, origin (nginx) and wrk on the others.
With `--access-log` both proxies log every request to a file: nginx its default `combined`
format, unbuffered (one write per request, as nginx ships), frontdesk its JSON lines. With
`--upstream-tls` the origins speak TLS (ECDSA P-256) and both proxies keep pooled TLS
connections to them (nginx with `proxy_ssl_session_reuse on`).

With `--post N` wrk sends POST requests with an N-byte body (and `Expect: 100-continue` with
`--expect`, as curl does for bodies over 1 KiB) instead of GETs.

Usage: bench/cpu_split.py [--rounds 3] [--duration 8] [--conns 64] [--paths /,/1k] [--access-log]
                          [--upstream-tls] [--post N [--expect]]
Needs nginx, wrk, taskset; frontdesk built with `cargo build --release`.
"""
import argparse, os, re, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "bench", "conf")
TICK = os.sysconf("SC_CLK_TCK")


def frontdesk_bin():
    """The release binary, honouring CARGO_TARGET_DIR like cargo does."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(target, "release", "frontdesk")


def split_cpus():
    """(proxy CPU, load CPUs): the proxy on the last CPU, everything else on the others."""
    ncpu = os.cpu_count()
    return str(ncpu - 1), ",".join(str(i) for i in range(ncpu - 1))


def ecdsa_cert(work):
    """A self-signed ECDSA P-256 certificate for bench.test: work/cert.pem and work/key.pem."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem", "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)


def render(template, values):
    text = open(template).read()
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = open(f"/proc/{p}/task/{p}/children").read().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def cpu(pid):
    u = s = 0
    for p in tree(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        u += int(f[11])
        s += int(f[12])
    return u / TICK, s / TICK


def stop_all(procs):
    """SIGTERM, then SIGKILL after 5 s."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_port(port, timeout=10):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--paths", default="/,/1k")
    ap.add_argument("--access-log", action="store_true", help="both proxies log to a file")
    ap.add_argument("--upstream-tls", action="store_true", help="TLS between the proxies and the origins")
    ap.add_argument("--post", type=int, default=0, help="POST bodies of this many bytes instead of GETs")
    ap.add_argument("--expect", action="store_true", help="with --post: send Expect: 100-continue")
    args = ap.parse_args()
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="cpusplit-")
    os.chmod(work, 0o755)  # run as root, the origin's nginx workers drop to nobody and must read the files
    procs = []

    def start(cmd, cpus, **kw):
        p = subprocess.Popen(["taskset", "-c", cpus] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    try:
        os.makedirs(f"{work}/origin", exist_ok=True)
        body = "x" * 100
        open(f"{work}/origin/1k", "w").write("y" * 1024)
        ssl, certs = "", ""
        if args.upstream_tls:
            ecdsa_cert(work)
            ssl, certs = " ssl", f"ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;"
        open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:29101{ssl}; listen 127.0.0.1:29102{ssl}; {certs}
    location = / {{ return 200 "{body}"; }}
    location = /1k {{ root {work}/origin; }} }} }}
""")
        start(["nginx", "-p", work, "-c", f"{work}/origin.conf", "-e", "stderr"], load_cpus)
        values = dict(listen="127.0.0.1:29111", listen_h2="127.0.0.1:29112", up1="127.0.0.1:29101",
                      up2="127.0.0.1:29102", workers=1, workdir=f"{work}/nginx")
        os.makedirs(f"{work}/nginx/tmp", exist_ok=True)
        nginx_conf = render(os.path.join(SHARED, "nginx.conf"), values)
        if args.access_log:
            nginx_conf = nginx_conf.replace("access_log off;", f"access_log {work}/nginx-access.log;")
        if args.upstream_tls:
            nginx_conf = nginx_conf.replace("proxy_pass http://origins;", "proxy_pass https://origins; "
                                            "proxy_ssl_server_name on; proxy_ssl_name bench.test; "
                                            "proxy_ssl_session_reuse on;")
        open(f"{work}/nginx.conf", "w").write(nginx_conf)
        nginx = start(["nginx", "-p", f"{work}/nginx", "-c", f"{work}/nginx.conf", "-e", "stderr"], proxy_cpu)
        values.update(listen="127.0.0.1:29121", listen_h2="127.0.0.1:29122")
        frontdesk_conf = render(os.path.join(HERE, "frontdesk.toml"), values)
        if args.access_log:
            frontdesk_conf = frontdesk_conf.replace('access = "off"', f'access = "{work}/frontdesk-access.log"')
        if args.upstream_tls:
            frontdesk_conf = frontdesk_conf.replace('pool = {', 'tls = { sni = "bench.test", verify = false }\npool = {')
        open(f"{work}/frontdesk.toml", "w").write(frontdesk_conf)
        fd = start([frontdesk_bin(), "run", "--config", f"{work}/frontdesk.toml"], proxy_cpu)
        for port in (29101, 29111, 29121):
            wait_port(port)
        targets = [("nginx", nginx.pid, 29111), ("frontdesk", fd.pid, 29121)]
        script = []
        if args.post:
            expect = 'wrk.headers["Expect"] = "100-continue"\n' if args.expect else ""
            open(f"{work}/post.lua", "w").write(f'wrk.method = "POST"\nwrk.body = string.rep("a", {args.post})\n{expect}')
            script = ["-s", f"{work}/post.lua"]
        results = {}
        for rnd in range(args.rounds):
            for path in args.paths.split(","):
                for name, pid, port in targets:
                    url = f"http://127.0.0.1:{port}{path}"
                    subprocess.run(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}", "-d2s", *script, url],
                                   capture_output=True)
                    u0, s0 = cpu(pid)
                    out = subprocess.run(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}",
                                          f"-d{args.duration}s", *script, url], capture_output=True, text=True).stdout
                    u1, s1 = cpu(pid)
                    reqs = int(re.search(r"(\d+) requests in", out).group(1))
                    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
                    if errors:
                        sys.exit(f"{name} {path}: {errors.group(0)}")
                    results.setdefault((path, name), []).append(((u1 - u0) / reqs * 1e6, (s1 - s0) / reqs * 1e6, reqs / args.duration))
        print(f"| path | target | req/s | user µs/req | kernel µs/req | total µs/req | user vs nginx | total vs nginx |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        med = lambda xs: sorted(xs)[len(xs) // 2]
        for path in args.paths.split(","):
            nu = med([r[0] for r in results[(path, "nginx")]])
            nt = med([r[0] + r[1] for r in results[(path, "nginx")]])
            for name, _, _ in targets:
                rs = results[(path, name)]
                u, k, rps = med([r[0] for r in rs]), med([r[1] for r in rs]), med([r[2] for r in rs])
                t = med([r[0] + r[1] for r in rs])  # the median total, not the sum of the two medians
                print(f"| {path} | {name} | {rps:,.0f} | {u:.2f} | {k:.2f} | {t:.2f} | {u / nu:.2f} | {t / nt:.2f} |")
        print(f"\n{args.rounds} rounds x {args.duration}s, {args.conns} connections, medians, access log "
              f"{'on' if args.access_log else 'off'}, upstream {'TLS' if args.upstream_tls else 'plain'}, "
              f"{f'POST {args.post} B' + (' with Expect' if args.expect else '') if args.post else 'GET'}; "
              f"proxy on CPU {proxy_cpu}, wrk and origin on {load_cpus}.")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
