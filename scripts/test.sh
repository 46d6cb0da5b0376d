#!/bin/sh
# The README's second command: installs what is needed, builds, and runs
# the style and static checks and every test (unit, integration, interop),
# plainly and then under AddressSanitizer + UBSan and ThreadSanitizer, a
# bounded run of each libFuzzer harness, and the Debian packages built,
# installed, run and purged.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s lint
make -s test
make -s fuzz FUZZ_SECONDS=10
make -s deb-test
echo "all checks passed"
