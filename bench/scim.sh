# shellcheck shell=bash
# Shared by bench/export_scim.sh and bench/fulfill_scim.sh: a private scim2-server (PyPI, in
# the virtual environment $IDLINK_SCIM2_VENV, default /var/cache/idlink/scim2-venv, installed
# when missing) on a free 127.0.0.1 port with the bearer token $token, and helpers to load it.
# Needs: python3 with venv (apt-get install -y python3 python3-venv), /usr/bin/time.

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "$1 is missing; install it with: $2" >&2
        exit 1
    }
}
need python3 "apt-get install -y python3 python3-venv"
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing; install it with: apt-get install -y time" >&2; exit 1; }

venv=${IDLINK_SCIM2_VENV:-/var/cache/idlink/scim2-venv}
if [ ! -x "$venv/bin/scim2-server" ]; then
    echo "installing scim2-server into $venv..."
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'scim2-server[cursor]' || {
        echo "cannot install scim2-server; install it with: python3 -m venv $venv && $venv/bin/pip install 'scim2-server[cursor]'" >&2
        exit 1
    }
fi

token="bench-$$-token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scim_pid=""

stop_scim() {
    if [ -n "$scim_pid" ]; then
        kill "$scim_pid" 2>/dev/null || true
        wait "$scim_pid" 2>/dev/null || true
        scim_pid=""
    fi
}

# start_scim: starts the server and waits until it answers.
start_scim() {
    "$venv/bin/scim2-server" --hostname 127.0.0.1 --port "$port" --bearer-token "$token" \
        >"$work/scim.log" 2>&1 &
    scim_pid=$!
    for _ in $(seq 300); do
        if python3 - "$port" <<'PY' 2>/dev/null
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/v2/ServiceProviderConfig")
sys.exit(0 if c.getresponse().status == 200 else 1)
PY
        then
            return 0
        fi
        sleep 0.1
    done
    echo "scim2-server did not start; its log:" >&2
    cat "$work/scim.log" >&2
    exit 1
}

# load_users N [GROUPS]: N users (name, two emails, enterprise extension) through /Bulk,
# then GROUPS groups sharing the users as members.
load_users() {
    python3 - "$port" "$token" "$1" "${2:-0}" <<'PY'
import http.client, json, sys
port, token, n, groups = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
H = {"Authorization": "Bearer " + token, "Content-Type": "application/scim+json"}
EXT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
def call(method, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, "/v2/" + path, json.dumps(body), H)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data)
given = ["Zoë", "José", "Łukasz", "Øyvind", "Renée", "Jürgen", "Ana", "John", "Åsa", "Иван"]
ids = []
for start in range(0, n, 1000):
    ops = []
    for i in range(start, min(n, start + 1000)):
        ops.append({"method": "POST", "path": "/Users", "bulkId": f"u{i}", "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "userName": f"user{i:06d}",
            "name": {"givenName": given[i % len(given)], "familyName": f"Family {i % 97}"},
            "emails": [{"value": f"user{i:06d}@example.org", "type": "work", "primary": True},
                       {"value": f"u{i}@home.example.org", "type": "home"}],
            "title": f"Engineer {i % 13}", "active": i % 10 != 0,
            EXT: {"employeeNumber": str(i), "department": f"Dept {i % 20}"}}})
    answer = call("POST", "Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                                   "Operations": ops})
    for op in answer["Operations"]:
        if not str(op.get("status", "")).startswith("2"):
            sys.exit(f"bulk: {op}")
        ids.append(op["location"].rsplit("/", 1)[1])
for g in range(groups):
    members = [{"value": i} for i in ids[g::groups]]
    call("POST", "Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                            "displayName": f"group{g:03d}", "members": members})
PY
}
