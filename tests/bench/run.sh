#!/bin/sh
# Benchmark: makes a SoftHSMv2 token with RSA-2048, -3072 and -4096 keys
# in a temporary directory, starts keybrokerd on it three times (with the
# audit trail; without; and through a module that makes each decryption
# take 5 ms more without using the CPU, as a network HSM does), remotes
# the token with "p11-kit server", and runs kb_bench (figures, no
# pass/fail).
# Usage: tests/bench/run.sh BUILD_DIR [SECONDS]
# KB_BENCH_BROKER=PATH runs that keybrokerd instead of BUILD_DIR's (to
# measure another version with the same benchmark).
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
secs=${2:-3}
broker=${KB_BENCH_BROKER:-$B/keybrokerd}
client=$(pkg-config --variable=p11_module_path p11-kit-1)/p11-kit-client.so
softhsm=$(sed -n 's/^module: *//p' /usr/share/p11-kit/modules/softhsm2.module)
dir=$(mktemp -d /tmp/kb-bench-XXXXXX)
pid=
pid2=
pid3=
pid4=
cleanup() {
	for p in $pid $pid2 $pid3 $pid4; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
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
ctl() { "$B/keybrokerctl" -c "$dir/keybroker.conf" "$@" >/dev/null; }
ctl init-token --so-pin-file "$dir/so.pin"
ctl create-key bench --size 2048
ctl create-key bench3072 --size 3072
ctl create-key bench4096 --size 4096
ulimit -n 4096
# A second broker on the same token without the audit trail: its cost.
sed 's|^socket = .*|socket = "run/plain.sock";|' "$dir/keybroker.conf" \
	> "$dir/plain.conf"
echo 'audit = { enabled = false; };' >> "$dir/plain.conf"
"$broker" -c "$dir/keybroker.conf" &
pid=$!
"$broker" -c "$dir/plain.conf" 2>/dev/null &
pid2=$!
# A third with an HSM's latency: 5 ms more per decryption (2 sessions).
case $B in
/*) fault=$B/tests/p11_fault.so ;;
*) fault=$(pwd)/$B/tests/p11_fault.so ;;
esac
sed -e 's|^socket = .*|socket = "run/hsm.sock";|' \
	-e "s|module = \"softhsm2\";|module = \"$fault\";|" \
	"$dir/plain.conf" > "$dir/hsm.conf"
KB_FAULT="C_Decrypt sleep=5" "$broker" -c "$dir/hsm.conf" &
pid4=$!
# The token remoted by p11-kit, for the comparison with a PKCS#11 proxy.
p11-kit server -f -s --provider "$softhsm" -n "$dir/p11-kit.sock" \
	"pkcs11:token=keybroker" >/dev/null &
pid3=$!
while [ ! -S "$dir/run/keybroker.sock" ] || [ ! -S "$dir/run/plain.sock" ] ||
	[ ! -S "$dir/run/hsm.sock" ] || [ ! -S "$dir/p11-kit.sock" ]; do
	sleep 0.05
done
P11_KIT_SERVER_ADDRESS="unix:path=$dir/p11-kit.sock" "$B/tests/kb_bench" \
	-c "$dir/keybroker.conf" -s "$dir/run/keybroker.sock" \
	-S "$dir/run/plain.sock" -H "$dir/run/hsm.sock" -k bench \
	-K bench3072,bench4096 \
	-P "$client" -t "$secs"
