#!/usr/bin/env bash
# Run the HTTP cache conformance suite (github.com/http-tests/cache-tests, cache-tests.fyi)
# against frontdesk acting as a shared (reverse-proxy) cache. Loopback only.
#
# usage: run.sh SUITE_DIR FRONTDESK_BIN [OUT_DIR]
#   SUITE_DIR      a checkout of http-tests/cache-tests (npm deps are installed if missing)
#   FRONTDESK_BIN  the frontdesk binary to test
#   OUT_DIR        where config, logs and results.json go (default: ./fd-conformance-out)
# env:
#   FD_PORT (18000), ORIGIN_PORT (18001)  loopback ports for frontdesk and the suite's origin
#   TEST_ID       run only this test id and print its request/response dump instead of JSON
#   CACHE_EXTRA   extra lines for the [cache.main] table, e.g. 'store_set_cookie = true'
#
# The suite's CLI runner is its non-browser mode, i.e. it tests a shared cache
# (browser_only tests are skipped; shared/CDN tests such as s-maxage, private, Authorization run).
# Output: OUT_DIR/results.json (same format as the suite's results/*.json) and a tally on stderr.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
SUITE=$(cd "$1" && pwd)
FD_BIN=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
OUT=${3:-./fd-conformance-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FD_PORT=${FD_PORT:-18000}
ORIGIN_PORT=${ORIGIN_PORT:-18001}
TEST_ID=${TEST_ID:-}

[[ -x "$FD_BIN" ]] || { echo "not executable: $FD_BIN" >&2; exit 2; }
[[ -f "$SUITE/test-engine/cli.mjs" ]] || { echo "not a cache-tests checkout: $SUITE" >&2; exit 2; }
command -v node >/dev/null || { echo "node is required" >&2; exit 2; }

for p in "$FD_PORT" "$ORIGIN_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port 127.0.0.1:$p is already in use" >&2; exit 2
  fi
done

if [[ ! -d "$SUITE/node_modules/undici" ]]; then
  (cd "$SUITE" && npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2)
fi

# The suite's server calls listen(port) on all interfaces; this preload pins it to 127.0.0.1.
cat > "$OUT/loopback.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (/^\d+$/.test(String(args[0])) && typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
  return listen.apply(this, args)
}
EOF

cat > "$OUT/frontdesk.toml" <<EOF
[log]
access = "off"

[[listener]]
listen = "127.0.0.1:${FD_PORT}"

[cache.main]
memory = "64MiB"
${CACHE_EXTRA:-}

[upstream.origin]
servers = ["127.0.0.1:${ORIGIN_PORT}"]
# The suite's origin deliberately answers 5xx/599 and drops connections; with the default
# passive outlier detection its only backend gets ejected and later tests see 503s.
passive = { consecutive_failures = 0 }

[[route]]
upstream = "origin"
cache = "main"
EOF
"$FD_BIN" check --config "$OUT/frontdesk.toml" >&2

ORIGIN_PID=""
FD_PID=""
cleanup() {
  [[ -n "$FD_PID" ]] && kill "$FD_PID" 2>/dev/null && wait "$FD_PID" 2>/dev/null
  [[ -n "$ORIGIN_PID" ]] && kill "$ORIGIN_PID" 2>/dev/null && wait "$ORIGIN_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT INT TERM

# Origin: the suite's test server (what `npm run server --port=N` runs), pinned to loopback.
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port="$ORIGIN_PORT" \
  npm_config_pidfile="$OUT/origin.pid" \
  node --import "$OUT/loopback.mjs" test-engine/server/server.mjs) > "$OUT/origin.log" 2>&1 &
ORIGIN_PID=$!

"$FD_BIN" run --config "$OUT/frontdesk.toml" > "$OUT/frontdesk.log" 2>&1 &
FD_PID=$!

wait_for() { # file pattern pid what
  for _ in $(seq 1 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "$4 exited:" >&2; cat "$1" >&2; exit 1; }
    sleep 0.1
  done
  echo "$4 did not become ready:" >&2; cat "$1" >&2; exit 1
}
wait_for "$OUT/origin.log" "Listening on" "$ORIGIN_PID" "origin server"
wait_for "$OUT/frontdesk.log" "frontdesk ready" "$FD_PID" "frontdesk"

# Client: what `npm run --silent cli --base=... [--id=...]` runs.
cd "$SUITE"
if [[ -n "$TEST_ID" ]]; then
  npm_config_base="http://127.0.0.1:${FD_PORT}" npm_config_id="$TEST_ID" \
    node --no-warnings test-engine/cli.mjs
  exit 0
fi
npm_config_base="http://127.0.0.1:${FD_PORT}" npm_config_id="" npm_package_config_id="" \
  node --no-warnings test-engine/cli.mjs > "$OUT/results.json"
echo "results: $OUT/results.json" >&2

# Tally with the suite's own classification (dependencies honoured, as on cache-tests.fyi).
node --input-type=module - "$SUITE" "$OUT/results.json" >&2 <<'EOF'
import fs from 'node:fs'
import { pathToFileURL } from 'node:url'
const [suite, file] = process.argv.slice(2)
const imp = p => import(pathToFileURL(`${suite}/${p}`).href)
const tests = (await imp('tests/index.mjs')).default
const { determineTestResult, resultTypes } = await imp('test-engine/lib/results.mjs')
const names = new Map(Object.entries(resultTypes).map(([k, v]) => [v, k]))
const res = JSON.parse(fs.readFileSync(file))
const count = {}
const bad = []
for (const s of tests) {
  for (const t of s.tests) {
    if (t.browser_only) continue
    const k = names.get(determineTestResult(tests, t.id, res))
    count[k] = (count[k] || 0) + 1
    if (['fail', 'setup_fail', 'harness_fail', 'retry'].includes(k)) bad.push(`  ${k} ${t.kind || 'required'} ${t.id}: ${JSON.stringify(res[t.id])}`)
  }
}
console.log(Object.entries(count).map(([k, v]) => `${k}=${v}`).join(' '))
if (bad.length) console.log(bad.join('\n'))
EOF
