#!/bin/sh
# Runs the integration and interop tests against build directory $1.
set -eu
cd "$(dirname "$0")/../.."
KB_BUILD=${1:-build} exec /usr/bin/python3 tests/integration/test_broker.py
