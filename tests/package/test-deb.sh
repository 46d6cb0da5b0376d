#!/bin/sh
# The Debian packages, end to end: builds them with dpkg-buildpackage from
# a copy of the work tree, checks them with lintian, installs them on this
# machine and checks what the install did (files, the keybroker user and
# its directories, no broker started), builds a program against the
# installed library with pkg-config, runs the installed keybrokerd on a
# fresh SoftHSMv2 token (it drops to its user; the CLI wraps and unwraps
# through it), verifies the installed units, and purges the packages.
# Run as root from the project root: sh tests/package/test-deb.sh
# Everything it made (and a user and directories it made) goes at exit.
set -eu
cd "$(dirname "$0")/../.."
start=$(date +%s)

say() { echo "deb: $*"; }
# Whether dpkg knows PACKAGE as installed, half-installed or removed with
# its configuration files left (anything short of purged).
present() {
	s=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	case $s in
	*not-installed) return 1 ;;
	*) return 0 ;;
	esac
}
fail() {
	echo "deb: FAILED: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges packages)"
# The test purges what it installs: never where keybroker is already
# installed, from a package or by make install.
for p in keybroker libkeybroker0 libkeybroker-dev; do
	! present "$p" || fail "the package $p is installed here; the test would purge it"
done
[ ! -e /usr/sbin/keybrokerd ] ||
	fail "/usr/sbin/keybrokerd exists; the test would replace and remove it"

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt or dpkg run on this machine rather than fail.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
tmp=$(mktemp -d /tmp/kb-deb.XXXXXX)
pid=""
# What was here before, so that the cleanup removes only what the test
# made (the package leaves its user and /var/lib/keybroker on purge).
had_user=no
getent passwd keybroker >/dev/null && had_user=yes
had_varlib=no
[ -e /var/lib/keybroker ] && had_varlib=yes
had_etc=no
[ -e /etc/keybroker ] && had_etc=yes

cleanup() {
	rc=$?
	set +e
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"
		wait "$pid" 2>/dev/null
	fi
	for p in keybroker libkeybroker-dev libkeybroker0; do
		present "$p" && apt_get purge -y -qq "$p" >/dev/null 2>&1
	done
	[ "$had_varlib" = yes ] || rm -rf /var/lib/keybroker
	[ "$had_etc" = yes ] || rm -rf /etc/keybroker
	if [ "$had_user" = no ] && getent passwd keybroker >/dev/null; then
		userdel keybroker
		getent group keybroker >/dev/null && groupdel keybroker
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The build tools and the build dependencies (debian/control), and
# SoftHSMv2 for the token; apt only when something is missing.
PKGS="build-essential debhelper dpkg-dev fakeroot lintian pkg-config \
libp11-kit-dev libssl-dev libconfig-dev libjansson-dev libsystemd-dev systemd \
p11-kit softhsm2 util-linux"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	say "installing$missing"
	apt_get update -qq
	# shellcheck disable=SC2086
	apt_get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. Build from a copy: the files git knows of and the new ones it does
# not ignore, as they are in the work tree (uncommitted changes too), so
# that the build touches nothing here.
say "copying the work tree to $tmp/src"
git ls-files -co --exclude-standard | sort -u | while IFS= read -r f; do
	[ -f "$f" ] && printf '%s\n' "$f"
done > "$tmp/files"
mkdir "$tmp/src"
tar -cf - -T "$tmp/files" | tar -xf - -C "$tmp/src"

say "dpkg-buildpackage -us -uc -b"
if ! (cd "$tmp/src" && dpkg-buildpackage -us -uc -b) > "$tmp/build.log" 2>&1; then
	tail -n 60 "$tmp/build.log" >&2
	fail "dpkg-buildpackage (the end of its log is above)"
fi
for p in keybroker libkeybroker0 libkeybroker-dev; do
	set -- "$tmp/${p}"_*.deb
	[ -f "$1" ] || fail "no ${p} package was built"
	say "built $(basename "$1")"
done

say "lintian on the .changes (fails on any E:)"
lintian -I "$tmp"/keybroker_*.changes > "$tmp/lintian.txt" 2>&1 || true
sed 's/^/    /' "$tmp/lintian.txt"
if grep -q '^E:' "$tmp/lintian.txt"; then
	fail "lintian reports errors"
fi

# 3. Install them as a user would, with their dependencies.
say "apt-get install the three packages"
if ! (cd "$tmp" && apt_get install -y -q ./keybroker_*.deb \
	./libkeybroker0_*.deb ./libkeybroker-dev_*.deb) > "$tmp/install.log" 2>&1; then
	cat "$tmp/install.log" >&2
	fail "apt-get install"
fi

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check_listed() { # PACKAGE PATH...: dpkg -L PACKAGE lists each PATH
	pkg=$1
	shift
	dpkg -L "$pkg" > "$tmp/list"
	for f in "$@"; do
		grep -qx "$f" "$tmp/list" || fail "dpkg -L $pkg does not list $f"
		[ -e "$f" ] || fail "$f (of $pkg) is not on disk"
	done
	say "dpkg -L $pkg lists $#: $*"
}
check_listed keybroker /usr/sbin/keybrokerd /usr/sbin/keybrokerctl \
	/usr/bin/keybroker /usr/bin/keybroker-audit \
	/lib/systemd/system/keybrokerd.service /lib/systemd/system/keybrokerd.socket \
	/usr/lib/sysusers.d/keybroker.conf /usr/lib/tmpfiles.d/keybroker.conf \
	/usr/share/man/man8/keybrokerd.8.gz /usr/share/man/man8/keybrokerctl.8.gz \
	/usr/share/man/man1/keybroker.1.gz /usr/share/man/man1/keybroker-audit.1.gz \
	/usr/share/man/man5/keybroker.conf.5.gz \
	/usr/share/keybroker/examples/keybroker.conf
# (dh_compress leaves it as it is while it is short)
dpkg -L keybroker | grep -Eqx '/usr/share/doc/keybroker/README\.Debian(\.gz)?' ||
	fail "dpkg -L keybroker does not list README.Debian"
check_listed libkeybroker0 "/usr/lib/$multiarch/libkeybroker.so.0"
check_listed libkeybroker-dev /usr/include/keybroker.h \
	"/usr/lib/$multiarch/libkeybroker.so" "/usr/lib/$multiarch/libkeybroker.a" \
	"/usr/lib/$multiarch/pkgconfig/keybroker.pc" \
	/usr/share/man/man3/libkeybroker.3.gz

# The postinst made the user (systemd-sysusers) and its directories
# (systemd-tmpfiles); it enabled and started nothing.
getent passwd keybroker >/dev/null || fail "no user keybroker after the install"
kb_uid=$(id -u keybroker)
kb_gid=$(id -g keybroker)
[ "$kb_uid" -ne 0 ] || fail "keybroker has uid 0"
[ "$kb_gid" -ne 0 ] || fail "keybroker has gid 0"
say "user keybroker exists (uid $kb_uid, gid $kb_gid)"
got=$(stat -c '%U:%G %a' /var/lib/keybroker/tokens) ||
	fail "no /var/lib/keybroker/tokens"
[ "$got" = "keybroker:keybroker 700" ] ||
	fail "/var/lib/keybroker/tokens is $got, not keybroker:keybroker 700"
say "/var/lib/keybroker/tokens is keybroker:keybroker 0700"

running_brokers() { # pids of processes running the installed keybrokerd
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = /usr/sbin/keybrokerd ] &&
			echo "${p#/proc/}"
	done
	return 0
}
[ -z "$(running_brokers)" ] || fail "the install started keybrokerd: $(running_brokers)"
enabled=$(find /etc/systemd/system -name 'keybrokerd.*' 2>/dev/null)
[ -z "$enabled" ] || fail "the install enabled units: $enabled"
say "no keybrokerd running, no unit enabled"

# 4. A program against the installed library, found by pkg-config. With
# no argument it only checks a failed connect; given a socket, it gets a
# token for its own identity, reads the key "demo" and wraps and unwraps
# a DEK with it (step 6).
[ "$(pkg-config --modversion keybroker)" = 0.1.0 ] || fail "keybroker.pc's version"
[ "$(pkg-config --variable=libdir keybroker)" = "/usr/lib/$multiarch" ] ||
	fail "keybroker.pc's libdir: $(pkg-config --variable=libdir keybroker)"
[ "$(pkg-config --variable=includedir keybroker)" = /usr/include ] ||
	fail "keybroker.pc's includedir: $(pkg-config --variable=includedir keybroker)"
cat > "$tmp/client.c" <<'EOF'
#include <keybroker.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct keybroker *kb = NULL;
	uint8_t dek[32], *wrapped = NULL, *back = NULL;
	size_t wrapped_len, back_len, i;
	char *identity = NULL, *bundle = NULL;
	int rc;

	if (argc < 2) {
		rc = keybroker_connect("/nonexistent/keybroker.sock", &kb);
		printf("connect without a broker: %s\n", keybroker_strstatus(rc));
		return rc == KEYBROKER_E_IO ? 0 : 1;
	}
	for (i = 0; i < sizeof(dek); i++)
		dek[i] = (uint8_t)(i * 7 + 1);
	if ((rc = keybroker_connect(argv[1], &kb)) != KEYBROKER_OK ||
	    (rc = keybroker_authenticate_self(kb, &identity)) != KEYBROKER_OK ||
	    (rc = keybroker_get_key(kb, "demo", NULL, &bundle)) != KEYBROKER_OK ||
	    (rc = keybroker_wrap(kb, "demo", NULL, NULL, dek, sizeof(dek),
				 &wrapped, &wrapped_len, NULL)) != KEYBROKER_OK ||
	    (rc = keybroker_unwrap(kb, "demo", NULL, NULL, wrapped, wrapped_len,
				   &back, &back_len, NULL)) != KEYBROKER_OK) {
		fprintf(stderr, "%s: %s %s\n", keybroker_strstatus(rc),
			kb ? keybroker_error_code(kb) : "",
			kb ? keybroker_error_message(kb) : "");
		return 1;
	}
	rc = back_len == sizeof(dek) && memcmp(back, dek, sizeof(dek)) == 0;
	printf("identity %s, wrapped %zu bytes, unwrapped %s\n", identity,
	       wrapped_len, rc ? "the same DEK" : "A DIFFERENT DEK");
	keybroker_free_secret(back, back_len);
	free(wrapped);
	free(bundle);
	free(identity);
	keybroker_close(kb);
	return rc ? 0 : 1;
}
EOF
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/client" "$tmp/client.c" $(pkg-config --cflags --libs keybroker) ||
	fail "cc with pkg-config --cflags --libs keybroker"
# (/lib is /usr/lib on Debian 12: ld.so may name either)
ldd "$tmp/client" | grep -Eq "libkeybroker\.so\.0 => (/usr)?/lib/$multiarch/libkeybroker\.so\.0" ||
	fail "the program does not load /usr/lib/$multiarch/libkeybroker.so.0: $(ldd "$tmp/client")"
"$tmp/client" > "$tmp/client.out" 2>&1 ||
	{ cat "$tmp/client.out" >&2; fail "the program against libkeybroker"; }
sed 's/^/    /' "$tmp/client.out"
say "a program built with pkg-config keybroker runs on the installed library"

# 5. A SoftHSMv2 token with the key "demo", made by the keybroker user
# with the installed keybrokerctl, as scripts/quickstart.sh does; the
# broker's config gives root the Crypto Officer and Auditor roles and
# names the user the broker drops to.
chmod 711 "$tmp"
tok="$tmp/token"
mkdir -p "$tok"
cat > "$tok/keybroker.conf" <<EOF
# Written by tests/package/test-deb.sh.
instance = "debtest";
socket = "run/keybroker.sock";
log_level = "info";
user = "keybroker";
pkcs11 = {
	module = "softhsm2";
	token = "pkcs11:token=keybroker";
	pin_file = "user.pin";
};
identities = (
	{ name = "root-admin"; assigned = "system"; uids = [ 0 ]; }
);
access = (
	{ identity = "root-admin"; keys = [ "*" ]; roles = [ "Crypto Officer" ]; },
	{ identity = "root-admin"; keys = [ "*" ]; roles = [ "Auditor" ]; }
);
EOF
# The SoftHSMv2 config, its token directory and random PINs, as the quick
# start makes them (it keeps the broker config written above).
sh scripts/softhsm-token.sh "$tok"
chown -R keybroker:keybroker "$tok"
export SOFTHSM2_CONF="$tok/softhsm2.conf"
as_kb() { setpriv --reuid=keybroker --regid=keybroker --init-groups "$@"; }
as_kb /usr/sbin/keybrokerctl -c "$tok/keybroker.conf" init-token \
	--so-pin-file "$tok/so.pin" > "$tmp/ctl.log" 2>&1 ||
	{ cat "$tmp/ctl.log" >&2; fail "keybrokerctl init-token"; }
as_kb /usr/sbin/keybrokerctl -c "$tok/keybroker.conf" create-key demo \
	--size 2048 > "$tmp/ctl.log" 2>&1 ||
	{ cat "$tmp/ctl.log" >&2; fail "keybrokerctl create-key demo"; }
as_kb /usr/sbin/keybrokerctl -c "$tok/keybroker.conf" list-keys 2>&1 |
	grep -q '/keys/demo/' || fail "list-keys does not show demo"
say "token made by the keybroker user, key demo in it"

# 6. The installed broker, started as root: it opens the socket and the
# token, then runs as keybroker without capabilities, and serves. Run as
# root, it reads the PIN only from a file of root's.
chown root:root "$tok/user.pin"
# The socket's directory is root's too: the broker listens as root, and
# keybroker-audit trusts a socket only in a directory of root's or of
# the listener's. (So the broker, by then keybroker, cannot remove the
# socket when it stops; the next start replaces it.)
chown root:root "$tok/run"
chmod 755 "$tok/run"
/usr/sbin/keybrokerd -c "$tok/keybroker.conf" > "$tmp/broker.log" 2>&1 &
pid=$!
i=0
until grep -q 'listening on' "$tmp/broker.log"; do
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/broker.log" >&2; fail "keybrokerd exited"; }
	i=$((i + 1))
	[ "$i" -le 300 ] || { cat "$tmp/broker.log" >&2; fail "keybrokerd not listening after 30 s"; }
	sleep 0.1
done
say "keybrokerd (pid $pid) is listening"
st=/proc/$pid/status
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "$st")
gids=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "$st")
capeff=$(awk '/^CapEff:/ { print $2 }' "$st")
[ "$uids" = "$kb_uid $kb_uid $kb_uid $kb_uid" ] || fail "keybrokerd's Uid: $uids"
[ "$gids" = "$kb_gid $kb_gid $kb_gid $kb_gid" ] || fail "keybrokerd's Gid: $gids"
[ "$capeff" = 0000000000000000 ] || fail "keybrokerd's CapEff: $capeff"
say "keybrokerd runs as keybroker: Uid $uids, Gid $gids, CapEff $capeff"

export KEYBROKER_SOCKET="$tok/run/keybroker.sock"
/usr/bin/keybroker get --key demo > "$tmp/jwk" || fail "keybroker get --key demo"
for field in '"kid"' '"kty"' '"n"' '"e"'; do
	grep -q "$field" "$tmp/jwk" || { cat "$tmp/jwk" >&2; fail "keybroker get: no $field"; }
done
sed 's/^/    /' "$tmp/jwk"
say "keybroker get --key demo prints the key's JWK"
head -c 32 /dev/urandom > "$tmp/dek"
/usr/bin/keybroker wrap --key demo --in "$tmp/dek" --out "$tmp/dek.wrapped" ||
	fail "keybroker wrap"
/usr/bin/keybroker unwrap --in "$tmp/dek.wrapped" --out "$tmp/dek.back" ||
	fail "keybroker unwrap"
cmp -s "$tmp/dek" "$tmp/dek.back" || fail "the unwrapped DEK differs"
say "wrap and unwrap of a random 32-byte DEK round-trip"
"$tmp/client" "$KEYBROKER_SOCKET" > "$tmp/client.out" 2>&1 ||
	{ cat "$tmp/client.out" >&2; fail "the libkeybroker program through the broker"; }
sed 's/^/    /' "$tmp/client.out"
say "the libkeybroker program wraps and unwraps through the broker"
/usr/bin/keybroker-audit pubkey --socket "$KEYBROKER_SOCKET" > "$tmp/audit.pem" ||
	fail "keybroker-audit pubkey"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { cat "$tmp/broker.log" >&2; fail "keybrokerd exited $rc on SIGTERM"; }
say "keybrokerd stopped on SIGTERM with status 0"
/usr/bin/keybroker-audit verify --pubkey "$tmp/audit.pem" "$tok/audit" > "$tmp/verify.log" 2>&1 ||
	{ cat "$tmp/verify.log" >&2; fail "keybroker-audit verify"; }
say "keybroker-audit verify: the trail is sealed"

# 7. The installed units, with their binaries and man pages installed.
out=$(systemd-analyze verify /lib/systemd/system/keybrokerd.service \
	/lib/systemd/system/keybrokerd.socket 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify says: $out"
say "systemd-analyze verify: the installed units pass, without a word"

# 8. Purge: the programs go; the tokens stay (README.Debian).
apt_get purge -y -q keybroker libkeybroker0 libkeybroker-dev > "$tmp/purge.log" 2>&1 ||
	{ cat "$tmp/purge.log" >&2; fail "apt-get purge"; }
[ ! -e /usr/sbin/keybrokerd ] || fail "/usr/sbin/keybrokerd is still there after the purge"
for p in keybroker libkeybroker0 libkeybroker-dev; do
	! present "$p" || fail "$p is still known to dpkg after the purge"
done
[ -d /var/lib/keybroker/tokens ] || fail "the purge removed /var/lib/keybroker/tokens"
say "purged: /usr/sbin/keybrokerd is gone, /var/lib/keybroker/tokens stays"

say "took $(($(date +%s) - start)) s"
say "all checks passed"
