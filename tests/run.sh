#!/bin/sh
# tests/run.sh — runs every test suite and sums their results.
#
# A suite is an executable tests/<name>/run.sh, run from the repository
# root. It prints what it checks and ends with a line
#     <name>: N passed, N failed
# and exits non-zero if anything failed. This script prints each suite's
# output, then the totals as "N passed, N failed", and fails if any suite
# failed or printed no result line.
# Usage: tests/run.sh [suite ...]   (default: every suite)
set -u
cd "$(dirname "$0")/.."
suites="$*"
[ -n "$suites" ] || suites=$(ls -d tests/*/ | xargs -n1 basename | sort)
pass=0 fail=0 broken=""
for s in $suites; do
    [ -x "tests/$s/run.sh" ] || continue
    echo "== $s"
    out=$(mktemp)
    "tests/$s/run.sh" 2>&1 | tee "$out"
    line=$(grep -E "^$s: [0-9]+ passed, [0-9]+ failed" "$out" | tail -n 1)
    if [ -z "$line" ]; then
        broken="$broken $s"
        fail=$((fail + 1))
    else
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
        pass=$((pass + p))
        fail=$((fail + f))
    fi
    rm -f "$out"
done
[ -z "$broken" ] || echo "suites that crashed or printed no result:$broken"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
