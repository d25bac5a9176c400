#!/usr/bin/env python3
"""What stages that are compiled in but not configured cost per request (performance issue,
target 8): the default build (with the `acceleration` feature: cache, compression, static
files) against a build without it, both proxying the same plain route.

Two measures, both on a route with no stage configured:
- instructions per request under callgrind (deterministic up to scheduling; user space only),
  for HTTP/1.1 (fast path) and h2c (general path), counted between a zero and a dump taken
  around a fixed number of requests;
- requests per proxy CPU-second (user + kernel from /proc) in interleaved wrk rounds, proxy
  pinned to the last CPU as in shared/bench.

Usage:
  cargo build --release
  cargo build --release --no-default-features --target-dir /tmp/lean-target
  bench/stage_cost.py --full target/release/frontdesk --lean /tmp/lean-target/release/frontdesk
Needs nginx, wrk, h2load, valgrind (callgrind_control), taskset.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import HERE, cpu, render, split_cpus, stop_all, wait_port  # noqa: E402
from instructions import count  # noqa: E402


def callgrind_ir(binary, config, work, tag, load_cmds, warm_cmd):
    """Instructions executed per request for each load command (fixed request counts)."""
    out = f"{work}/callgrind.{tag}.%p"
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "run",
                          "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(29131, timeout=60)
        subprocess.run(warm_cmd, capture_output=True)
        results = []
        for name, cmd, n in load_cmds:
            per_request, _ = count(p.pid, f"{work}/callgrind.{tag}.*", cmd, n)
            results.append((name, per_request))
        return results
    finally:
        stop_all([p])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", required=True, help="frontdesk built with default features")
    ap.add_argument("--lean", required=True, help="frontdesk built with --no-default-features")
    ap.add_argument("--requests", type=int, default=20000, help="requests per callgrind count")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--conns", type=int, default=64)
    args = ap.parse_args()
    proxy_cpu, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="stagecost-")
    procs = []
    try:
        open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:29101; listen 127.0.0.1:29102;
    location = / {{ return 200 "{'x' * 100}"; }} }} }}
""")
        procs.append(subprocess.Popen(["taskset", "-c", load_cpus, "nginx", "-p", work, "-c", f"{work}/origin.conf",
                                       "-e", "stderr"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(29101)
        values = dict(listen="127.0.0.1:29131", listen_h2="127.0.0.1:29132", up1="127.0.0.1:29101",
                      up2="127.0.0.1:29102", workers=1)
        config = f"{work}/frontdesk.toml"
        open(config, "w").write(render(os.path.join(HERE, "frontdesk.toml"), values))
        n = args.requests
        h1 = ["h2load", "--h1", "-n", str(n), "-c", "8", "http://127.0.0.1:29131/"]
        h2 = ["h2load", "-n", str(n), "-c", "4", "-m", "10", "http://127.0.0.1:29132/"]
        warm = ["h2load", "--h1", "-n", "2000", "-c", "8", "http://127.0.0.1:29131/"]
        ir = {}
        for tag, binary in (("full", args.full), ("lean", args.lean)):
            ir[tag] = dict(callgrind_ir(binary, config, work, tag, [("h1", h1, n), ("h2c", h2, n)], warm))

        # Wall-clock: both builds side by side, rounds interleaved.
        per_cpu = {"full": [], "lean": []}
        for rnd in range(args.rounds):
            for tag, binary in (("full", args.full), ("lean", args.lean)):
                p = subprocess.Popen(["taskset", "-c", proxy_cpu, binary, "run", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(29131)
                    url = "http://127.0.0.1:29131/"
                    wrk = ["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{args.conns}"]
                    subprocess.run(wrk + ["-d2s", url], capture_output=True)
                    u0, s0 = cpu(p.pid)
                    out = subprocess.run(wrk + [f"-d{args.duration}s", url], capture_output=True, text=True).stdout
                    u1, s1 = cpu(p.pid)
                    reqs = int(re.search(r"(\d+) requests in", out).group(1))
                    per_cpu[tag].append(reqs / ((u1 - u0) + (s1 - s0)))
                finally:
                    stop_all([p])
                time.sleep(0.5)

        print("| measure | with `acceleration` | without | with ÷ without |")
        print("|---|---:|---:|---:|")
        for proto in ("h1", "h2c"):
            f, l = ir["full"][proto], ir["lean"][proto]
            print(f"| instructions per request, {proto} (callgrind) | {f:,.0f} | {l:,.0f} | {f / l:.3f} |")
        ratios = [f / l for f, l in zip(per_cpu["full"], per_cpu["lean"])]
        med = lambda xs: sorted(xs)[len(xs) // 2]
        print(f"| requests per proxy CPU-s, h1 `/` c={args.conns} (median of {args.rounds}) | "
              f"{med(per_cpu['full']):,.0f} | {med(per_cpu['lean']):,.0f} | {med(ratios):.3f} |")
        print(f"\nper-round ratios (requests per CPU-s): {', '.join(f'{r:.3f}' for r in ratios)}")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
