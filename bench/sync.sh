#!/usr/bin/env bash
# Benchmark (issue 10): synchronize a generated HR table of ROWS people (10 columns, a foreign
# key to 1,000 organizations) through the `idlink` CLI, and compare in the same script with:
#   - SQLite store: `sqlite3 -cmd ".mode csv" ".import"` of the same file into a plain table;
#   - PostgreSQL store: `psql \copy` of the same file into a plain table.
# Then a complete run where 1% of the rows changed, against the first run.
#
# Goals: SQLite >= 100,000 rows/s and <= 2x sqlite3 .import; the 1% run <= 10% of the first;
# PostgreSQL <= 2x psql \copy; peak RSS <= 256 MiB (the runs, and `idlink resources` listing the
# people a page at a time). Prints the ratios; exits 1 when missed.
#
#   bench/sync.sh                 # ROWS=1000000
#   ROWS=100000 bench/sync.sh
#   KEEP=1 bench/sync.sh          # keep the work folder (its path is printed)
# Each run's phases (store index read, prepared, resources applied, links applied, committed)
# are printed after the figures.
set -euo pipefail

ROWS=${ROWS:-1000000}
MAX_RSS_KIB=${MAX_RSS_KIB:-262144}
root=$(cd "$(dirname "$0")/.." && pwd)

command -v sqlite3 >/dev/null || { echo "sqlite3 is missing; install it with: apt-get install -y sqlite3" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing; install it with: apt-get install -y time" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "PostgreSQL is not installed; install it with: apt-get install -y postgresql" >&2
    exit 1
fi

echo "building idlink (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
idlink="$target/release/idlink"

work=$(mktemp -d /tmp/idlink-bench-sync.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$work"
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

mkdir -p "$work/conf/data"
cat >"$work/conf/hr.xml" <<'XML'
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="HR" />
  <Connection Identifier="HRPeople" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HROrgs" DisplayName_L1="Organizations" Connector="HR" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="EmployeeId" DisplayName_L1="Employee ID" IsKey="true" />
    <Property Identifier="Login" DisplayName_L1="Login" />
    <Property Identifier="FirstName" DisplayName_L1="First name" />
    <Property Identifier="LastName" DisplayName_L1="Last name" />
    <Property Identifier="Email" DisplayName_L1="Email" />
    <Property Identifier="Title" DisplayName_L1="Title" />
    <Property Identifier="Phone" DisplayName_L1="Phone" />
    <Property Identifier="StartDate" DisplayName_L1="Start date" Type="DateTime" />
    <Property Identifier="Grade" DisplayName_L1="Grade" Type="Int32" />
    <Property Identifier="Organization" DisplayName_L1="Organization" Type="ForeignKey" />
  </EntityType>
  <EntityType Identifier="Org" DisplayName_L1="Organization">
    <Property Identifier="Code" DisplayName_L1="Code" IsKey="true" />
    <Property Identifier="Name" DisplayName_L1="Name" />
    <Property Identifier="Members" DisplayName_L1="Members" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Person_Org" DisplayName_L1="Organization"
                     Property1="Person:Organization" Property2="Org:Members" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRPeople">
    <Property Identifier="EmployeeId" ConnectionColumn="EmployeeId" IsPrimaryKey="true" />
    <Property Identifier="Login" ConnectionColumn="Login" />
    <Property Identifier="FirstName" ConnectionColumn="FirstName" />
    <Property Identifier="LastName" ConnectionColumn="LastName" />
    <Property Identifier="Email" ConnectionColumn="Email" />
    <Property Identifier="Title" ConnectionColumn="Title" />
    <Property Identifier="Phone" ConnectionColumn="Phone" />
    <Property Identifier="StartDate" ConnectionColumn="StartDate" Format="yyyy-MM-dd" />
    <Property Identifier="Grade" ConnectionColumn="Grade" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Org" Connector="HR" ConnectionTable="HROrgs">
    <Property Identifier="Code" ConnectionColumn="Code" IsPrimaryKey="true" />
    <Property Identifier="Name" ConnectionColumn="Name" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Person_Org" Connector="HR" ConnectionTable="HRPeople"
                            Column1="EmployeeId" EntityPropertyMapping1="Person:EmployeeId"
                            Column2="OrgCode" EntityPropertyMapping2="Org:Code" />
</ConfigurationFile>
XML
cat >"$work/conf/appsettings.agent.json" <<'JSON'
{ "SourcesRootPaths": ["data"],
  "Connections": { "HRPeople": { "Path": "data/people.csv" }, "HROrgs": { "Path": "data/orgs.csv" } } }
JSON

echo "generating $ROWS people and 1,000 organizations..."
python3 - "$ROWS" "$work/conf/data" <<'PY'
import sys, random
rows, out = int(sys.argv[1]), sys.argv[2]
random.seed(7)
first = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Dennis", "Frances"]
last = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Ritchie", "Allen"]
titles = ["Engineer", "Analyst", "Manager", "Director", "Technician", "Consultant"]
with open(f"{out}/orgs.csv", "w") as f:
    f.write("Code,Name\n")
    for o in range(1000):
        f.write(f"ORG{o:04d},Organization {o}\n")
def person(i, changed=False):
    fn, ln = first[i % 10], last[(i // 10) % 10]
    title = titles[(i + (1 if changed else 0)) % 6]
    return (f"E{i:07d},{fn.lower()}.{ln.lower()}{i},{fn},{ln},{fn.lower()}.{ln.lower()}{i}@example.com,"
            f"{title},+1 555 {i % 10000:04d},20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d},{i % 12},ORG{i % 1000:04d}\n")
header = "EmployeeId,Login,FirstName,LastName,Email,Title,Phone,StartDate,Grade,OrgCode\n"
with open(f"{out}/people.csv", "w") as f:
    f.write(header)
    for i in range(rows):
        f.write(person(i))
# 1% of the rows changed (their title), in a second file.
with open(f"{out}/people-1pct.csv", "w") as f:
    f.write(header)
    for i in range(rows):
        f.write(person(i, changed=(i % 100 == 7)))
PY

# The synchronization's phase lines (the export's logs stay quiet).
sync_log=${IDLINK_LOG:-warn,idlink_engine::sync=info}
run() { # label, command...: prints seconds; keeps the peak RSS in $work/rss
    local label=$1; shift
    # What the steps before wrote (the exported table, the last run's store) reaches the disk
    # first: each command is timed for its own work, not for its predecessor's write-back.
    sync
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/$label.out" 2>"$work/$label.err" || {
        cat "$work/$label.err" >&2; exit 1; }
    local rss; rss=$(cut -d' ' -f2 "$work/t")
    echo "$rss" >>"$work/rss"
    cut -d' ' -f1 "$work/t"
}
export_all() { # work dir, people file
    cp "$work/conf/data/$2" "$work/conf/data/people.csv.new" && mv "$work/conf/data/people.csv.new" "$work/conf/data/people.csv"
    "$idlink" -q export --config "$work/conf" --work "$1" --connection HRPeople >/dev/null
    "$idlink" -q export --config "$work/conf" --work "$1" --connection HROrgs >/dev/null
}
cp "$work/conf/data/people.csv" "$work/conf/data/people-full.csv"

echo "== SQLite store"
export_all "$work/w-sqlite" people-full.csv
table="$work/w-sqlite/ExportOutput/HRPeople.csv"
t_import=$(run import sqlite3 "$work/plain.db" -cmd ".mode csv" ".import $table people")
t_first=$(run sqlite-first env IDLINK_LOG="$sync_log" "$idlink" -q sync --config "$work/conf" --work "$work/w-sqlite" --connector HR --mode initial)
export_all "$work/w-sqlite" people-1pct.csv
t_second=$(run sqlite-1pct env IDLINK_LOG="$sync_log" "$idlink" -q sync --config "$work/conf" --work "$work/w-sqlite" --connector HR --force)
grep -q "$((ROWS / 100)) updated" "$work/sqlite-1pct.out" || { echo "the 1% run did not update $((ROWS / 100)) rows:" >&2; cat "$work/sqlite-1pct.out" >&2; exit 1; }
# Listing the store's people (a page at a time: its memory must not grow with the store).
t_list=$(run list "$idlink" -q resources --config "$work/conf" --work "$work/w-sqlite" --entity-type Person --format csv)
listed=$(($(wc -l <"$work/list.out") - 1))
[ "$listed" = "$ROWS" ] || { echo "idlink resources listed $listed people, not $ROWS" >&2; exit 1; }
rss_sqlite=$(sort -n "$work/rss" | tail -1)

echo "== PostgreSQL store"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres -A trust --no-sync --no-instructions -E UTF8 --locale=C >"$work/initdb.log" 2>&1 \
    || { cat "$work/initdb.log" >&2; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -t 60 start -o \
    "-p $port -k $work -c listen_addresses=127.0.0.1 -c shared_buffers=128MB" >/dev/null || { cat "$work/pg.log" >&2; exit 1; }
psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE plain" -c "CREATE DATABASE store"
psql_ -d plain -c "CREATE TABLE people (EmployeeId text, Login text, FirstName text, LastName text, Email text, Title text, Phone text, StartDate text, Grade text, OrgCode text)"
export_all "$work/w-pg" people-full.csv
t_copy=$(run copy "$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d plain -c "\\copy people FROM '$work/w-pg/ExportOutput/HRPeople.csv' CSV HEADER")
t_pg=$(run pg-first env IDLINK_LOG="$sync_log" "$idlink" -q sync --config "$work/conf" --work "$work/w-pg" --database "postgres://postgres@127.0.0.1:$port/store" --connector HR --mode initial)
rss_all=$(sort -n "$work/rss" | tail -1)

status=0
(python3 - "$ROWS" "$t_import" "$t_first" "$t_second" "$t_copy" "$t_pg" "$rss_sqlite" "$rss_all" "$MAX_RSS_KIB" "$t_list" <<'PY'
import sys
rows = int(sys.argv[1])
t_import, t_first, t_second, t_copy, t_pg = map(float, sys.argv[2:7])
rss_sqlite, rss_all, max_rss = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
t_list = float(sys.argv[10])
ok = True
def line(label, value, goal, good):
    global ok
    ok &= good
    print(f"{label:<44} {value:>12}   goal {goal:<10} {'ok' if good else 'MISSED'}")
print(f"rows: {rows}; sqlite3 .import {t_import:.2f} s; psql \\copy {t_copy:.2f} s")
line("SQLite first run (s)", f"{t_first:.2f}", "", True)
line("SQLite rows/s", f"{rows / t_first:,.0f}", ">= 100000", rows / t_first >= 100000)
line("SQLite first run / sqlite3 .import", f"{t_first / t_import:.2f}", "<= 2", t_first / t_import <= 2)
line("SQLite 1% changed run / first run", f"{t_second / t_first:.2f}", "<= 0.10", t_second / t_first <= 0.10)
line("PostgreSQL first run / psql \\copy", f"{t_pg / t_copy:.2f}", "<= 2", t_pg / t_copy <= 2)
print(f"idlink resources --entity-type Person --format csv: {t_list:.2f} s")
line("peak RSS (MiB)", f"{rss_all / 1024:.0f}", f"<= {max_rss // 1024}", rss_all <= max_rss)
sys.exit(0 if ok else 1)
PY
) || status=$?
for label in sqlite-first sqlite-1pct pg-first; do
    echo "-- phases of $label"
    grep -E "seconds" "$work/$label.err" | sed -E 's/^[^ ]+ +//; s/\x1b\[[0-9;]*m//g' || true
done
exit "${status:-0}"
