# shellcheck shell=bash
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
