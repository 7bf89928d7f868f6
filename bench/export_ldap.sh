#!/usr/bin/env bash
# Benchmark (issue 4): export ENTRIES (100,000) inetOrgPerson entries and 100 groups from a
# private slapd with the LDAP package (paged, 1000 per page), against
# `ldapsearch -E pr=1000/noprompt` writing LDIF to a file, run in the same script on the same
# server.
#
# Goals: package wall time <= 1.2 x ldapsearch's; package peak RSS <= 64 MiB. Exits 1 when missed.
#
#   bench/export_ldap.sh               # ENTRIES=100000 RUNS=7 by default (the median of 7 is stable on 2 busy cores)
#   ENTRIES=20000 RUNS=1 bench/export_ldap.sh
set -euo pipefail

ENTRIES=${ENTRIES:-100000}
RUNS=${RUNS:-7}
MAX_RATIO=${MAX_RATIO:-1.2}
MAX_RSS_KIB=${MAX_RSS_KIB:-65536}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-ldap.XXXXXX)
trap 'stop_slapd; rm -rf "$work"' EXIT
# A private slapd in $work (need, start_slapd, stop_slapd, $admin, $pw, $port).
# shellcheck source=bench/slapd.sh
source "$root/bench/slapd.sh"

echo "building the example (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-packages --example export_ldap)
exe="$root/target/release/examples/export_ldap"

echo "generating and loading $ENTRIES entries..."
python3 - "$ENTRIES" >"$work/data.ldif" <<'PY'
import sys
n = int(sys.argv[1])
w = sys.stdout.write
w("dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
w("dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n")
w("dn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n\n")
for i in range(n):
    w(f"dn: uid=user{i:06d},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
      f"uid: user{i:06d}\ncn: User Number {i}\nsn: Number{i}\ngivenName: User\n"
      f"mail: user{i:06d}@example.org\nmail: u{i}@mail.example.org\nemployeeNumber: {i}\n"
      f"telephoneNumber: +1 555 {i % 10000:04d}\ndescription: generated entry {i} for the export benchmark\n"
      f"departmentNumber: {i % 100}\n\n")
for g in range(100):
    w(f"dn: cn=group{g:03d},ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: group{g:03d}\n")
    for i in range(g, n, max(1, n // 100) if n >= 10000 else 100):
        w(f"member: uid=user{i:06d},ou=people,dc=example,dc=org\n")
    w("\n")
PY
start_slapd "$work/data.ldif"

attrs="objectClass,uid,cn,sn,givenName,mail,employeeNumber,telephoneNumber,description,departmentNumber"
mkdir -p "$work/out"
run_ldapsearch() {
    ldapsearch -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -b "dc=example,dc=org" \
        -E pr=1000/noprompt -LLL '(objectClass=*)' >"$work/ldapsearch.ldif"
}
run_package() {
    IDLINK_LDAP_PASSWORD="$pw" "$exe" "127.0.0.1:$port" "$admin" "dc=example,dc=org" \
        '(objectClass=*)' "$work/out" "$attrs" member >/dev/null
}
export -f run_ldapsearch run_package
export work port admin pw exe attrs
export IDLINK_LDAP_PASSWORD="$pw"

# One warm-up run of each (page cache, server caches), then RUNS timed runs, interleaved.
run_ldapsearch
run_package
ls_times=()
pkg_times=()
pkg_rss=0
for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$work/t" bash -c run_ldapsearch
    ls_times+=("$(cut -d' ' -f1 "$work/t")")
    /usr/bin/time -f "%e %M" -o "$work/t" "$exe" "127.0.0.1:$port" "$admin" "dc=example,dc=org" \
        '(objectClass=*)' "$work/out" "$attrs" member >/dev/null < /dev/null \
        2>"$work/pkg.err" || { cat "$work/pkg.err" >&2; exit 1; }
    pkg_times+=("$(cut -d' ' -f1 "$work/t")")
    rss=$(cut -d' ' -f2 "$work/t")
    [ "$rss" -gt "$pkg_rss" ] && pkg_rss=$rss
done

entries_ldap=$(grep -c '^dn:' "$work/ldapsearch.ldif")
rows_pkg=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=""))) - 1)' "$work/out/bench_entries.csv")
if [ "$entries_ldap" != "$rows_pkg" ]; then
    echo "entry counts differ: ldapsearch $entries_ldap, package $rows_pkg" >&2
    exit 1
fi

python3 - "$MAX_RATIO" "$MAX_RSS_KIB" "$pkg_rss" "$entries_ldap" "${ls_times[*]}" "${pkg_times[*]}" "$work/out" <<'PY'
import os, statistics, sys
max_ratio, max_rss, rss, n = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ls = [float(x) for x in sys.argv[5].split()]
pkg = [float(x) for x in sys.argv[6].split()]
out = sys.argv[7]
l, k = statistics.median(ls), statistics.median(pkg)
ratio = k / l if l > 0 else float("inf")
print(f"entries:           {n}")
for f in sorted(os.listdir(out)):
    print(f"table:             {f} ({os.path.getsize(os.path.join(out, f))} bytes)")
print(f"ldapsearch pr=1000: {l:.2f} s (median of {ls})")
print(f"package export:    {k:.2f} s (median of {pkg})")
print(f"ratio:             {ratio:.2f} (goal <= {max_ratio})")
print(f"package peak RSS:  {rss / 1024:.1f} MiB (goal <= {max_rss / 1024:.0f} MiB)")
ok = ratio <= max_ratio and rss <= max_rss
print("result:            " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
