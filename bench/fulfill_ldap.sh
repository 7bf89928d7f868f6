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
# A private slapd in $work (need, start_slapd, stop_slapd, $admin, $pw, $port).
# shellcheck source=bench/slapd.sh
source "$root/bench/slapd.sh"

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
