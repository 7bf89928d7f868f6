#!/usr/bin/env bash
# Benchmark (issues 4 and 8): `idlink export` through the CLI (configuration, staging, atomic
# commit) of a directory like a real one, against `ldapsearch -E pr=1000/noprompt` writing
# LDIF to a file, run in the same script on the same private slapd:
#   - ENTRIES people (default 100,000): non-ASCII names, 2% with escaped characters in their
#     DN (`\,` `\+` `\<` `\>` `\"` `\;` `\=` `\\`), 1% with a binary jpegPhoto of 2 to 8 KB;
#   - 100 groups (groupOfNames), each with ENTRIES/100 members.
# Two cases, each against ldapsearch reading the same attributes:
#   - with mappings (an entity type mapping of 8 columns, and the member association):
#     goal <= 1.2 x ldapsearch of those attributes;
#   - with no mapping (every user attribute, `Usercube.LDAP` reads the directory once):
#     goal <= 1.5 x ldapsearch of every attribute.
# idlink's peak RSS must stay <= 64 MiB. Prints the ratios; exits 1 when a goal is missed.
#
#   bench/export_ldap.sh                       # ENTRIES=100000 RUNS=5
#   ENTRIES=20000 RUNS=1 bench/export_ldap.sh
# Also times the package alone (examples/export_ldap.rs), for comparison.
set -euo pipefail

ENTRIES=${ENTRIES:-100000}
RUNS=${RUNS:-5}
MAX_RATIO_MAPPED=${MAX_RATIO_MAPPED:-1.2}
MAX_RATIO_ALL=${MAX_RATIO_ALL:-1.5}
MAX_RSS_KIB=${MAX_RSS_KIB:-65536}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-ldap.XXXXXX)
trap 'stop_slapd; rm -rf "$work"' EXIT
# A private slapd in $work (need, start_slapd, stop_slapd, $admin, $pw, $port).
# shellcheck source=bench/slapd.sh
source "$root/bench/slapd.sh"

echo "building idlink and the example (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-packages --example export_ldap && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
idlink="$target/release/idlink"
exe="$target/release/examples/export_ldap"

echo "generating and loading $ENTRIES entries and 100 groups..."
python3 - "$ENTRIES" >"$work/data.ldif" <<'PY'
import base64, random, sys
n = int(sys.argv[1])
rnd = random.Random(8)
w = sys.stdout.write
SUFFIX = "dc=example,dc=org"

def line(attr, value):
    """An LDIF line; base64 when the value is not a safe ASCII string (RFC 2849)."""
    if isinstance(value, bytes):
        return f"{attr}:: {base64.b64encode(value).decode()}\n"
    safe = value.isascii() and value == value.strip() and not value.startswith((":", "<")) \
        and "\n" not in value
    if safe:
        return f"{attr}: {value}\n"
    return f"{attr}:: {base64.b64encode(value.encode()).decode()}\n"

def esc(v):
    """An RDN value escaped as RFC 4514 writes it."""
    out = []
    for c in v:
        if c in ',+"\\<>;=':
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)

given = ["Zoë", "José", "Łukasz", "Øyvind", "Renée", "Jürgen", "Ana", "John", "Åsa", "Иван", "李", "Chloé"]
family = ["Ærø", "Müller", "Nuñez", "O'Brien", "Smith", "Dvořák", "Øst", "Łęcki", "Петров", "王", "Doe", "Brontë"]
tricky = ["Smith, John", "A+B Lab", "Lee <Ops>", 'Say "Hi"', "back\\slash", "semi;colon", "x=y"]

w(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
w(f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n")
w(f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n")
dns = []
for i in range(n):
    g, f = given[i % len(given)], family[(i // 7) % len(family)]
    uid = f"user{i:06d}"
    if i % 50 == 7:  # 2%: an escaped DN
        cn = f"{tricky[i % len(tricky)]} {i}"
        dn = f"cn={esc(cn)},ou=people,{SUFFIX}"
    else:
        cn = f"{g} {f} {i}"
        dn = f"uid={uid},ou=people,{SUFFIX}"
    dns.append(dn)
    e = line("dn", dn)
    e += "objectClass: inetOrgPerson\n"
    e += line("uid", uid) + line("cn", cn) + line("sn", f) + line("givenName", g)
    e += f"mail: {uid}@example.org\nmail: u{i}@mail.example.org\nemployeeNumber: {i}\n"
    e += f"telephoneNumber: +1 555 {i % 10000:04d}\n"
    e += line("description", f"entrée générée {i} pour le banc d'essai")
    e += f"departmentNumber: {i % 100}\ntitle: Engineer {i % 13}\n"
    if i % 100 == 42:  # 1%: a binary photo of 2 to 8 KB
        size = rnd.randint(2048, 8192)
        e += line("jpegPhoto", b"\xff\xd8\xff\xe0" + rnd.randbytes(size - 6) + b"\xff\xd9")
    w(e + "\n")
for gi in range(100):
    e = f"dn: cn=group{gi:03d},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: group{gi:03d}\n"
    e += line("description", f"Groupe n°{gi}")
    members = dns[gi::100] or [dns[0]]
    e += "".join(line("member", m) for m in members)
    w(e + "\n")
PY
start_slapd "$work/data.ldif"

mapped_attrs="uid cn sn givenName mail employeeNumber title jpegPhoto member"
mkdir -p "$work/conf-mapped" "$work/conf-all" "$work/out"
# The two configurations: one connection "Bench" (Usercube.LDAP), with and without mappings.
settings() {
    cat <<JSON
{ "Connections": { "Bench": {
    "Servers": [{ "Server": "127.0.0.1:$port", "AuthType": "Basic", "Login": "$admin", "Password": "$pw",
                  "Controls": ["PagedResult"] }],
    "Tables": [{ "Table": "entries", "BaseDN": "dc=example,dc=org", "Filter": "(objectClass=*)", "Scope": "Subtree" }],
    "TimeOut": 0 } } }
JSON
}
settings >"$work/conf-mapped/appsettings.agent.json"
settings >"$work/conf-all/appsettings.agent.json"
cat >"$work/conf-all/bench.xml" <<XML
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Bench" DisplayName_L1="Bench" />
  <Connection Identifier="Bench" DisplayName_L1="Bench" Connector="Bench" Package="Usercube.LDAP@0000001" />
</ConfigurationFile>
XML
cat >"$work/conf-mapped/bench.xml" <<XML
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="Bench" DisplayName_L1="Bench" />
  <Connection Identifier="Bench" DisplayName_L1="Bench" Connector="Bench" Package="Usercube.LDAP@0000001" />
  <ConnectionTable Connection="Bench" Identifier="Bench_entries" DisplayName="Entries">
    <Column Identifier="dn" KeyType="1" />
    <Column Identifier="uid" KeyType="2" />
    <Column Identifier="cn" />
    <Column Identifier="sn" />
    <Column Identifier="givenName" />
    <Column Identifier="mail" IsMultivalued="true" />
    <Column Identifier="employeeNumber" />
    <Column Identifier="title" />
    <Column Identifier="jpegPhoto" ValueType="Binary" />
  </ConnectionTable>
  <ConnectionTable Connection="Bench" Identifier="Bench_member" DisplayName="Group members">
    <Column Identifier="dn" />
    <Column Identifier="member" />
  </ConnectionTable>
  <EntityType Identifier="Bench_Entry" DisplayName_L1="Entry">
    <Property Identifier="dn" DisplayName_L1="DN" IsKey="true" />
    <Property Identifier="uid" DisplayName_L1="uid" />
    <Property Identifier="cn" DisplayName_L1="cn" />
    <Property Identifier="sn" DisplayName_L1="sn" />
    <Property Identifier="givenName" DisplayName_L1="givenName" />
    <Property Identifier="mail" DisplayName_L1="mail" />
    <Property Identifier="employeeNumber" DisplayName_L1="employeeNumber" />
    <Property Identifier="title" DisplayName_L1="title" />
    <Property Identifier="jpegPhoto" DisplayName_L1="jpegPhoto" Type="Binary" />
    <Property Identifier="members" DisplayName_L1="Members" Type="ForeignKey" />
    <Property Identifier="memberOf" DisplayName_L1="Member of" Type="ForeignKey" />
  </EntityType>
  <EntityAssociation Identifier="Bench_Entry_Members" DisplayName_L1="Membership"
                     Property1="Bench_Entry:members" Property2="Bench_Entry:memberOf"
                     IsProperty1Collection="true" IsProperty2Collection="true" />
  <EntityTypeMapping Identifier="Bench_Entry" Connector="Bench" ConnectionTable="Bench_entries">
    <Property Identifier="dn" ConnectionColumn="dn" IsPrimaryKey="true" />
    <Property Identifier="uid" ConnectionColumn="uid" IsUniqueKey="true" />
    <Property Identifier="cn" ConnectionColumn="cn" />
    <Property Identifier="sn" ConnectionColumn="sn" />
    <Property Identifier="givenName" ConnectionColumn="givenName" />
    <Property Identifier="mail" ConnectionColumn="mail" />
    <Property Identifier="employeeNumber" ConnectionColumn="employeeNumber" />
    <Property Identifier="title" ConnectionColumn="title" />
    <Property Identifier="jpegPhoto" ConnectionColumn="jpegPhoto" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Bench_Entry_Members" Connector="Bench" ConnectionTable="Bench_member"
                            Column1="dn" EntityPropertyMapping1="Bench_Entry:dn"
                            Column2="member" EntityPropertyMapping2="Bench_Entry:dn" />
</ConfigurationFile>
XML

ldapsearch_() { # ldapsearch_ OUTPUT [ATTRIBUTES...]
    local out=$1; shift
    ldapsearch -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -b "dc=example,dc=org" \
        -E pr=1000/noprompt -LLL '(objectClass=*)' "$@" >"$out"
}
# shellcheck disable=SC2086
ls_mapped() { ldapsearch_ "$work/ls-mapped.ldif" $mapped_attrs; }
ls_all() { ldapsearch_ "$work/ls-all.ldif"; }
cli() { "$idlink" -q --config "$work/conf-$1" --work "$work/cli-$1" export --connection Bench >/dev/null; }
pkg_all() { IDLINK_LDAP_PASSWORD="$pw" "$exe" "127.0.0.1:$port" "$admin" "dc=example,dc=org" '(objectClass=*)' "$work/out" >/dev/null; }

# timed NAME COMMAND...: appends "seconds" to $work/NAME.times and the peak RSS to $work/NAME.rss.
timed() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" </dev/null 2>"$work/err" || { cat "$work/err" "$work/t" >&2; exit 1; }
    cut -d' ' -f1 "$work/t" >>"$work/$name.times"
    cut -d' ' -f2 "$work/t" >>"$work/$name.rss"
}
export -f ldapsearch_ ls_mapped ls_all cli pkg_all
export work port admin pw idlink exe mapped_attrs

# One warm-up run of each (page cache, server caches), then RUNS timed runs, interleaved.
ls_mapped; ls_all; cli mapped; cli all; pkg_all
for _ in $(seq "$RUNS"); do
    timed ls_mapped bash -c ls_mapped
    timed cli_mapped bash -c 'cli mapped'
    timed ls_all bash -c ls_all
    timed cli_all bash -c 'cli all'
    timed pkg_all bash -c pkg_all
done

count_dn() { grep -c '^dn:' "$1"; }
csv_rows() { python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline="", encoding="utf-8"))) - 1)' "$1"; }
n_ls=$(count_dn "$work/ls-all.ldif")
for c in mapped all; do
    n_cli=$(csv_rows "$work/cli-$c/ExportOutput/Bench_entries.csv")
    if [ "$n_ls" != "$n_cli" ]; then
        echo "entry counts differ ($c): ldapsearch $n_ls, idlink $n_cli" >&2
        exit 1
    fi
done
# `member:` and base64 `member::` lines (continuation lines start with a space).
n_members=$(grep -c '^member:' "$work/ls-all.ldif" || true)
n_member_rows=$(csv_rows "$work/cli-mapped/ExportOutput/Bench_member.csv")

python3 - "$work" "$MAX_RATIO_MAPPED" "$MAX_RATIO_ALL" "$MAX_RSS_KIB" "$n_ls" \
    "$n_members" "$n_member_rows" <<'PY'
import os, statistics, sys
work, max_mapped, max_all, max_rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
n, members, member_rows = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
def times(name):
    return [float(x) for x in open(os.path.join(work, name + ".times")).read().split()]
def rss(name):
    return max(int(x) for x in open(os.path.join(work, name + ".rss")).read().split())
med = {k: statistics.median(times(k)) for k in ["ls_mapped", "cli_mapped", "ls_all", "cli_all", "pkg_all"]}
r_mapped = med["cli_mapped"] / med["ls_mapped"]
r_all = med["cli_all"] / med["ls_all"]
peak = max(rss("cli_mapped"), rss("cli_all"))
out = os.path.join(work, "cli-all", "ExportOutput")
print(f"entries:                      {n} (member values {members}, member rows {member_rows})")
for f in sorted(os.listdir(out)):
    print(f"table (no mapping):           {f} ({os.path.getsize(os.path.join(out, f))} bytes)")
print(f"ldapsearch pr=1000, mapped:   {med['ls_mapped']:.2f} s (median of {times('ls_mapped')})")
print(f"idlink export, mapped:        {med['cli_mapped']:.2f} s (median of {times('cli_mapped')})")
print(f"ratio, mapped:                {r_mapped:.2f} (goal <= {max_mapped})")
print(f"ldapsearch pr=1000, all:      {med['ls_all']:.2f} s (median of {times('ls_all')})")
print(f"idlink export, no mapping:    {med['cli_all']:.2f} s (median of {times('cli_all')})")
print(f"ratio, no mapping:            {r_all:.2f} (goal <= {max_all})")
print(f"package alone, no mapping:    {med['pkg_all']:.2f} s (example export_ldap), ratio {med['pkg_all'] / med['ls_all']:.2f}")
print(f"idlink peak RSS:              {peak / 1024:.1f} MiB (goal <= {max_rss / 1024:.0f} MiB)")
ok = r_mapped <= max_mapped and r_all <= max_all and peak <= max_rss and members == member_rows
if members != member_rows:
    print(f"member rows differ from ldapsearch's member values: {member_rows} vs {members}")
print("result:                       " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
