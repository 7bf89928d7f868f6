#!/usr/bin/env bash
# What scim2-server itself spends (issue 13): the server process's CPU time (utime + stime from
# /proc/<pid>/stat) and the wall time for N creates sent (a) one request at a time (as
# bench/fulfill_scim.sh's loop does) and (b) in /Bulk requests of the service's maxOperations
# (1,000), from a Python client; and for one export's worth of pages (USERS users, PAGE_SIZE).
# A client can be no faster than the server's own CPU time for the same work (scim2-server is
# one Python process: its threads share one interpreter lock), so
#   best possible speedup of bulk over the loop  <=  loop wall time / server CPU for the bulk
# (when the server has a core to itself; on a loaded machine both wall times stretch).
#
#   bench/scim_server_cpu.sh                 # N=2000 USERS=20000 PAGE_SIZE=200
set -euo pipefail
N=${N:-2000}
USERS=${USERS:-20000}
PAGE_SIZE=${PAGE_SIZE:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-scim-cpu.XXXXXX)
trap 'stop_scim; rm -rf "$work"' EXIT
# shellcheck source=bench/scim.sh
source "$root/bench/scim.sh"
start_scim
python3 - "$port" "$token" "$scim_pid" "$N" "$USERS" "$PAGE_SIZE" <<'PY'
import http.client, json, os, sys, time
port, token, pid, n, users, page_size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
H = {"Authorization": "Bearer " + token, "Content-Type": "application/scim+json"}
EXT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def call(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, "/v2/" + path, None if body is None else json.dumps(body), H)
    r = c.getresponse(); data = r.read(); c.close()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status} {data[:200]!r}")
    return data
def user(name, i):
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT], "userName": name,
            "name": {"givenName": "Given", "familyName": f"Family {i}"},
            "emails": [{"value": f"{name}@example.org"}, {"value": f"{name}@home.example.org"}],
            "title": "Engineer", EXT: {"employeeNumber": str(i)}}
def measure(label, fn):
    c0, t0 = cpu(), time.monotonic()
    fn()
    c1, t1 = cpu(), time.monotonic()
    print(f"{label:58} wall {t1 - t0:6.2f} s   server CPU {c1 - c0:6.2f} s")
    return t1 - t0, c1 - c0
def one_by_one(prefix):
    for i in range(n):
        call("POST", "Users", user(f"{prefix}{i:05d}", i))
def bulk(prefix):
    for s in range(0, n, 1000):
        ops = [{"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": user(f"{prefix}{i:05d}", i)}
               for i in range(s, min(n, s + 1000))]
        call("POST", "Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
print(f"load: {open('/proc/loadavg').read().split()[:3]}")
res = {}
for r in range(3):
    for k, fn in [("loop", one_by_one), ("bulk", bulk)]:
        res.setdefault(k, []).append(measure(f"{n} creates, {'one request each' if k == 'loop' else '/Bulk of 1,000'} (run {r + 1})", lambda: fn(f"{k}{r}u")))
med = lambda xs: sorted(xs)[len(xs) // 2]
loop_wall = med([w for w, _ in res["loop"]]); loop_cpu = med([c for _, c in res["loop"]])
bulk_wall = med([w for w, _ in res["bulk"]]); bulk_cpu = med([c for _, c in res["bulk"]])
print(f"medians: loop wall {loop_wall:.2f} s (server CPU {loop_cpu:.2f} s = {1000 * loop_cpu / n:.2f} ms/create); "
      f"bulk wall {bulk_wall:.2f} s (server CPU {bulk_cpu:.2f} s = {1000 * bulk_cpu / n:.2f} ms/create)")
print(f"server CPU, one request each / bulk: {loop_cpu / bulk_cpu:.2f}x; with the server on a core of its own, "
      f"a bulk of {n} takes at least {bulk_cpu:.2f} s, so the 3x goal needs the loop to take >= {3 * bulk_cpu:.2f} s "
      f"(it took {loop_wall:.2f} s here, load {open('/proc/loadavg').read().split()[0]})")
# Export: pages of PAGE_SIZE over USERS users (the users above count), one at a time.
have = json.loads(call("GET", "Users?count=0"))["totalResults"]
for s in range(have, users, 1000):
    ops = [{"method": "POST", "path": "/Users", "bulkId": f"x{i}", "data": user(f"x{i:06d}", i)} for i in range(s, min(users, s + 1000))]
    call("POST", "Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
total = max(users, have)
def pages():
    for start in range(1, total + 1, page_size):
        call("GET", f"Users?startIndex={start}&count={page_size}")
for r in range(3):
    measure(f"export: {total} users in pages of {page_size} (run {r + 1})", pages)
PY
