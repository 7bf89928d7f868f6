#!/usr/bin/env bash
# CSV export throughput (issue P2): generates ROWS rows x 10 columns (default 1,000,000, about
# 150 MB) of Windows-1252 text with accented letters and quoted fields, exports it with the
# Usercube.CSV package (re-encoding to UTF-8, release build, through the `export_csv` example:
# settings parsed, file found under SourcesRootPaths, decoded, parsed, written and fsynced as
# the export runner would), and compares with a plain re-encode by iconv measured in the same
# run. Each side runs RUNS times (default 5); the best wall time counts (the machine is shared).
#
# Goals: >= 200 MB/s (input bytes / wall seconds, MB = 10^6 bytes) and peak RSS <= 64 MiB.
# Exits 1 when either is missed.
#
#   bench/export_csv.sh [ROWS [RUNS]]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
runs=${2:-5}
goal_mbps=200
goal_rss_kib=$((64 * 1024))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/data" "$work/out"
src="$work/data/people.csv"

cargo build --release -q -p idlink-packages --example export_csv
cargo build --release -q -p idlink-cli
bin=${CARGO_TARGET_DIR:-target}/release/examples/export_csv
idlink=${CARGO_TARGET_DIR:-target}/release/idlink

python3 - "$src" "$rows" <<'PY'
import random, sys
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
first = ["Hélène", "Jürgen", "Zoë", "André", "Ana", "François", "Björn", "Søren", "Mónica",
         "José", "Noël", "Chloé", "Günther", "Inès", "Lukas", "Renée",
         "Ole", "Jean", "Marie", "Paul", "Anne", "Pierre", "Sophie", "Thomas"]
last = ["Lefèvre", "Müller", "O'Neil", "Muñoz", "Dupont", "Weiß", "Ångström", "García",
        "Martin", "Bernard", "Dubois", "Durand", "Moreau", "Laurent", "Simon", "Petit",
        "Schröder", "Núñez", "Fontaine", "Rousseau"]
departments = ["Comptabilité", "R&D", '"Sales, EMEA"', "Ressources humaines", "IT",
               '"Legal, Compliance"', "Logistique", "Marketing", "Direction générale"]
titles = ["Ingénieur", "Analyste", "Chef de projet", "Directeur", "Assistant(e)",
          "Développeur", '"Manager, Operations"', "Comptable"]
cities = ["75008 Paris", "69002 Lyon", "80331 München", "8001 Zürich", "1201 Genève",
          "211 20 Malmö", "31-000 Kraków", "01000 São Paulo", "25000 Besançon", "45000 Orléans",
          "50667 Köln"]
notes = ["", '"bureau 3, étage 2"', "contrat à durée indéterminée", "à revoir", '"dit ""Bob"", contractuel"', "temps partiel",
         '"prime: 1 500 €, brut"', "télétravail", '"deux, valeurs"']
# Every quoted field above needs its quotes (a comma or a quote inside), so the exported table
# is iconv's output byte for byte, CRLF line ends aside: the script checks it.
with open(path, "w", encoding="cp1252", newline="") as f:
    f.write("Id,FirstName,LastName,Mail,Department,Title,City,Phone,HireDate,Note\r\n")
    buf = []
    for i in range(rows):
        fn, ln = rng.choice(first), rng.choice(last)
        mail = f"{fn}.{ln}.{i % 97}@entreprise-exemple.fr".lower().replace("'", "")
        buf.append(
            f"{i:07d},{fn},{ln},{mail},{rng.choice(departments)},{rng.choice(titles)},"
            f"{rng.choice(cities)},+33 (0)1 {rng.randrange(10**8):08d},"
            f"20{rng.randrange(10, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T09:00:00,"
            f"{rng.choice(notes)}\r\n"
        )
        if len(buf) == 10000:
            f.write("".join(buf))
            buf = []
    f.write("".join(buf))
PY
bytes=$(stat -c %s "$src")
echo "input: $rows rows, $bytes bytes of Windows-1252 ($(python3 -c "print(round($bytes/1e6, 1))") MB)"

# Runs "$@" RUNS times; sets best_s (wall seconds) and peak_kib (max RSS over the runs).
measure() {
  best_s=""
  peak_kib=0
  for _ in $(seq "$runs"); do
    rm -f "$work"/out/*
    local start end s rss
    start=$(date +%s%N)
    /usr/bin/time -f %M -o "$work/rss" "$@" > "$work/stdout"
    end=$(date +%s%N)
    s=$(python3 -c "print(($end - $start) / 1e9)")
    rss=$(tail -n 1 "$work/rss")
    if [ -z "$best_s" ] || python3 -c "import sys; sys.exit(0 if $s < $best_s else 1)"; then
      best_s=$s
    fi
    if [ "$rss" -gt "$peak_kib" ]; then peak_kib=$rss; fi
  done
}

# Warm the page cache so both sides read from memory.
cat "$src" > /dev/null

measure sh -c "iconv -f WINDOWS-1252 -t UTF-8 '$src' > '$work/out/iconv.csv'"
ref_s=$best_s
ref_rss=$peak_kib

measure "$bin" "$src" "$work/out" Windows-1252 ,
ours_s=$best_s
ours_rss=$peak_kib
cat "$work/stdout"

# The table must hold every row, re-encoded: compare with iconv's output (CRLF -> LF aside).
iconv -f WINDOWS-1252 -t UTF-8 "$src" | tr -d '\r' | cmp -s - "$work/out/Bench.csv" \
  || { echo "FAIL: the exported table differs from iconv's re-encoding"; exit 1; }

# The same export through the CLI: a one-connection configuration beside the data.
cat > "$work/bench.xml" <<XML
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Bench" DisplayName_L1="Bench" />
  <Connection Identifier="Bench" DisplayName_L1="Bench" Connector="Bench" Package="Usercube.CSV@0000001" />
  <Connection Identifier="Photos" DisplayName_L1="Photos" Connector="Bench" Package="Usercube.CSV@0000001" />
</ConfigurationFile>
XML
cat > "$work/appsettings.agent.json" <<JSON
{ "SourcesRootPaths": ["data"], "Connections": { "Bench": { "Path": "data/people.csv", "Encoding": "Windows-1252" },
  "Photos": { "Path": "data/photos.csv" } } }
JSON
measure "$idlink" -q --config "$work" --work "$work/cli" export --connection Bench
cli_s=$best_s

# Wide rows: WIDE_ROWS people (default 2,000) with a 60 KB photo each (base64), through the
# CLI: the memory must not follow the rows' width (the same RSS goal).
python3 - "$work/data/photos.csv" "${WIDE_ROWS:-2000}" <<'PY'
import base64, random, sys
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
with open(path, "w") as f:
    f.write("EmployeeId,Login,Photo\n")
    for i in range(rows):
        photo = base64.b64encode(rng.randbytes(45000)).decode()
        f.write(f"{i:07d},user{i},{photo}\n")
PY
wide_bytes=$(stat -c %s "$work/data/photos.csv")
runs=1 measure "$idlink" -q --config "$work" --work "$work/cli" export --connection Photos
wide_s=$best_s
wide_rss=$peak_kib

python3 - "$bytes" "$ours_s" "$ours_rss" "$ref_s" "$ref_rss" "$goal_mbps" "$goal_rss_kib" "$cli_s" \
    "$wide_bytes" "$wide_s" "$wide_rss" <<'PY'
import sys
size, ours, ours_rss, ref, ref_rss, goal, goal_rss, cli, wide, wide_s, wide_rss = (float(x) for x in sys.argv[1:])
mbps, ref_mbps = size / 1e6 / ours, size / 1e6 / ref
print(f"idlink CSV export : {ours:.3f} s  {mbps:7.1f} MB/s  peak RSS {ours_rss / 1024:.1f} MiB")
print(f"iconv re-encode   : {ref:.3f} s  {ref_mbps:7.1f} MB/s  peak RSS {ref_rss / 1024:.1f} MiB")
print(f"ratio             : export takes {ours / ref:.2f}x iconv's time ({mbps / ref_mbps:.2f}x its throughput)")
print(f"idlink export     : {cli:.3f} s  {size / 1e6 / cli:7.1f} MB/s  (the CLI: configuration check, staging, atomic commit)")
print(f"wide rows (photos): {wide_s:.3f} s  {wide / 1e6 / wide_s:7.1f} MB/s  peak RSS {wide_rss / 1024:.1f} MiB  ({wide / 1e6:.0f} MB, the CLI)")
ok = True
if wide_rss > goal_rss:
    print(f"FAIL: peak RSS {wide_rss / 1024:.1f} MiB on wide rows is above the goal of {goal_rss / 1024:.0f} MiB"); ok = False
if mbps < goal:
    print(f"FAIL: {mbps:.1f} MB/s is below the goal of {goal:.0f} MB/s"); ok = False
if ours_rss > goal_rss:
    print(f"FAIL: peak RSS {ours_rss / 1024:.1f} MiB is above the goal of {goal_rss / 1024:.0f} MiB"); ok = False
print("OK: goals met" if ok else "goals missed")
sys.exit(0 if ok else 1)
PY
