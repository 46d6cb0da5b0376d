#!/bin/sh
# Fails if a folder calls up: the folders are layers, and each may use
# only itself and the layers below it.
#
#   common   bytes, encodings, logging, secrets, the grant vocabulary
#   config   the configuration file             (uses common)
#   pkcs11   the token adapter                  (uses common)
#   broker   the daemon and its key store       (uses common, config, pkcs11)
#   client   the library and the CLI            (uses common)
#
# One file is let through: client/keybrokerctl.c, whose provisioning,
# identity-token and break-glass commands work on the token directly
# through the broker's key store. Its key management goes through the
# socket (client/ctl_keys.c), which uses common and client only.
#
# Two checks: every #include "..." of a source file names a header of an
# allowed folder, and, given a build directory, every symbol an object
# file leaves undefined is defined in an allowed folder (or outside the
# project).
#
#   scripts/check-layers.sh [BUILD-DIR]
set -eu
cd "$(dirname "$0")/.."

# What the file (or object) $2 of folder $1 may use.
allowed() {
	case $1 in
	common) echo "common" ;;
	config) echo "common config" ;;
	pkcs11) echo "common pkcs11" ;;
	broker) echo "common config pkcs11 broker" ;;
	client)
		case ${2##*/} in
		keybrokerctl.c | keybrokerctl.o)
			echo "common config pkcs11 broker client" ;;
		*) echo "common client" ;;
		esac ;;
	esac
}

LAYERS="common config pkcs11 broker client"
status=0
found=$(mktemp)
trap 'rm -f "$found"' EXIT

# ---- includes ----
for dir in $LAYERS; do
	for f in "$dir"/*.c "$dir"/*.h; do
		[ -e "$f" ] || continue
		ok=$(allowed "$dir" "$f")
		grep -n '^#include "' "$f" | while IFS= read -r line; do
			hdr=${line#*\"}
			hdr=${hdr%%\"*}
			owner=
			for d in $LAYERS; do
				[ -e "$d/$hdr" ] && owner=$d
			done
			[ -n "$owner" ] || continue
			case " $ok " in
			*" $owner "*) ;;
			*) echo "$f:${line%%:*}: includes $owner/$hdr: $dir/ may use only $ok"
			   echo x >&3 ;;
			esac
		done
	done
done 3>"$found"
[ -s "$found" ] && status=1

# ---- symbols ----
B=${1:-}
if [ -n "$B" ]; then
	for dir in $LAYERS; do
		[ -d "$B/$dir" ] || { echo "check-layers: no $B/$dir; build first" >&2; exit 1; }
	done
	defs=$(mktemp)
	for dir in $LAYERS; do
		for o in "$B/$dir"/*.o; do
			nm --defined-only -g "$o" | awk -v d="$dir" 'NF == 3 { print $3, d }'
		done
	done | sort -u >"$defs"
	for dir in $LAYERS; do
		for o in "$B/$dir"/*.o; do
			ok=$(allowed "$dir" "$o")
			nm -u "$o" | awk '{ print $NF }' | sort -u |
				join - "$defs" | while read -r sym owner; do
				case " $ok " in
				*" $owner "*) ;;
				*) echo "$o: calls $sym of $owner/: $dir/ may use only $ok"
				   echo x >&3 ;;
				esac
			done
		done
	done 3>>"$found"
	[ -s "$found" ] && status=1
	rm -f "$defs"
fi

[ $status -eq 0 ] && echo "layers: no folder uses one above it"
exit $status
