#!/usr/bin/env python3
"""User-space instructions per proxied request under callgrind: a count that does not move with
the machine's noise, for changes too small for requests per CPU-second to show.

frontdesk runs under `valgrind --tool=callgrind` with `bench/frontdesk.toml` (round robin over
two nginx origins serving `/` as 100 bytes and `/1k` as 1,024, both from memory), h2load sends
a warm-up, the counters are zeroed, a fixed number of requests is sent and the counters are
dumped: instructions in the dump ÷ requests. With `--top N` the N functions with the most
instructions of their own (inlined code counted where it was inlined into) are listed too; a
build with line tables makes that list readable:

  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=/tmp/prof cargo build --release
  bench/instructions.py --binary /tmp/prof/release/frontdesk --top 25

Usage: bench/instructions.py [--binary B] [--path /] [--requests 20000] [--conns 16] [--h2c]
                             [--top 0]
Needs nginx, h2load, valgrind (callgrind_control, callgrind_annotate).
"""
import argparse, collections, glob, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_split import HERE, frontdesk_bin, render, split_cpus, stop_all, wait_port  # noqa: E402

ORIGINS = (29701, 29702)
LISTEN, LISTEN_H2 = 29711, 29712


def count(pid, dump_glob, load_cmd, requests):
    """Zeroes the counters of the callgrind process `pid`, runs `load_cmd` (h2load sending
    `requests` requests), dumps the counters: (instructions per request, the new dump files)."""
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
    done = subprocess.run(load_cmd, capture_output=True, text=True).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", done)
    if not m or int(m.group(1)) != requests:
        sys.exit(f"the load did not complete: {done[-400:]}")
    before = set(glob.glob(dump_glob))
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    dumps = sorted(set(glob.glob(dump_glob)) - before, key=os.path.getmtime)
    if not dumps:
        sys.exit("callgrind wrote no dump")
    total = 0
    for dump in dumps:
        total += next(int(line.split()[1]) for line in open(dump) if line.startswith(("summary:", "totals:")))
    return total / requests, dumps


def own_costs(dump, requests, top):
    """The `top` functions by instructions of their own, per request."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", dump],
                         capture_output=True, text=True, check=True).stdout
    costs, total = collections.Counter(), None
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?):(.*)", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        name = re.sub(r" \[.*", "", m.group(3))
        if total is None or n >= total:
            total = n  # PROGRAM TOTALS and the frames that include everything
            continue
        costs[name] += n
    return [(n / requests, name) for name, n in costs.most_common(top)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=frontdesk_bin())
    ap.add_argument("--path", default="/")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--h2c", action="store_true", help="h2c with 10 streams per connection instead of HTTP/1.1")
    ap.add_argument("--top", type=int, default=0)
    args = ap.parse_args()
    _, load_cpus = split_cpus()
    work = tempfile.mkdtemp(prefix="instructions-")
    procs = []
    try:
        listen = " ".join(f"listen 127.0.0.1:{p};" for p in ORIGINS)
        open(f"{work}/origin.conf", "w").write(f"""
worker_processes 1; daemon off; pid {work}/origin.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ {listen}
    location = / {{ return 200 "{'x' * 100}"; }}
    location = /1k {{ return 200 "{'y' * 1024}"; }} }} }}
""")
        procs.append(subprocess.Popen(["taskset", "-c", load_cpus, "nginx", "-p", work, "-c", f"{work}/origin.conf",
                                       "-e", "stderr"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(ORIGINS[0])
        values = dict(listen=f"127.0.0.1:{LISTEN}", listen_h2=f"127.0.0.1:{LISTEN_H2}",
                      up1=f"127.0.0.1:{ORIGINS[0]}", up2=f"127.0.0.1:{ORIGINS[1]}", workers=1)
        config = f"{work}/frontdesk.toml"
        open(config, "w").write(render(os.path.join(HERE, "frontdesk.toml"), values))
        proxy = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/callgrind.%p",
                                  args.binary, "run", "--config", config],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_port(LISTEN, timeout=60)
        if args.h2c:
            load = ["h2load", "-c", str(args.conns), "-m", "10", f"http://127.0.0.1:{LISTEN_H2}{args.path}"]
        else:
            load = ["h2load", "--h1", "-c", str(args.conns), f"http://127.0.0.1:{LISTEN}{args.path}"]
        subprocess.run(load[:1] + ["-n", "2000"] + load[1:], capture_output=True, check=True)
        per_request, dumps = count(proxy.pid, f"{work}/callgrind.*", load[:1] + ["-n", str(args.requests)] + load[1:],
                                   args.requests)
        proto = "h2c" if args.h2c else "HTTP/1.1"
        print(f"{per_request:,.0f} instructions per request "
              f"({args.requests:,} {proto} requests of {args.path}, {args.conns} connections)")
        for own, name in own_costs(dumps[0], args.requests, args.top):
            print(f"{own:8,.0f}  {name[:140]}")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
