#!/bin/sh
# Generates a development CA and certificates for deploy/compose/compose.tls.yaml:
#   deploy/compose/gen-dev-certs.sh [DIR]      (default: deploy/compose/certs)
# DIR/server/{tls.crt,tls.key,ca.crt}  the servers' certificate (DNS names
#     toolgated-1..3 and localhost, IP 127.0.0.1) and the CA, the file names
#     cert-manager writes, mounted at /etc/toolgate-tls in every toolgated;
# DIR/client/{tls.crt,tls.key,ca.crt}  a client certificate (URI SAN
#     spiffe://toolgate.dev/cli, CN toolgate-cli) for `toolgate` on the host;
# DIR/ca.key  the CA's key (to sign more clients; keep it out of containers).
# Development only: the keys are ECDSA P-256, valid 30 days, and the server
# key is made readable by the containers' user (uid 10001).
# Running it again replaces everything (the servers pick up the new files).
set -eu
dir=${1:-$(dirname "$0")/certs}
days=30
mkdir -p "$dir/server" "$dir/client"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -days "$days" -subj "/CN=toolgate development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$dir/ca.key" -out "$tmp/ca.crt" 2>/dev/null

issue() {  # issue NAME SUBJECT EXTENSIONS
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "$2" -keyout "$tmp/$1.key" -out "$tmp/$1.csr" 2>/dev/null
  printf '%s\n' "$3" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days "$days" -sha256 -extfile "$tmp/$1.ext" -out "$tmp/$1.crt" \
    2>/dev/null
}
issue server "/CN=toolgated" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:toolgated-1,DNS:toolgated-2,DNS:toolgated-3,DNS:localhost,IP:127.0.0.1"
issue client "/CN=toolgate-cli" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://toolgate.dev/cli"

# Each file is replaced by a rename, so a server never reads half a file.
install_file() {  # install_file SOURCE DEST MODE
  cp "$1" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}
for who in server client; do
  install_file "$tmp/ca.crt" "$dir/$who/ca.crt" 0644
  install_file "$tmp/$who.crt" "$dir/$who/tls.crt" 0644
  install_file "$tmp/$who.key" "$dir/$who/tls.key" 0600
done
# The containers run as uid 10001: give them the server key.
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 "$dir/server/tls.key"
else
  chmod 0644 "$dir/server/tls.key"
  echo "note: $dir/server/tls.key is world-readable so that the containers (uid 10001) can read it; development only" >&2
fi
chmod 0755 "$dir" "$dir/server" "$dir/client"
echo "certificates in $dir (valid $days days)"
