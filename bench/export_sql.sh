#!/usr/bin/env bash
# Benchmark (issue 3): export 1,000,000 rows x 8 columns (int, text, timestamp, bool, numeric)
# from PostgreSQL with the SQL package, against `psql \copy (SELECT ...) TO 'file' CSV HEADER`
# run in the same script on the same private server.
#
# Goals: package wall time <= 1.3 x psql's; package peak RSS <= 64 MiB. Exits 1 when missed.
#
#   bench/export_sql.sh            # ROWS=1000000 RUNS=3 by default
#   ROWS=100000 RUNS=1 bench/export_sql.sh
#   BASELINE_EXE=/path/to/an/older/export_sql bench/export_sql.sh   # also times an earlier build
set -euo pipefail

ROWS=${ROWS:-1000000}
RUNS=${RUNS:-3}
MAX_RATIO=${MAX_RATIO:-1.3}
MAX_RSS_KIB=${MAX_RSS_KIB:-65536}
root=$(cd "$(dirname "$0")/.." && pwd)

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "PostgreSQL is not installed; install it with: apt-get install -y postgresql" >&2
    exit 1
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing; install it with: apt-get install -y time" >&2; exit 1; }

echo "building the example and idlink (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-packages --example export_sql && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
exe="$target/release/examples/export_sql"
idlink="$target/release/idlink"

work=$(mktemp -d /tmp/idlink-bench-sql.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$work"
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg "$pgbin/initdb" -D "$work/data" -U postgres -A trust --no-sync --no-instructions \
    -E UTF8 --locale=C >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w -t 60 start -o \
    "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB" \
    >/dev/null || { cat "$work/server.log" >&2; exit 1; }

psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }

echo "loading $ROWS rows..."
psql_ <<SQL
CREATE TABLE people AS
SELECT i AS id,
       'user' || i AS login,
       md5(i::text) AS display_name,
       timestamptz '2020-01-01 00:00:00+00' + i * interval '17 seconds' AS created_at,
       i % 3 = 0 AS active,
       (i * 1.25)::numeric(12, 2) AS salary,
       i % 1000 AS department_id,
       'user' || i || '@example.com' AS email
FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE people;
SQL

query="SELECT * FROM people"
url="postgres://postgres@127.0.0.1:$port/postgres"
mkdir -p "$work/out" "$work/conf"
chmod 777 "$work/out"
# The same export through the CLI: a one-connection configuration.
cat >"$work/conf/bench.xml" <<XML
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Bench" DisplayName_L1="Bench" />
  <Connection Identifier="Bench" DisplayName_L1="Bench" Connector="Bench" Package="Usercube.SQL.PostgreSQL@0000001" />
</ConfigurationFile>
XML
cat >"$work/conf/appsettings.agent.json" <<JSON
{ "Connections": { "Bench": { "ConnectionString": "$url", "SqlCommand": "$query", "Timeout": 0 } } }
JSON

# One warm-up run of each (page cache, server buffers), then RUNS timed runs, interleaved.
psql_ -c "\\copy ($query) TO '$work/psql.csv' CSV HEADER"
"$exe" "$url" "$query" "$work/out" >/dev/null

BASELINE_EXE=${BASELINE_EXE:-}
psql_times=()
pkg_times=()
cli_times=()
base_times=()
pkg_rss=0
for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$work/t" \
        "$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "\\copy ($query) TO '$work/psql.csv' CSV HEADER"
    psql_times+=("$(cut -d' ' -f1 "$work/t")")
    /usr/bin/time -f "%e %M" -o "$work/t" "$exe" "$url" "$query" "$work/out" >/dev/null
    pkg_times+=("$(cut -d' ' -f1 "$work/t")")
    rss=$(cut -d' ' -f2 "$work/t")
    [ "$rss" -gt "$pkg_rss" ] && pkg_rss=$rss
    /usr/bin/time -f "%e %M" -o "$work/t" "$idlink" -q --config "$work/conf" --work "$work/cli" export --connection Bench
    cli_times+=("$(cut -d' ' -f1 "$work/t")")
    if [ -n "$BASELINE_EXE" ]; then
        mkdir -p "$work/base"
        /usr/bin/time -f "%e %M" -o "$work/t" "$BASELINE_EXE" "$url" "$query" "$work/base" >/dev/null
        base_times+=("$(cut -d' ' -f1 "$work/t")")
    fi
done

lines_psql=$(wc -l <"$work/psql.csv")
lines_pkg=$(wc -l <"$work/out/bench.csv")
if [ "$lines_psql" != "$lines_pkg" ]; then
    echo "row counts differ: psql $lines_psql lines, package $lines_pkg lines" >&2
    exit 1
fi

python3 - "$MAX_RATIO" "$MAX_RSS_KIB" "$pkg_rss" "$ROWS" "${psql_times[*]}" "${pkg_times[*]}" "$work/out/bench.csv" "${cli_times[*]}" "${base_times[*]}" <<'PY'
import statistics, sys
max_ratio, max_rss, rss, rows = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
psql = [float(x) for x in sys.argv[5].split()]
pkg = [float(x) for x in sys.argv[6].split()]
cli = [float(x) for x in sys.argv[8].split()]
with open(sys.argv[7]) as f:
    head = [next(f).rstrip("\n") for _ in range(2)]
p, k = statistics.median(psql), statistics.median(pkg)
ratio = k / p if p > 0 else float("inf")
print(f"rows:              {rows} x 8 columns")
print(f"sample row:        {head[1]}")
print(f"psql \\copy:        {p:.2f} s (median of {psql})")
print(f"package export:    {k:.2f} s (median of {pkg})")
print(f"ratio:             {ratio:.2f} (goal <= {max_ratio})")
c = statistics.median(cli)
print(f"idlink export:     {c:.2f} s (median of {cli}; the CLI with configuration check and atomic commit), ratio {c / p:.2f}")
if len(sys.argv) > 9 and sys.argv[9].strip():
    base = [float(x) for x in sys.argv[9].split()]
    b = statistics.median(base)
    print(f"baseline build:    {b:.2f} s (median of {base}), ratio {b / p:.2f}; this build / baseline {k / b:.2f}")
print(f"package peak RSS:  {rss / 1024:.1f} MiB (goal <= {max_rss / 1024:.0f} MiB)")
ok = ratio <= max_ratio and rss <= max_rss
print("result:            " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
