#!/bin/sh
# The README's second command: installs what is needed, builds, and runs
# the style and static checks and every test (unit, integration, interop),
# plainly and then under AddressSanitizer + UBSan.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -s lint
make -s test
echo "all checks passed"
