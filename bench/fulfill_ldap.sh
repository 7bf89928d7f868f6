#!/usr/bin/env bash
# Benchmark (issue 4): ORDERS (10,000) Added orders through the LDAP package's fulfill, against
# `ldapadd -f` of the same entries as LDIF, each into a fresh private slapd, in the same script.
#
# Goal: package wall time <= 1.3 x ldapadd's. Exits 1 when missed.
#
#   bench/fulfill_ldap.sh              # ORDERS=10000 RUNS=3 by default
#   ORDERS=2000 RUNS=1 bench/fulfill_ldap.sh
set -euo pipefail

ORDERS=${ORDERS:-10000}
RUNS=${RUNS:-3}
MAX_RATIO=${MAX_RATIO:-1.3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-fulfill.XXXXXX)
trap 'stop_slapd; rm -rf "$work"' EXIT
# Shared by bench/export_ldap.sh and bench/fulfill_ldap.sh: a private slapd (mdb, no syncprov)
# in $work on a free port, root DN cn=admin,dc=example,dc=org with password $pw.
# Needs: slapd ldap-utils (apt-get install -y slapd ldap-utils), python3, /usr/bin/time.

need() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || {
        echo "$1 is missing; install it with: $2" >&2
        exit 1
    }
}
need slapd "apt-get install -y slapd ldap-utils"
need slapadd "apt-get install -y slapd ldap-utils"
need ldapsearch "apt-get install -y slapd ldap-utils"
need python3 "apt-get install -y python3"
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing; install it with: apt-get install -y time" >&2; exit 1; }
PATH="$PATH:/usr/sbin"

admin="cn=admin,dc=example,dc=org"
pw="bench-$$-secret"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/data"
cat >"$work/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $work/slapd.pid
argsfile $work/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit unlimited
database mdb
suffix "dc=example,dc=org"
rootdn "$admin"
rootpw $pw
directory $work/data
maxsize 4294967296
index objectClass eq
CONF

slapd_pid=""
stop_slapd() {
    if [ -n "$slapd_pid" ]; then
        kill "$slapd_pid" 2>/dev/null || true
        wait "$slapd_pid" 2>/dev/null || true
        slapd_pid=""
    fi
}

# start_slapd LDIF: loads LDIF with slapadd -q, then starts slapd and waits for a bind.
start_slapd() {
    slapadd -q -f "$work/slapd.conf" -l "$1" >"$work/slapadd.log" 2>&1 || { cat "$work/slapadd.log" >&2; exit 1; }
    slapd -f "$work/slapd.conf" -h "ldap://127.0.0.1:$port/" -d 0 >"$work/slapd.log" 2>&1 &
    slapd_pid=$!
    for _ in $(seq 200); do
        if ldapwhoami -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "slapd did not start; its log:" >&2
    cat "$work/slapd.log" >&2
    exit 1
}

echo "building the example (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-packages --example fulfill_ldap)
exe="$root/target/release/examples/fulfill_ldap"

echo "generating $ORDERS entries as LDIF and as orders..."
python3 - "$ORDERS" "$work" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/base.ldif", "w") as f:
    f.write("dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
    f.write("dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n")
orders = []
with open(f"{work}/entries.ldif", "w") as f:
    for i in range(n):
        dn = f"uid=new{i:06d},ou=people,dc=example,dc=org"
        attrs = {"cn": f"New User {i}", "sn": f"User{i}", "givenName": "New",
                 "mail": f"new{i:06d}@example.org", "employeeNumber": str(i),
                 "description": f"added by the fulfill benchmark {i}"}
        f.write(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: new{i:06d}\n")
        for k, v in attrs.items():
            f.write(f"{k}: {v}\n")
        f.write("\n")
        changes = {"dn": dn, "objectClass": ["inetOrgPerson"], "uid": f"new{i:06d}", **attrs}
        orders.append({"ChangeType": "Added", "ResourceType": {"Identifier": "LDAP_Person"},
                       "Changes": changes})
with open(f"{work}/orders.json", "w") as f:
    json.dump({"ProvisioningOrdersList": orders}, f)
PY

fresh() {
    stop_slapd
    rm -rf "$work/data"
    mkdir -p "$work/data"
    start_slapd "$work/base.ldif"
}
count() {
    ldapsearch -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -b "ou=people,dc=example,dc=org" \
        -LLL -s one '(objectClass=inetOrgPerson)' 1.1 | grep -c '^dn:' || true
}

ldapadd_times=()
pkg_times=()
for _ in $(seq "$RUNS"); do
    fresh
    /usr/bin/time -f "%e %M" -o "$work/t" \
        ldapadd -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -f "$work/entries.ldif" >/dev/null
    ldapadd_times+=("$(cut -d' ' -f1 "$work/t")")
    [ "$(count)" = "$ORDERS" ] || { echo "ldapadd did not add $ORDERS entries" >&2; exit 1; }
    fresh
    IDLINK_LDAP_PASSWORD="$pw" /usr/bin/time -f "%e %M" -o "$work/t" \
        "$exe" "127.0.0.1:$port" "$admin" "$work/orders.json" >"$work/pkg.out" \
        || { cat "$work/pkg.out" >&2; exit 1; }
    pkg_times+=("$(cut -d' ' -f1 "$work/t")")
    pkg_rss=$(cut -d' ' -f2 "$work/t")
    [ "$(count)" = "$ORDERS" ] || { echo "fulfill did not add $ORDERS entries" >&2; cat "$work/pkg.out" >&2; exit 1; }
done

python3 - "$MAX_RATIO" "$ORDERS" "${ldapadd_times[*]}" "${pkg_times[*]}" "$pkg_rss" "$(cat "$work/pkg.out")" <<'PY'
import statistics, sys
max_ratio, n = float(sys.argv[1]), int(sys.argv[2])
la = [float(x) for x in sys.argv[3].split()]
pkg = [float(x) for x in sys.argv[4].split()]
rss = int(sys.argv[5])
l, k = statistics.median(la), statistics.median(pkg)
ratio = k / l if l > 0 else float("inf")
print(f"orders:            {n} Added (inetOrgPerson, 8 attributes)")
print(f"package says:      {sys.argv[6]}")
print(f"ldapadd -f:        {l:.2f} s (median of {la})")
print(f"package fulfill:   {k:.2f} s (median of {pkg})")
print(f"ratio:             {ratio:.2f} (goal <= {max_ratio})")
print(f"package peak RSS:  {rss / 1024:.1f} MiB")
ok = ratio <= max_ratio
print("result:            " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
