#!/bin/sh
# Wraps and unwraps a random 32-byte data key through a running keybrokerd
# and prints the key's JWK. Uses $KEYBROKER_SOCKET (see quickstart.sh).
set -eu
cd "$(dirname "$0")/.."
: "${KEYBROKER_SOCKET:=$PWD/var/run/keybroker.sock}"
export KEYBROKER_SOCKET
kb=build/keybroker
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

head -c 32 /dev/urandom > "$tmp/dek"
$kb wrap --key demo --in "$tmp/dek" --out "$tmp/wrapped"
echo "wrapped DEK (RSA-OAEP-256, in an envelope naming its key version):"
cat "$tmp/wrapped"
$kb unwrap --in "$tmp/wrapped" --out "$tmp/unwrapped"
if cmp -s "$tmp/dek" "$tmp/unwrapped"; then
	echo "unwrapped DEK matches the original (32 bytes)"
else
	echo "unwrapped DEK DIFFERS from the original" >&2
	exit 1
fi
echo "public key of 'demo' (JWK and attributes):"
$kb get --key demo
