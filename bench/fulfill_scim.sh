#!/usr/bin/env bash
# Benchmark (issue 13): ORDERS (default 2,000) Added orders (users with a name, two emails,
# title and the enterprise extension) through `idlink fulfill` of a SCIM connection, against
# one request at a time: a plain Python loop (http.client) POSTing the same users one by one.
# All run alternately in the same script on the same private scim2-server, each run with
# user names of its own. idlink runs three ways:
#   - bulk:       ServiceSupportBulk (the service's bulk.maxOperations, 1,000 per request);
#   - concurrent: no bulk, MaxConcurrentRequests 8 (the default);
#   - one by one: no bulk, MaxConcurrentRequests 1 (for reference).
# Goal: idlink (bulk) >= MIN_SPEEDUP (3) x faster than the one-request-at-a-time loop
# (medians of RUNS). Prints the figures; exits 1 when the goal is missed.
# Note: scim2-server is one Python process (one core, whatever the threads): a create costs
# it about 1.3 ms of CPU inside a /Bulk and about 3 ms as a request of its own (connection,
# thread, parsing), on an idle machine; that bounds what any client can gain on it.
#
#   bench/fulfill_scim.sh                  # ORDERS=2000 RUNS=3
#   ORDERS=500 RUNS=1 bench/fulfill_scim.sh
set -euo pipefail

ORDERS=${ORDERS:-2000}
RUNS=${RUNS:-3}
MIN_SPEEDUP=${MIN_SPEEDUP:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-scim-fulfill.XXXXXX)
trap 'stop_scim; rm -rf "$work"' EXIT
# shellcheck source=bench/scim.sh
source "$root/bench/scim.sh"

echo "building idlink (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
idlink="$target/release/idlink"

start_scim

mkdir -p "$work/conf"
connection() { # connection ID
    cat <<XML
  <Connection Identifier="$1" DisplayName_L1="$1" Connector="Bench" Package="Usercube.SCIM@0000001" />
  <ResourceType Identifier="$1_Account" DisplayName_L1="$1 account" SourceEntityType="Bench_User" TargetEntityType="Bench_User" />
  <ScimResourceTypeMapping Identifier="$1_Account" Connection="$1" DefaultObjectClass="Users" />
XML
}
{
    echo '<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">'
    echo '  <Connector Identifier="Bench" DisplayName_L1="Bench" />'
    echo '  <EntityType Identifier="Bench_User" DisplayName_L1="User"><Property Identifier="id" DisplayName_L1="Id" IsKey="true" /></EntityType>'
    connection Bulk
    connection Concurrent
    connection OneByOne
    echo '</ConfigurationFile>'
} >"$work/conf/bench.xml"
cat >"$work/conf/appsettings.agent.json" <<JSON
{ "Connections": {
    "Bulk": { "Server": "http://127.0.0.1:$port", "ServiceSupportBulk": true, "TimeOut": 0 },
    "Concurrent": { "Server": "http://127.0.0.1:$port", "TimeOut": 0 },
    "OneByOne": { "Server": "http://127.0.0.1:$port", "MaxConcurrentRequests": 1, "TimeOut": 0 } } }
JSON

# orders PREFIX RESOURCE_TYPE: the orders file and the loop's bodies for users PREFIX<i>.
orders() {
    python3 - "$ORDERS" "$1" "$2" "$work" <<'PY'
import json, sys
n, prefix, rt, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
EXT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
orders, bodies = [], []
for i in range(n):
    name = f"{prefix}{i:05d}"
    orders.append({"Id": name, "ChangeType": "Added", "ResourceType": {"Identifier": rt},
                   "Changes": {"userName": name, "name:givenName": "Given", "name:familyName": f"Family {i}",
                               "emails:value": [f"{name}@example.org", f"{name}@home.example.org"],
                               "title": "Engineer", f"{EXT}:employeeNumber": str(i)}})
    bodies.append({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT], "userName": name,
                   "name": {"givenName": "Given", "familyName": f"Family {i}"},
                   "emails": [{"value": f"{name}@example.org"}, {"value": f"{name}@home.example.org"}],
                   "title": "Engineer", EXT: {"employeeNumber": str(i)}})
json.dump({"ProvisioningOrdersList": orders}, open(f"{work}/{prefix}.json", "w"))
with open(f"{work}/{prefix}.bodies", "w") as f:
    for b in bodies:
        f.write(json.dumps(b) + "\n")
PY
}

cat >"$work/loop.py" <<'PY'
import http.client, sys
port, token, bodies = int(sys.argv[1]), sys.argv[2], sys.argv[3]
H = {"Authorization": "Bearer " + token, "Content-Type": "application/scim+json"}
for line in open(bodies, "rb"):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/v2/Users", line.rstrip(b"\n"), H)
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 201:
        sys.exit(f"POST: {r.status}")
PY

loop() { python3 "$work/loop.py" "$port" "$token" "$work/$1.bodies"; }
cli() { # cli CONNECTION PREFIX
    env "IDLINK__Connections__${1}__OAuthToken=$token" "$idlink" -q --config "$work/conf" --work "$work/w" \
        fulfill --connection "$1" --orders "$work/$2.json" --results "$work/$2.results" >/dev/null
}
# The service's CPU seconds so far (user + system), from /proc.
server_cpu() {
    python3 -c 'import os, sys; f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$scim_pid"
}
timed() {
    local name=$1; shift
    local before; before=$(server_cpu)
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" </dev/null 2>"$work/err" || { cat "$work/err" "$work/t" >&2; exit 1; }
    cut -d' ' -f1 "$work/t" >>"$work/$name.times"
    python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$before" "$(server_cpu)" >>"$work/$name.cpu"
}
export -f loop cli
export work port token idlink

echo "running $RUNS x ($ORDERS orders four ways)..."
for r in $(seq "$RUNS"); do
    for p in "l${r}u" "b${r}u" "c${r}u" "o${r}u"; do
        case $p in
            b*) orders "$p" Bulk_Account ;;
            c*) orders "$p" Concurrent_Account ;;
            o*) orders "$p" OneByOne_Account ;;
            *) orders "$p" Bulk_Account ;;
        esac
    done
    timed loop bash -c "loop l${r}u"
    timed bulk bash -c "cli Bulk b${r}u"
    timed concurrent bash -c "cli Concurrent c${r}u"
    timed onebyone bash -c "cli OneByOne o${r}u"
done

python3 - "$work" "$RUNS" "$ORDERS" "$MIN_SPEEDUP" "$port" "$token" <<'PY'
import glob, http.client, json, os, statistics, sys, urllib.parse
work, runs, n, goal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
port, token = int(sys.argv[5]), sys.argv[6]
problems = []
for f in sorted(glob.glob(f"{work}/*.results")):
    results = json.load(open(f))["results"]
    bad = [r for r in results if r["state"] != "Executed"]
    if len(results) != n or bad:
        problems.append(f"{os.path.basename(f)}: {len(results)} results, {len(bad)} not Executed: {bad[:2]}")
# Every user of every run exists once.
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/v2/Users?count=1", headers={"Authorization": "Bearer " + token})
total = json.loads(c.getresponse().read())["totalResults"]
if total != 4 * runs * n:
    problems.append(f"the service holds {total} users, expected {4 * runs * n}")
med = {k: statistics.median(float(x) for x in open(f"{work}/{k}.times").read().split())
       for k in ["loop", "bulk", "concurrent", "onebyone"]}
def runs_of(k):
    return " ".join(f"{float(x):.2f}" for x in open(f"{work}/{k}.times").read().split())
print(f"{n} Added orders per run, {runs} runs (medians):")
print(f"one request at a time (python loop): {med['loop']:.2f} s  (runs: {runs_of('loop')})")
for k, label in [("bulk", "idlink, /Bulk"), ("concurrent", "idlink, 8 concurrent requests"), ("onebyone", "idlink, one request at a time")]:
    print(f"{label + ':':36} {med[k]:.2f} s  ({med['loop'] / med[k]:.2f}x the loop; runs: {runs_of(k)})")
# What the service itself spends: no client can make a run shorter than the service's CPU
# time for it (one Python process), so loop time / the bulk run's service CPU bounds the
# speedup any client can reach on this service.
cpu = {k: statistics.median(float(x) for x in open(f"{work}/{k}.cpu").read().split())
       for k in ["loop", "bulk", "concurrent", "onebyone"]}
for k in ["loop", "bulk", "concurrent", "onebyone"]:
    print(f"  service CPU, {k + ':':12} {cpu[k]:.2f} s ({cpu[k] / n * 1000:.2f} ms per create; busy {cpu[k] / med[k]:.0%} of the run)")
print(f"bound on any client's speedup over the loop on this service: {med['loop'] / cpu['bulk']:.2f}x (loop time / service CPU in /Bulk)")
speedup = med["loop"] / med["bulk"]
print(f"speedup of idlink (bulk) over one request at a time: {speedup:.2f}x (goal >= {goal})")
if speedup < goal:
    problems.append(f"speedup {speedup:.2f} < {goal}")
for p in problems:
    print("FAIL:", p)
sys.exit(1 if problems else 0)
PY
