#!/bin/sh
# The README's second command: installs what is needed, builds, and runs
# the style and static checks and every test (unit, integration, interop),
# plainly and then under AddressSanitizer + UBSan, and a bounded run of
# each libFuzzer harness.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s lint
make -s test
make -s fuzz FUZZ_SECONDS=10
echo "all checks passed"
