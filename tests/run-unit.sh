#!/bin/sh
# Runs each cmocka test binary given and prints one summary line. With
# KB_VALGRIND_CT=1, binaries named *_ct[_clang] run under valgrind's memcheck,
# which fails them on a branch or table index that depends on a secret.
passed=0 failed=0
for t in "$@"; do
	runner=""
	case "$t" in
	*_ct | *_ct_clang) [ "${KB_VALGRIND_CT:-}" = 1 ] &&
		runner="valgrind -q --error-exitcode=99" ;;
	esac
	# shellcheck disable=SC2086
	out=$($runner "$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p')
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		echo "$t: exited with status $rc" >&2
		failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
