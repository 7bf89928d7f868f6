#!/usr/bin/env bash
# Remote agents under load (issue 14): one `idlink serve` (release, SQLite store) and AGENTS
# `idlink agent` processes on loopback (default 50, each with its own key, work folder and
# one-time enrolment token), each agent running one connector of PER CSV connections (default
# 20: 1,000 connections, each a 20-row, 5-column file at an absolute path). Every connection is
# exported once through the agent work queue (POST /api/agent-tasks), in waves of one task per
# agent (PER waves of AGENTS tasks): an agent never has a task waiting behind another, so what
# is measured is what the server adds, not agent-side queueing. MODE=burst queues all tasks at
# once instead (agents then run AGENT_CONCURRENCY tasks at a time, 20 by default).
#
# Per task, the server's added latency (serverMs, recorded by the server) = its dispatch time
# (from the later of the task's queueing and the agent's long poll, to the claim: the wake-up
# and the claim) + the time it spent on the task's requests (receiving its table:
# decompression, hash, write, fsync; the result: the commit of tables and cookie, the store). Also printed, for information: the end-to-end added latency, (finishedMs -
# createdMs) - the export's own duration on the agent, which on this one 2-core machine also
# holds the agents' own work (hashing, gzip, HTTP) and their CPU contention with each other
# and the server. Prints p50/p95/p99/max and the total wall time.
#
# Checks: every task Done with attempts == 1; each connection's table committed once on the
# server (<work>/ExportOutput/<conn>.csv with its 20 rows; one audit entry "export … (task N)"
# per task).
# Goals: p99 of the server's added latency <= 50 ms; the server's peak RSS (VmHWM) <= 300 MiB. Exits 1 when a
# goal or a check is missed. Best on an idle machine: the load average is printed.
# On ext4 without a journal, creating a file scans past every inode freed nearby in the last
# minutes (the kernel's `recently_deleted`): right after thousands of files were deleted under
# the same folder (an earlier run's clean-up, a test suite's temporary files), the server's
# four file creations per task queue on that scan and the p99 grows several times (measured
# here: 13-15 ms on a rested disk, 73-111 ms right after). The file system is printed, with
# this warning when it applies.
#
#   bench/agents.sh [AGENTS [PER]]
#   MODE=burst bench/agents.sh
#   WAVE=1 bench/agents.sh          # waves of WAVE tasks (default AGENTS): 1 = one task at a time
#   KEEP=1 bench/agents.sh          # keeps the temporary folder (logs) and prints its path
#   IDLINK_BIN=path/to/idlink bench/agents.sh   # that binary, no build
#   PERF=/tmp/server.perf bench/agents.sh       # perf record -g of the server meanwhile
#   BENCH_TMP=/dev/shm bench/agents.sh          # work folders there (tmpfs: what the server
#                                               # adds without the disk's fsyncs and inodes)
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-50}
per=${2:-20}
rows=20
mode=${MODE:-waves}
if [ "$mode" = burst ]; then concurrency=${AGENT_CONCURRENCY:-20}; else concurrency=${AGENT_CONCURRENCY:-4}; fi
goal_ms=50
goal_rss_kib=$((300 * 1024))
password=bench-password-long

out=$(mktemp -d "${BENCH_TMP:-/tmp}/idlink-bench-agents.XXXXXX")
server=
agent_pids=()
cleanup() {
    for p in "${agent_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$server" ] && kill "$server" 2>/dev/null
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT

command -v curl >/dev/null || { echo "curl is missing: apt-get install -y curl" >&2; exit 1; }
if [ -n "${IDLINK_BIN:-}" ]; then
    bin=$(realpath "$IDLINK_BIN")
else
    cargo build --release -q -p idlink-cli
    bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/idlink")
fi

python3 - "$out" "$agents" "$per" "$rows" <<'PY'
import json, os, sys
out, n, per, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conf, data = os.path.join(out, "conf"), os.path.join(out, "data")
os.makedirs(conf); os.makedirs(data)
ns = 'xmlns="urn:schemas-usercube-com:configuration"'
head = f'<?xml version="1.0" encoding="utf-8"?>\n<ConfigurationFile {ns}>'
agents = [head, '  <Agent Identifier="Local" DisplayName_L1="Local" />']
connectors = [head]
settings = {"SourcesRootPaths": [data], "Connections": {}}
for a in range(n):
    agent, k = f"A{a:02d}", f"K{a:02d}"
    agents.append(f'  <Agent Identifier="{agent}" DisplayName_L1="Agent {a}" />')
    connectors.append(f'  <Connector Identifier="{k}" DisplayName_L1="Connector {a}" Agent="{agent}" />')
    for j in range(per):
        c = f"{k}C{j:02d}"
        connectors.append(f'  <Connection Identifier="{c}" DisplayName_L1="Connection {a}.{j}" Connector="{k}" Package="Usercube.CSV@0000001" />')
        path = os.path.join(data, f"{c}.csv")
        with open(path, "w", newline="") as f:
            f.write("Id,FirstName,LastName,Mail,Department\n")
            for r in range(rows):
                f.write(f"{c}-{r:03d},First{r},Last{a}{j},first{r}.last{a}{j}@example.org,Dept{r % 7}\n")
        settings["Connections"][c] = {"Path": path}
for parts, name in ((agents, "agents.xml"), (connectors, "connectors.xml")):
    parts.append("</ConfigurationFile>\n")
    open(os.path.join(conf, name), "w").write("\n".join(parts))
json.dump(settings, open(os.path.join(conf, "appsettings.agent.json"), "w"), indent=1)
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
IDLINK_ADMIN_PASSWORD=$password "$bin" serve --config "$out/conf" --work "$out/work" \
    --listen "127.0.0.1:$port" >"$out/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "$url/healthz" | grep -q '"configuration":"running"' \
    || { echo "the server did not start with the configuration:"; cat "$out/serve.log"; exit 1; }

# Sign in (login form and its CSRF token), then an API token for the rest.
csrf=$(curl -s -c "$out/jar" "$url/login" | grep -o 'name="csrf" value="[^"]*"' | head -n 1 | sed 's/.*value="//;s/"$//')
curl -s -b "$out/jar" -c "$out/jar" -o /dev/null -d "csrf=$csrf&name=admin&password=$password" "$url/login"
csrf=$(curl -s -b "$out/jar" "$url/" | grep -o 'name="csrf" value="[^"]*"' | head -n 1 | sed 's/.*value="//;s/"$//')
token=$(curl -s -b "$out/jar" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
    -d '{"name":"bench-agents"}' "$url/api/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])') \
    || { echo "cannot sign in and create an API token"; exit 1; }

# The agents: one-time enrolment token each, own key and work folder.
mkdir -p "$out/agents"
for a in $(seq 0 $((agents - 1))); do
    id=$(printf 'A%02d' "$a")
    t=$(curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"agent\":\"$id\"}" "$url/api/agent-tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    IDLINK_ENROL_TOKEN=$t "$bin" agent --server "$url" --agent "$id" --key "$out/agents/$id.key" \
        --work "$out/agents/$id" --insecure-loopback --concurrency "$concurrency" \
        >"$out/agents/$id.log" 2>&1 &
    agent_pids+=($!)
done

# Ready when every agent has fetched and loaded its configuration and waits for work.
for _ in $(seq 1 600); do
    ready=$(grep -l "waiting for work" "$out"/agents/*.log 2>/dev/null | wc -l)
    [ "$ready" -ge "$agents" ] && break
    sleep 0.1
done
[ "$ready" -ge "$agents" ] || { echo "only $ready of $agents agents are waiting for work after 60 s (logs in $out/agents)"; tail -n 3 "$out"/agents/*.log | head -40; exit 1; }
# Start from a quiet disk: what earlier runs left to write back would weigh on this one's fsyncs.
sync
sleep 2
load=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$mode" = burst ] && shape="all queued at once, $concurrency tasks at a time per agent" || shape="waves of ${WAVE:-$agents} tasks, one per agent"
echo "configuration: $agents agents x $per CSV connections ($((agents * per)) export tasks, $rows rows each); $shape; load average before: $load"
# The file system of the work folders, and whether it keeps a journal (see the header).
fs=$(stat -f -c %T "$out" 2>/dev/null || echo unknown)
dev=$(basename "$(df --output=source "$out" 2>/dev/null | tail -n 1)")
if [ -d "/proc/fs/ext4/$dev" ] && ! ls /proc/fs/jbd2/ 2>/dev/null | grep -q "^$dev-"; then
    echo "file system: ext4 without a journal ($dev): file creation is slow for minutes after many deletions under the same folder (see the header of $0)"
else
    echo "file system: $fs ($dev)"
fi

# CPU seconds (user + system) of the server and of all agents, for the measurement alone.
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
perf_pid=
if [ -n "${PERF:-}" ]; then  # PERF=FILE: perf record -g of the server during the measurement
    perf record -g -o "$PERF" -p "$server" >"$out/perf.log" 2>&1 &
    perf_pid=$!
    sleep 1
fi
server_cpu0=$(cpu "$server"); agents_cpu0=$(cpu "${agent_pids[@]}")
set +e
python3 - "$url" "$token" "$out" "$agents" "$per" "$rows" "$mode" "$goal_ms" "${WAVE:-$agents}" <<'PY'
import http.client, json, os, sys, time
url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
n, per, rows, mode, goal_ms = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], float(sys.argv[8])
wave = max(1, min(n, int(sys.argv[9])))
host = url.split("//", 1)[1]
conn = None

def api(method, path, body=None):
    global conn
    for attempt in range(5):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, timeout=60)
            headers = {"Authorization": f"Bearer {token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            text = r.read()
            return r.status, (json.loads(text) if text else None)
        except (http.client.HTTPException, OSError):
            conn = None
            time.sleep(0.1)
    raise SystemExit(f"the server does not answer {method} {path}")

def fail(msg):
    print(msg)
    sys.exit(1)

# Every agent approved and waiting for work.
deadline = time.time() + 120
while True:
    _, a = api("GET", "/api/agents")
    approved = sum(1 for x in a["agents"] if x["state"] == "Approved")
    if approved == n:
        break
    if time.time() > deadline:
        fail(f"only {approved} of {n} agents were approved after 120 s (logs in {out}/agents)")
    time.sleep(0.2)
time.sleep(1.0)  # their first long polls are waiting

def queue(c):
    s, t = api("POST", "/api/agent-tasks", {"connection": c, "kind": "export"})
    if s != 202:
        fail(f"queueing {c}: {s} {t}")
    return t["id"]

def wait_all(ids, secs=300):
    pending, got = set(ids), {}
    deadline = time.time() + secs
    while pending:
        _, ts = api("GET", f"/api/agent-tasks?limit={max(len(ids), 50) + 50}")
        for t in ts:
            if t["id"] in pending and t["state"] in ("Done", "Errored"):
                pending.discard(t["id"])
                got[t["id"]] = t
        if pending:
            if time.time() > deadline:
                fail(f"{len(pending)} tasks did not end in {secs} s, e.g. {sorted(pending)[:5]}")
            # As a page refreshing itself would: often enough, without loading the server.
            time.sleep(0.2)
    return got

conns = {}  # task id -> connection
tasks = {}
start = time.time()
if mode == "burst":
    for j in range(per):
        for a in range(n):
            c = f"K{a:02d}C{j:02d}"
            conns[queue(c)] = c
    tasks = wait_all(list(conns), 900)
else:
    # Waves of `wave` tasks, each of another agent (one task per agent when wave == n).
    order = [f"K{a:02d}C{j:02d}" for j in range(per) for a in range(n)]
    for k in range(0, len(order), wave):
        ids = []
        for c in order[k:k + wave]:
            i = queue(c)
            conns[i] = c
            ids.append(i)
        tasks.update(wait_all(ids))
wall = time.time() - start

problems = []
added, own, total_ms, server_added, wake = [], [], [], [], []
for i, t in sorted(tasks.items()):
    if t["state"] != "Done":
        problems.append(f"task {i} ({conns[i]}) is {t['state']}: {t.get('error')}")
        continue
    if t["attempts"] != 1:
        problems.append(f"task {i} ({conns[i]}) took {t['attempts']} attempts")
    r = t["result"] or {}
    dur = float(r.get("duration", 0)) * 1000.0
    span = t["finishedMs"] - t["createdMs"]
    added.append(span - dur); own.append(dur); total_ms.append(span)
    wake.append(t["claimedMs"] - t["createdMs"]); server_added.append(t["serverMs"])
    got_rows = sum(x["rows"] for x in r.get("tables", []))
    if got_rows != rows:
        problems.append(f"task {i} ({conns[i]}): the report says {got_rows} rows, not {rows}")

# Each connection's table committed on the server, with its rows.
for i, c in conns.items():
    p = os.path.join(out, "work", "ExportOutput", f"{c}.csv")
    try:
        with open(p, newline="") as f:
            lines = sum(1 for line in f if line.strip())
        if lines - 1 != rows:
            problems.append(f"{p} has {lines - 1} rows, not {rows}")
    except OSError as e:
        problems.append(f"{c}: no committed table ({e})")
# One audit entry "export" per task.
_, audit = api("GET", "/api/audit?limit=10000")
seen = {}
for e in audit:
    if e["action"] == "export" and "(task " in (e["detail"] or ""):
        i = int(e["detail"].rsplit("(task ", 1)[1].rstrip(")"))
        seen[i] = seen.get(i, 0) + 1
for i, c in conns.items():
    if seen.get(i, 0) != 1:
        problems.append(f"task {i} ({c}) has {seen.get(i, 0)} audit entries 'export', not 1")
extra = set(seen) - set(conns)
if extra:
    problems.append(f"audit entries 'export' for tasks not queued here: {sorted(extra)[:5]}")

def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]

print(f"tasks: {len(conns)} queued, {sum(1 for t in tasks.values() if t['state'] == 'Done')} Done; total wall time {wall:.2f} s ({len(conns) / wall:.1f} tasks/s)")
for name, xs in (("server's added latency", server_added),
                 ("queued -> claimed", wake),
                 ("end-to-end added", added),
                 ("export on the agent", own),
                 ("queued to finished", total_ms)):
    print(f"{name:<24} ms: p50 {pct(xs, 50):7.1f}  p95 {pct(xs, 95):7.1f}  p99 {pct(xs, 99):7.1f}  max {max(xs) if xs else float('nan'):7.1f}")
if mode != "burst" and added and len(added) // wave <= 20:
    w = [added[k:k + wave] for k in range(0, len(added), wave)]
    print("added latency per wave, p50/max ms: " + "  ".join(f"{pct(x, 50):.0f}/{max(x):.0f}" for x in w if x))
with open(os.path.join(out, "added.txt"), "w") as f:
    f.write(f"{pct(server_added, 99):.3f}\n")
for p in problems[:20]:
    print("check failed: " + p)
if len(problems) > 20:
    print(f"… and {len(problems) - 20} more")
sys.exit(1 if problems else 0)
PY
checks=$?
set -e
server_cpu=$(($(cpu "$server") - server_cpu0)); agents_cpu=$(($(cpu "${agent_pids[@]}") - agents_cpu0))
awk -v s="$server_cpu" -v a="$agents_cpu" -v hz="$hz" -v n="$((agents * per))" 'BEGIN{printf "CPU during the measurement: server %.2f s (%.1f ms per task), agents %.2f s (%.1f ms per task)\n", s/hz, 1000*s/hz/n, a/hz, 1000*a/hz/n}'
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi

rss=$(awk '/VmHWM/{print $2}' "/proc/$server/status")
p99=$(cat "$out/added.txt" 2>/dev/null || echo 999999)
echo "server peak RSS: $((rss / 1024)) MiB (goal <= $((goal_rss_kib / 1024)) MiB); load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fail=$checks
awk -v w="$p99" -v g="$goal_ms" 'BEGIN{exit !(w <= g)}' || { echo "p99 of the server's added latency, $p99 ms, is above $goal_ms ms"; fail=1; }
[ "$rss" -le "$goal_rss_kib" ] || { echo "the server's peak RSS is above the goal"; fail=1; }
[ "$checks" -eq 0 ] || echo "some checks failed (above)"
[ $fail -eq 0 ] && echo "goals met: every task done once, p99 of the server's added latency ($p99 ms) <= $goal_ms ms, server RSS <= $((goal_rss_kib / 1024)) MiB"
exit $fail
