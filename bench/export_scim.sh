#!/usr/bin/env bash
# Benchmark (issue 13): `idlink export` of a SCIM connection through the CLI (configuration,
# schema discovery, paging, CSV, staging, atomic commit) against a plain sequential paging
# loop (Python's http.client: GET startIndex/count with the same page size until
# totalResults, each page's JSON written to a file), run alternately in the same script on
# the same private scim2-server holding:
#   - USERS users (default 20,000): names, two emails, title, active, the enterprise extension;
#   - N_GROUPS groups (default 100) sharing the users as members.
# idlink has no mapping, so it writes every attribute the service's schema describes:
# <id>_Users, <id>_Groups and <id>_members_Groups. The loop reads the same two endpoints.
# Goals: idlink <= MAX_RATIO (1.0) x the loop (medians of RUNS), idlink's peak RSS <= 64 MiB.
# Prints the figures; exits 1 when a goal is missed.
#
#   bench/export_scim.sh                     # USERS=20000 N_GROUPS=100 RUNS=3 PAGE_SIZE=200
#   USERS=2000 RUNS=1 bench/export_scim.sh
set -euo pipefail

USERS=${USERS:-20000}
N_GROUPS=${N_GROUPS:-100}
RUNS=${RUNS:-3}
PAGE_SIZE=${PAGE_SIZE:-200}
MAX_RATIO=${MAX_RATIO:-1.0}
MAX_RSS_KIB=${MAX_RSS_KIB:-65536}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-scim.XXXXXX)
trap 'stop_scim; rm -rf "$work"' EXIT
# shellcheck source=bench/scim.sh
source "$root/bench/scim.sh"

echo "building idlink (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
idlink="$target/release/idlink"

start_scim
echo "loading $USERS users and $N_GROUPS groups into scim2-server..."
load_users "$USERS" "$N_GROUPS"

mkdir -p "$work/conf"
cat >"$work/conf/bench.xml" <<XML
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Bench" DisplayName_L1="Bench" />
  <Connection Identifier="Bench" DisplayName_L1="Bench" Connector="Bench" Package="Usercube.SCIM@0000001" />
</ConfigurationFile>
XML
cat >"$work/conf/appsettings.agent.json" <<JSON
{ "Connections": { "Bench": {
    "Server": "http://127.0.0.1:$port", "PageSize": $PAGE_SIZE, "TimeOut": 0 } } }
JSON

cat >"$work/loop.py" <<'PY'
import http.client, json, sys
port, token, page_size, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
H = {"Authorization": "Bearer " + token, "Accept": "application/scim+json"}
for endpoint in ["Users", "Groups"]:
    with open(f"{out}/{endpoint}.jsonl", "wb") as f:
        start = 1
        while True:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", f"/v2/{endpoint}?startIndex={start}&count={page_size}", headers=H)
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 200:
                sys.exit(f"{endpoint} {start}: {r.status}")
            f.write(body + b"\n")
            page = json.loads(body)
            n = len(page.get("Resources", []))
            start += n
            if n == 0 or start > page["totalResults"]:
                break
PY

loop() { mkdir -p "$work/loop"; python3 "$work/loop.py" "$port" "$token" "$PAGE_SIZE" "$work/loop"; }
cli() {
    IDLINK__Connections__Bench__OAuthToken="$token" "$idlink" -q --config "$work/conf" \
        --work "$work/cli" export --connection Bench --ignore-cookies >/dev/null
}
timed() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" </dev/null 2>"$work/err" || { cat "$work/err" "$work/t" >&2; exit 1; }
    cut -d' ' -f1 "$work/t" >>"$work/$name.times"
    cut -d' ' -f2 "$work/t" >>"$work/$name.rss"
}
export -f loop cli
export work port token PAGE_SIZE idlink

# Alternately, each first in turn, so that drift in the machine's load touches both alike.
for r in $(seq "$RUNS"); do
    if [ $((r % 2)) = 1 ]; then
        timed loop bash -c loop
        timed cli bash -c cli
    else
        timed cli bash -c cli
        timed loop bash -c loop
    fi
done

python3 - "$work" "$MAX_RATIO" "$MAX_RSS_KIB" "$USERS" "$N_GROUPS" "$PAGE_SIZE" "$token" <<'PY'
import csv, os, statistics, sys
work, max_ratio, max_rss = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
users, groups, page_size, token = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
def times(name):
    return [float(x) for x in open(os.path.join(work, name + ".times")).read().split()]
def rss(name):
    return max(int(x) for x in open(os.path.join(work, name + ".rss")).read().split())
def rows(name):
    with open(os.path.join(work, "cli", "ExportOutput", name), newline="", encoding="utf-8") as f:
        r = list(csv.reader(f))
    return r[0], r[1:]
problems = []
header, u = rows("Bench_Users.csv")
if len(u) != users or len({x[0] for x in u}) != users:
    problems.append(f"Bench_Users.csv has {len(u)} rows ({len({x[0] for x in u})} ids), expected {users}")
_, g = rows("Bench_Groups.csv")
if len(g) != groups:
    problems.append(f"Bench_Groups.csv has {len(g)} rows, expected {groups}")
_, m = rows("Bench_members_Groups.csv")
if groups and len(m) != users:
    problems.append(f"Bench_members_Groups.csv has {len(m)} rows, expected {users}")
for dirpath, _, files in os.walk(os.path.join(work, "cli")):
    for name in files:
        if token.encode() in open(os.path.join(dirpath, name), "rb").read():
            problems.append(f"the token is in {name}")
t_loop, t_cli = statistics.median(times("loop")), statistics.median(times("cli"))
ratio = t_cli / t_loop
peak = rss("cli")
pages = -(-users // page_size) + -(-max(groups, 1) // page_size)
print(f"{users} users, {groups} groups, page size {page_size} ({pages} pages), {len(header)} user columns")
print(f"sequential paging loop (python): {t_loop:.2f} s  (runs: {' '.join(f'{x:.2f}' for x in times('loop'))})")
print(f"idlink export:                   {t_cli:.2f} s  (runs: {' '.join(f'{x:.2f}' for x in times('cli'))})")
print(f"ratio idlink / loop: {ratio:.3f} (goal <= {max_ratio})")
print(f"idlink peak RSS: {peak / 1024:.1f} MiB (goal <= {max_rss / 1024:.0f} MiB)")
if ratio > max_ratio:
    problems.append(f"ratio {ratio:.3f} > {max_ratio}")
if peak > max_rss:
    problems.append(f"peak RSS {peak} KiB > {max_rss} KiB")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
