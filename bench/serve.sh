#!/usr/bin/env bash
# `idlink serve` under load: a configuration of 10,000 connections over 1,000 connectors, the
# connectors page and a connector page fetched by 50 concurrent clients (keep-alive, loopback
# only, a bounded number of requests), p99 latency per page and the server's peak RSS.
# Goals (issue 11): p99 <= 50 ms for both pages, RSS <= 200 MiB. Exits 1 when missed.
#
#   bench/serve.sh [CONNECTORS] [CONNECTIONS_PER_CONNECTOR] [REQUESTS_PER_CLIENT]
set -euo pipefail
cd "$(dirname "$0")/.."
connectors=${1:-1000}
per=${2:-10}
requests=${3:-200}
clients=${CLIENTS:-50}
goal_ms=50
goal_rss_kib=$((200 * 1024))
out=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

# One invocation, so the packages are built once with the features both need.
cargo build --release -q -p idlink-cli -p idlink-server --bins --examples
target=${CARGO_TARGET_DIR:-target}/release
bin=$target/idlink
load=$target/examples/load

python3 - "$out/conf" "$connectors" "$per" <<'PY'
import json, os, sys
out, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(os.path.join(out, "data"))
ns = 'xmlns="urn:schemas-usercube-com:configuration"'
settings = {"SourcesRootPaths": ["data"], "Connections": {}}
parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<ConfigurationFile {ns}>',
         '  <Agent Identifier="Local" DisplayName_L1="Local" />']
for i in range(n):
    c = f"C{i:04d}"
    parts.append(f'  <Connector Identifier="{c}" DisplayName_L1="Connector {i}" Agent="Local" />')
    for j in range(per):
        k = f"{c}Conn{j:02d}"
        parts.append(f'  <Connection Identifier="{k}" DisplayName_L1="Connection {i}.{j}" Connector="{c}" Package="Usercube.CSV@0000001" />')
        settings["Connections"][k] = {"Path": f"data/{k}.csv"}
parts.append("</ConfigurationFile>\n")
open(os.path.join(out, "all.xml"), "w").write("\n".join(parts))
json.dump(settings, open(os.path.join(out, "appsettings.agent.json"), "w"))
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IDLINK_ADMIN_PASSWORD=bench-password-long "$bin" serve --config "$out/conf" --work "$out/work" \
  --listen "127.0.0.1:$port" >"$out/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"configuration":"running"' \
  || { echo "the server did not start with the configuration:"; cat "$out/serve.log"; exit 1; }
count=$(curl -s -c "$out/jar" "http://127.0.0.1:$port/login" | grep -o 'name="csrf" value="[^"]*"' | sed 's/.*value="//;s/"$//')
curl -s -b "$out/jar" -c "$out/jar" -o /dev/null -d "csrf=$count&name=admin&password=bench-password-long" "http://127.0.0.1:$port/login"
cookie=$(awk '$6=="idlink_session"{print $7}' "$out/jar")
[ -n "$cookie" ] || { echo "cannot sign in"; exit 1; }
rows=$(curl -s -b "$out/jar" "http://127.0.0.1:$port/" | grep -c '<tr><td><a href="/connectors/' || true)
echo "configuration: $connectors connectors, $((connectors * per)) connections; connectors page lists $rows"

"$load" "127.0.0.1:$port" "$cookie" "$clients" "$requests" / /connectors/C0500 | tee "$out/load.txt"
rss=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
echo "server peak RSS: $((rss / 1024)) MiB (goal <= $((goal_rss_kib / 1024)) MiB)"
worst=$(awk '/^worst p99/{print $3}' "$out/load.txt")
fail=0
awk -v w="$worst" -v g="$goal_ms" 'BEGIN{exit !(w <= g)}' || { echo "p99 $worst ms is above $goal_ms ms"; fail=1; }
[ "$rss" -le "$goal_rss_kib" ] || { echo "peak RSS above the goal"; fail=1; }
[ "$rows" -eq "$connectors" ] || { echo "the connectors page lists $rows connectors, not $connectors"; fail=1; }
[ $fail -eq 0 ] && echo "goals met: p99 <= $goal_ms ms on both pages, RSS <= 200 MiB"
exit $fail
