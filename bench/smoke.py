#!/usr/bin/env python3
"""Gross-regression check for the test suite: requests per proxy CPU-second of a release build
proxying small responses from nginx, compared with the figure recorded in smoke-baseline.txt.
Fails only below half of it; the real proof is the benchmark in docs/performance.md.

Usage: bench/smoke.py   (needs nginx, wrk; frontdesk built with cargo build --release)
"""
import os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import HERE, cpu, frontdesk_bin, render, stop_all, wait_port  # noqa: E402


def main():
    baseline = float(open(os.path.join(HERE, "smoke-baseline.txt")).read().split()[0])
    work = tempfile.mkdtemp(prefix="smoke-")
    procs = []
    try:
        open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000000;
  server {{ listen 127.0.0.1:29301; listen 127.0.0.1:29302; location / {{ return 200 "smoke"; }} }} }}
""")
        procs.append(subprocess.Popen(["nginx", "-p", work, "-c", f"{work}/origin.conf", "-e", "stderr"]))
        values = dict(listen="127.0.0.1:29311", listen_h2="127.0.0.1:29312", up1="127.0.0.1:29301",
                      up2="127.0.0.1:29302", workers=1)
        open(f"{work}/fd.toml", "w").write(render(os.path.join(HERE, "frontdesk.toml"), values))
        fd = subprocess.Popen([frontdesk_bin(), "run", "--config", f"{work}/fd.toml"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(fd)
        wait_port(29301)
        wait_port(29311)
        url = "http://127.0.0.1:29311/"
        subprocess.run(["wrk", "-t1", "-c32", "-d1s", url], capture_output=True)
        u0, s0 = cpu(fd.pid)
        out = subprocess.run(["wrk", "-t1", "-c32", "-d3s", url], capture_output=True, text=True).stdout
        u1, s1 = cpu(fd.pid)
        reqs = int(re.search(r"(\d+) requests in", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        per_cpu_s = reqs / max(u1 + s1 - u0 - s0, 1e-3)
        print(f"smoke: {reqs} requests, {per_cpu_s:,.0f} req per proxy CPU-s (baseline {baseline:,.0f}, floor {baseline / 2:,.0f})")
        if errors:
            sys.exit(f"smoke: {errors.group(1)} non-2xx answers")
        if per_cpu_s < baseline / 2:
            sys.exit("smoke: requests per CPU-second fell below half of the recorded baseline")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
