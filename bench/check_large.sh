#!/usr/bin/env bash
# Generates a configuration of N connectors (default 5,000) and times `idlink check` on it.
# Goal (issue P1): under 2 s on the 2-core machine. Prints wall time and peak RSS; exits 1
# when the goal is missed.
#
#   bench/check_large.sh [CONNECTORS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
goal_ms=2000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo build --release -q -p idlink-cli
bin=${CARGO_TARGET_DIR:-target}/release/idlink

python3 - "$out" "$n" <<'PY'
import json, os, sys
out, n = sys.argv[1], int(sys.argv[2])
per_file = 100
settings = {"SourcesRootPaths": ["data"], "Connections": {}}
ns = 'xmlns="urn:schemas-usercube-com:configuration"'
with open(os.path.join(out, "agents.xml"), "w") as f:
    f.write(f'<?xml version="1.0" encoding="utf-8"?>\n<ConfigurationFile {ns}>\n  <Agent Identifier="Local" DisplayName_L1="Local" />\n</ConfigurationFile>\n')
for start in range(0, n, per_file):
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<ConfigurationFile {ns}>']
    for i in range(start, min(n, start + per_file)):
        c, people, groups = f"C{i:05d}", f"C{i:05d}People", f"C{i:05d}Dir"
        parts.append(f'''  <Connector Identifier="{c}" DisplayName_L1="Connector {i}" Agent="Local" MaximumDeletedLines="50" />
  <Connection Identifier="{people}" DisplayName_L1="People {i}" Connector="{c}" Package="Usercube.CSV@0000001" />
  <Connection Identifier="{groups}" DisplayName_L1="Directory {i}" Connector="{c}" Package="Usercube.LDAP@0000001" />
  <ConnectionTable Connection="{people}" Identifier="{people}">
    <Column Identifier="Id" KeyType="1" /><Column Identifier="First" /><Column Identifier="Last" /><Column Identifier="Mail" /><Column Identifier="Org" />
  </ConnectionTable>
  <ConnectionTable Connection="{groups}" Identifier="{groups}_entries">
    <Column Identifier="dn" KeyType="1" /><Column Identifier="cn" /><Column Identifier="mail" />
  </ConnectionTable>
  <EntityType Identifier="{c}_Person" DisplayName_L1="Person {i}">
    <Property Identifier="Id" IsKey="true" /><Property Identifier="First" /><Property Identifier="Last" />
    <Property Identifier="Mail" /><Property Identifier="Org" />
  </EntityType>
  <EntityType Identifier="{c}_Entry" DisplayName_L1="Entry {i}">
    <Property Identifier="dn" IsKey="true" /><Property Identifier="cn" /><Property Identifier="mail" />
  </EntityType>
  <EntityTypeMapping Identifier="{c}_Person" Connector="{c}" ConnectionTable="{people}">
    <Property Identifier="Id" ConnectionColumn="Id" IsPrimaryKey="true" />
    <Property Identifier="First" ConnectionColumn="First" /><Property Identifier="Last" ConnectionColumn="Last" />
    <Property Identifier="Mail" ConnectionColumn="Mail" IsUniqueKey="true" /><Property Identifier="Org" ConnectionColumn="Org" />
  </EntityTypeMapping>
  <EntityTypeMapping Identifier="{c}_Entry" Connector="{c}" ConnectionTable="{groups}_entries">
    <Property Identifier="dn" ConnectionColumn="dn" IsPrimaryKey="true" />
    <Property Identifier="cn" ConnectionColumn="cn" /><Property Identifier="mail" ConnectionColumn="mail" />
  </EntityTypeMapping>
  <ResourceType Identifier="{c}_Account" SourceEntityType="{c}_Person" TargetEntityType="{c}_Entry">
    <ScalarRule Property="cn" Binding="Last" /><ScalarRule Property="mail" Binding="Mail" />
  </ResourceType>
  <LdapResourceTypeMapping Identifier="{c}_Account" Connection="{groups}" DefaultObjectClass="inetOrgPerson" />
  <Job Identifier="{c}_Job" DisplayName_L1="Job {i}" Agent="Local" CrontabExpression="{i % 60} 5 * * 1-5">
    <ExportTask DisplayName_L1="Export" Connection="{people}" />
    <PrepareSynchronizationTask Connector="{c}" SynchronizationMode="Complete" />
    <SynchronizeTask Connector="{c}" />
    <GenerateProvisioningOrdersTask ResourceTypes="{c}_Account" />
    <FulfillTask DisplayName_L1="Fulfill"><TaskResourceType ResourceType="{c}_Account" /></FulfillTask>
  </Job>''')
        settings["Connections"][people] = {"Path": f"data/{people}.csv", "Separator": ";"}
        settings["Connections"][groups] = {
            "Servers": [{"Server": "ldap://127.0.0.1:389", "AuthType": "Anonymous"}],
            "Tables": [{"Table": "entries", "BaseDN": f"ou={i},dc=example,dc=org", "Scope": "Subtree"}],
        }
    parts.append("</ConfigurationFile>\n")
    with open(os.path.join(out, f"connectors_{start // per_file:03d}.xml"), "w") as f:
        f.write("\n".join(parts))
with open(os.path.join(out, "appsettings.agent.json"), "w") as f:
    json.dump(settings, f, indent=2)
PY

size=$(du -sh "$out" | cut -f1)
files=$(find "$out" -name '*.xml' | wc -l)
echo "configuration: $n connectors, $files XML files, $size"

best=999999
for run in 1 2 3; do
  log=$(mktemp)
  start=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$log.rss" "$bin" check -q --config "$out" >"$log" || { cat "$log"; echo "idlink check failed"; exit 1; }
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  rss_kib=$(cat "$log.rss")
  echo "run $run: ${ms} ms, peak RSS $(( rss_kib / 1024 )) MiB: $(tail -n1 "$log")"
  (( ms < best )) && best=$ms
  rm -f "$log" "$log.rss"
done
echo "best: ${best} ms (goal < ${goal_ms} ms)"
(( best < goal_ms ))
