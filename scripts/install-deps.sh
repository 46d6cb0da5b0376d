#!/bin/sh
# Installs the Debian packages keybroker needs to build, run and test.
# Skips apt entirely when everything is already installed.
set -eu

PKGS="build-essential pkg-config git p11-kit libp11-kit-dev softhsm2 \
libssl-dev openssl libconfig-dev libjansson-dev libsystemd-dev libcmocka-dev opensc socat \
python3 python3-jwt python3-cryptography python3-pykcs11 clang clang-format libclang-rt-14-dev cppcheck valgrind procps \
systemd mandoc groff-base man-db"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing; run as root" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Waits for another apt or dpkg run on this machine rather than fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
