#!/bin/sh
# Runs the integration, identity and interop tests against build dir $1.
set -eu
cd "$(dirname "$0")/../.."
KB_BUILD=${1:-build} exec /usr/bin/python3 tests/integration/runner.py \
	test_broker test_identity test_security test_hostile test_fulldisk \
	test_faults test_lifecycle test_audit test_audit_tools test_systemd
