#!/bin/sh
# Benchmark: makes a SoftHSMv2 token with an RSA-2048 key in a temporary
# directory, starts keybrokerd on it and runs kb_bench (figures, no
# pass/fail). Usage: tests/bench/run.sh BUILD_DIR [SECONDS]
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
secs=${2:-3}
dir=$(mktemp -d /tmp/kb-bench-XXXXXX)
pid=
pid2=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$pid2" ] && kill "$pid2" 2>/dev/null && wait "$pid2" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
sh scripts/softhsm-token.sh "$dir"
cat >> "$dir/keybroker.conf" <<CONF
max_connections = 2000;
max_connections_per_uid = 2000;
max_unauthenticated_per_uid = 2000;
authenticate_timeout = 30;
CONF
sed -i 's/^log_level = "info";/log_level = "warning";/' "$dir/keybroker.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
"$B/keybrokerctl" -c "$dir/keybroker.conf" init-token --so-pin-file "$dir/so.pin" >/dev/null
"$B/keybrokerctl" -c "$dir/keybroker.conf" create-key bench --size 2048 >/dev/null
ulimit -n 4096
# A second broker on the same token without the audit trail: its cost.
sed 's|^socket = .*|socket = "run/plain.sock";|' "$dir/keybroker.conf" \
	> "$dir/plain.conf"
echo 'audit = { enabled = false; };' >> "$dir/plain.conf"
"$B/keybrokerd" -c "$dir/keybroker.conf" &
pid=$!
"$B/keybrokerd" -c "$dir/plain.conf" 2>/dev/null &
pid2=$!
while [ ! -S "$dir/run/keybroker.sock" ] || [ ! -S "$dir/run/plain.sock" ]; do
	sleep 0.05
done
"$B/tests/kb_bench" -c "$dir/keybroker.conf" -s "$dir/run/keybroker.sock" \
	-S "$dir/run/plain.sock" -k bench -t "$secs"
