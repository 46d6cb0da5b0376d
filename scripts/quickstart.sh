#!/bin/sh
# The README's first command: installs what is needed, builds, creates a
# SoftHSMv2 token with an RSA-HSM key "demo" under ./var/, and runs
# keybrokerd in the foreground on ./var/run/keybroker.sock.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s all

sh scripts/softhsm-token.sh var
export SOFTHSM2_CONF="$PWD/var/softhsm2.conf"
if ! build/keybrokerctl -c var/keybroker.conf list-keys >/dev/null 2>&1; then
	build/keybrokerctl -c var/keybroker.conf init-token \
		--so-pin-file var/so.pin
fi
if ! build/keybrokerctl -c var/keybroker.conf list-keys | grep -q '/keys/demo/'; then
	build/keybrokerctl -c var/keybroker.conf create-key demo --size 2048
fi

cat <<MSG

keybrokerd is starting on $PWD/var/run/keybroker.sock (Ctrl-C stops it).
From another shell in $PWD:
    export KEYBROKER_SOCKET=\$PWD/var/run/keybroker.sock
    sh scripts/demo.sh

MSG
exec build/keybrokerd -c var/keybroker.conf
