#!/bin/sh
# Makes the certificates for MQTT over TLS with client certificates (openssl):
#   ca.crt/ca.key             the CA that signs everything below (keep ca.key offline)
#   broker.crt/broker.key     Mosquitto's server certificate (names: $BROKER_NAMES)
#   collector.crt/.key        CN=watchstand-collector: the collector user in watchstand.acl
#   AGENT_ID.crt/AGENT_ID.key CN=AGENT_ID, one per agent: its MQTT user name in the ACL
#
# Usage: make-certs.sh OUT_DIR [AGENT_ID ...]
#   BROKER_NAMES  subjectAltName of the broker (default DNS:localhost,IP:127.0.0.1);
#                 add the name agents connect to, e.g. "DNS:mqtt.example.org,DNS:localhost".
#   DAYS          validity of new certificates in days (default 825; the CA gets 3650).
#   COLLECTOR_CN  the collector's name (default watchstand-collector).
#
# Run it again to add agents: an existing CA and existing certificates are kept, so only the
# missing ones are made. Keys are EC P-256, written mode 600.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR [AGENT_ID ...]" >&2
    exit 2
fi
out=$1
shift
names=${BROKER_NAMES:-DNS:localhost,IP:127.0.0.1}
days=${DAYS:-825}
collector=${COLLECTOR_CN:-watchstand-collector}
umask 077
mkdir -p "$out"

if [ ! -e "$out/ca.key" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 -subj "/CN=Watchstand MQTT CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 644 "$out/ca.crt"
    echo "made $out/ca.crt"
fi

# issue NAME CN EXTENSIONS: a key and a certificate signed by the CA, unless NAME.crt exists.
issue() {
    if [ -e "$out/$1.crt" ]; then
        echo "kept $out/$1.crt"
        return
    fi
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/$1.key" -out "$out/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$3" >"$out/$1.ext"
    openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -days "$days" -extfile "$out/$1.ext" -out "$out/$1.crt" 2>/dev/null
    rm -f "$out/$1.csr" "$out/$1.ext"
    chmod 644 "$out/$1.crt"
    echo "made $out/$1.crt (CN=$2)"
}

client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

first=${names%%,*}
issue broker "${first#*:}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$names"
issue collector "$collector" "$client_ext"
for agent in "$@"; do
    issue "$agent" "$agent" "$client_ext"
done
