#!/bin/sh
# Runs each libFuzzer harness in DIR for SECONDS (a bounded run). A crash,
# leak or sanitizer report fails the run and prints the fuzzer's report;
# the input that caused it is kept in a temporary directory, named there.
# Usage: tests/fuzz/run.sh DIR SECONDS
set -eu
dir=$1
secs=${2:-15}
here=$(dirname "$0")
for h in proto kid b64 oaep acl jwt config jwks meta reply audit; do
	work=$(mktemp -d)
	mkdir "$work/corpus"
	if [ -d "$here/corpus/$h" ]; then
		cp "$here/corpus/$h"/* "$work/corpus"/
	fi
	if ! LSAN_OPTIONS="suppressions=$here/lsan.supp" \
		"$dir/fuzz_$h" -max_total_time="$secs" -max_len=70000 \
		-timeout=10 -print_final_stats=1 -artifact_prefix="$work/" \
		"$work/corpus" > "$work/log" 2>&1; then
		tail -n 60 "$work/log"
		echo "fuzz_$h: FAILED; reproducer and log in $work" >&2
		exit 1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	echo "fuzz_$h: ${secs}s, $runs inputs, clean"
	rm -rf "$work"
done
