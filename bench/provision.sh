#!/usr/bin/env bash
# Benchmark (issue 12), through the `idlink` CLI:
#  1. Order generation: OWNERS (100,000) HR people synchronized into a SQLite store, then
#     `idlink provision` computes and stores one Added order per person (dn, uid, cn, names,
#     mail by rules and expressions, the department through the organization association).
#     Goal: <= 3 s.
#  2. New hires: HIRES (10,000) people in the HR CSV provisioned into a private slapd by
#     `idlink run-job` (export HR, sync HR, export the directory, sync it, compute the orders,
#     fulfill over LDAP, export the directory again, sync it: every order Verified), against
#     `ldapadd -f` of the equivalent LDIF plus the HR sync alone (`idlink sync`), in the same
#     script. Goal: run-job <= 1.3 x (ldapadd + sync).
# Prints the figures and the ratios; exits 1 when a goal is missed.
#
#   bench/provision.sh
#   OWNERS=20000 HIRES=2000 bench/provision.sh
set -euo pipefail

OWNERS=${OWNERS:-100000}
HIRES=${HIRES:-10000}
MAX_GENERATION_SECONDS=${MAX_GENERATION_SECONDS:-3}
MAX_RATIO=${MAX_RATIO:-1.3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/idlink-bench-provision.XXXXXX)
trap 'stop_slapd; rm -rf "$work"' EXIT
# A private slapd in $work (need, start_slapd, stop_slapd, $admin, $pw, $port).
# shellcheck source=bench/slapd.sh
source "$root/bench/slapd.sh"

echo "building idlink (release)..."
(cd "$root" && cargo build --release --quiet -p idlink-cli)
target=${CARGO_TARGET_DIR:-$root/target}
idlink="$target/release/idlink"

# conf DIR: the configuration (HR CSV -> store; directory accounts by rules; the Bench job).
conf() {
    mkdir -p "$1/data"
    cat >"$1/hr.xml" <<'XML'
<ConfigurationFile xmlns="urn:schemas-usercube-com:configuration">
  <Connector Identifier="HR" DisplayName_L1="HR" />
  <Connection Identifier="HRPeople" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
  <Connection Identifier="HROrgs" DisplayName_L1="Organizations" Connector="HR" Package="Usercube.CSV@0000001" />
  <EntityType Identifier="Person" DisplayName_L1="Person">
    <Property Identifier="EmployeeId" DisplayName_L1="Employee ID" IsKey="true" />
    <Property Identifier="FirstName" DisplayName_L1="First name" />
    <Property Identifier="LastName" DisplayName_L1="Last name" />
    <Property Identifier="Email" DisplayName_L1="Email" />
    <Property Identifier="Title" DisplayName_L1="Title" />
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
    <Property Identifier="FirstName" ConnectionColumn="FirstName" />
    <Property Identifier="LastName" ConnectionColumn="LastName" />
    <Property Identifier="Email" ConnectionColumn="Email" />
    <Property Identifier="Title" ConnectionColumn="Title" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="Org" Connector="HR" ConnectionTable="HROrgs">
    <Property Identifier="Code" ConnectionColumn="Code" IsPrimaryKey="true" />
    <Property Identifier="Name" ConnectionColumn="Name" />
  </EntityTypeMapping>
  <EntityAssociationMapping Identifier="Person_Org" Connector="HR" ConnectionTable="HRPeople"
                            Column1="EmployeeId" EntityPropertyMapping1="Person:EmployeeId"
                            Column2="OrgCode" EntityPropertyMapping2="Org:Code" />

  <Connector Identifier="Directory" DisplayName_L1="Directory" />
  <Connection Identifier="Dir" DisplayName_L1="Directory" Connector="Directory" Package="Usercube.LDAP@0000001" />
  <EntityType Identifier="Entry" DisplayName_L1="Entry">
    <Property Identifier="dn" DisplayName_L1="DN" IsKey="true" />
    <Property Identifier="uid" DisplayName_L1="uid" />
    <Property Identifier="cn" DisplayName_L1="cn" />
    <Property Identifier="givenName" DisplayName_L1="givenName" />
    <Property Identifier="sn" DisplayName_L1="sn" />
    <Property Identifier="mail" DisplayName_L1="mail" />
    <Property Identifier="title" DisplayName_L1="title" />
    <Property Identifier="departmentNumber" DisplayName_L1="departmentNumber" />
  </EntityType>
  <EntityTypeMapping Identifier="Entry" Connector="Directory" ConnectionTable="Dir_entries">
    <Property Identifier="dn" ConnectionColumn="dn" IsPrimaryKey="true" />
    <Property Identifier="uid" ConnectionColumn="uid" />
    <Property Identifier="cn" ConnectionColumn="cn" />
    <Property Identifier="givenName" ConnectionColumn="givenName" />
    <Property Identifier="sn" ConnectionColumn="sn" />
    <Property Identifier="mail" ConnectionColumn="mail" />
    <Property Identifier="title" ConnectionColumn="title" />
    <Property Identifier="departmentNumber" ConnectionColumn="departmentNumber" />
  </EntityTypeMapping>

  <ResourceType Identifier="Account" DisplayName_L1="Directory account" SourceEntityType="Person"
                TargetEntityType="Entry" AllowAdd="true" AllowRemove="true">
    <ScalarRule Property="dn" Expression="'uid=' + lower(EmployeeId) + ',ou=people,dc=example,dc=org'" />
    <ScalarRule Property="uid" Expression="lower(EmployeeId)" />
    <ScalarRule Property="cn" Expression="FirstName + ' ' + LastName" />
    <ScalarRule Property="givenName" Binding="FirstName" />
    <ScalarRule Property="sn" Binding="LastName" />
    <ScalarRule Property="mail" Binding="Email" />
    <ScalarRule Property="title" Binding="Title" />
    <ScalarRule Property="departmentNumber" Binding="Organization.Name" />
  </ResourceType>
  <ResourceCorrelationRule ResourceType="Account" TargetBinding="uid" SourceExpression="lower(EmployeeId)" />
  <LdapResourceTypeMapping Identifier="Account" Connection="Dir" DefaultObjectClass="inetOrgPerson" />

  <Job Identifier="Hires" DisplayName_L1="New hires">
    <ExportTask DisplayName_L1="Export HR people" Connection="HRPeople" />
    <ExportTask DisplayName_L1="Export HR organizations" Connection="HROrgs" />
    <PrepareSynchronizationTask DisplayName_L1="Prepare HR" Connector="HR" SynchronizationMode="Complete" />
    <SynchronizeTask DisplayName_L1="Synchronize HR" Connector="HR" />
    <ExportTask DisplayName_L1="Export the directory" Connection="Dir" />
    <PrepareSynchronizationTask DisplayName_L1="Prepare the directory" Connector="Directory" SynchronizationMode="Complete" />
    <SynchronizeTask DisplayName_L1="Synchronize the directory" Connector="Directory" />
    <GenerateProvisioningOrdersTask DisplayName_L1="Compute the accounts" ResourceTypes="Account" />
    <FulfillTask DisplayName_L1="Create the accounts"><TaskResourceType ResourceType="Account" /></FulfillTask>
    <ExportTask DisplayName_L1="Read the directory back" Connection="Dir" />
    <PrepareSynchronizationTask DisplayName_L1="Prepare the directory again" Connector="Directory" SynchronizationMode="Complete" />
    <SynchronizeTask DisplayName_L1="Verify" Connector="Directory" />
  </Job>
</ConfigurationFile>
XML
    cat >"$1/appsettings.agent.json" <<JSON
{
  "SourcesRootPaths": ["data"],
  "Connections": {
    "HRPeople": { "Path": "data/people.csv" },
    "HROrgs": { "Path": "data/orgs.csv" },
    "Dir": {
      "Servers": [{ "Server": "127.0.0.1:$port", "AuthType": "Basic", "Login": "$admin", "Password": "$pw",
                    "Controls": ["PagedResult"] }],
      "Tables": [{ "Table": "entries", "BaseDN": "ou=people,dc=example,dc=org", "Filter": "(objectClass=inetOrgPerson)", "Scope": "OneLevel" }]
    }
  }
}
JSON
}

# people N DIR: N people (1,000 organizations) as the HR CSV, and the same people as LDIF.
people() {
    python3 - "$1" "$2" <<'PY'
import random, sys
n, out = int(sys.argv[1]), sys.argv[2]
random.seed(12)
first = ["Ada", "Alan", "Grace", "Édith", "Linus", "Margaret", "Søren", "Barbara", "Dennis", "Ken"]
last = ["Lovelace", "Turing", "Hopper", "Piaf", "Torvalds", "Hamilton", "Kierkegaard", "Liskov"]
titles = ["Engineer", "Manager", "Analyst", "Designer", "Clerk"]
with open(f"{out}/data/orgs.csv", "w") as f:
    f.write("Code,Name\n")
    for o in range(1000):
        f.write(f"O{o:04d},Department {o}\n")
with open(f"{out}/data/people.csv", "w") as p, open(f"{out}/hires.ldif", "w") as l:
    p.write("EmployeeId,FirstName,LastName,Email,Title,OrgCode\n")
    for i in range(n):
        fn, ln, t, o = random.choice(first), random.choice(last), random.choice(titles), random.randrange(1000)
        eid = f"E{i:07d}"
        mail = f"{eid.lower()}@example.org"
        p.write(f"{eid},{fn},{ln},{mail},{t},O{o:04d}\n")
        l.write(f"dn: uid={eid.lower()},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
                f"uid: {eid.lower()}\ncn: {fn} {ln}\ngivenName: {fn}\nsn: {ln}\nmail: {mail}\n"
                f"title: {t}\ndepartmentNumber: Department {o}\n\n")
with open(f"{out}/base.ldif", "w") as f:
    f.write("dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
    f.write("dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n")
PY
}

fresh_slapd() {
    stop_slapd
    rm -rf "$work/data"
    mkdir -p "$work/data"
    start_slapd "$work/gen/base.ldif"
}
count() {
    ldapsearch -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -b "ou=people,dc=example,dc=org" \
        -LLL -s one '(objectClass=inetOrgPerson)' 1.1 | grep -c '^dn:' || true
}
# timed CMD...: runs CMD (its output to $work/out), prints its wall seconds; peak RSS in $work/t.
timed() {
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
    cut -d' ' -f1 "$work/t"
}

# --- 1. order generation for OWNERS people ---
echo "generating $OWNERS people..."
mkdir -p "$work/gen"
conf "$work/gen"
people "$OWNERS" "$work/gen"
fresh_slapd
g="$work/gen"
"$idlink" -q --config "$g" --work "$g/work" export --connection HRPeople >/dev/null
"$idlink" -q --config "$g" --work "$g/work" export --connection HROrgs >/dev/null
"$idlink" -q --config "$g" --work "$g/work" sync --connector HR --mode initial >/dev/null
gen_s=$(timed "$idlink" -q --config "$g" --work "$g/work" provision --resource-type Account)
gen_rss=$(cut -d' ' -f2 "$work/t")
stored=$("$idlink" -q --config "$g" --work "$g/work" orders --state Pending --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$stored" = "$OWNERS" ] || { echo "provision stored $stored orders, not $OWNERS" >&2; exit 1; }

# --- 2. HIRES new hires into slapd: run-job against ldapadd + the sync alone ---
echo "generating $HIRES new hires..."
rm -rf "$work/gen"
mkdir -p "$work/gen"
conf "$work/gen"
people "$HIRES" "$work/gen"
fresh_slapd
ref_add=$(timed ldapadd -x -H "ldap://127.0.0.1:$port" -D "$admin" -w "$pw" -f "$g/hires.ldif")
[ "$(count)" = "$HIRES" ] || { echo "ldapadd did not add $HIRES entries" >&2; exit 1; }
"$idlink" -q --config "$g" --work "$g/ref" export --connection HRPeople >/dev/null
"$idlink" -q --config "$g" --work "$g/ref" export --connection HROrgs >/dev/null
ref_sync=$(timed "$idlink" -q --config "$g" --work "$g/ref" sync --connector HR --mode initial)
fresh_slapd
job_s=$(timed "$idlink" -q --config "$g" --work "$g/job" run-job Hires)
job_rss=$(cut -d' ' -f2 "$work/t")
[ "$(count)" = "$HIRES" ] || { echo "run-job did not add $HIRES entries" >&2; exit 1; }
verified=$("$idlink" -q --config "$g" --work "$g/job" orders --state Verified --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$verified" = "$HIRES" ] || { echo "$verified of $HIRES orders Verified" >&2; exit 1; }

python3 - "$OWNERS" "$gen_s" "$gen_rss" "$MAX_GENERATION_SECONDS" "$HIRES" "$ref_add" "$ref_sync" "$job_s" "$job_rss" "$MAX_RATIO" <<'PY'
import sys
owners, gen, gen_rss, max_gen = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hires, add, sync, job, job_rss, max_ratio = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]), float(sys.argv[10])
ref = add + sync
ratio = job / ref if ref > 0 else float("inf")
print(f"order generation:   {owners} owners -> {owners} orders stored in {gen:.2f} s "
      f"({owners / gen:,.0f} owners/s), peak RSS {gen_rss / 1024:.1f} MiB (goal <= {max_gen:.0f} s)")
print(f"new hires:          {hires} people, HR CSV -> slapd, every order Verified")
print(f"  ldapadd -f:       {add:.2f} s")
print(f"  idlink sync (HR): {sync:.2f} s")
print(f"  idlink run-job:   {job:.2f} s, peak RSS {job_rss / 1024:.1f} MiB")
print(f"  ratio:            {ratio:.2f} (goal <= {max_ratio})")
ok = gen <= max_gen and ratio <= max_ratio
print("result:             " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
