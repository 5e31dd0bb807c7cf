#!/bin/sh
# tests/diag/run.sh — the exact diagnostics for invalid models.
#
# For every tests/diag/X.lam, runs `laminac --emit=ir X.lam` from inside
# tests/diag (so messages name the file just X.lam) and checks
#   - that standard error is exactly X.err: every diagnostic with its
#     source line, caret line and notes, and the "N errors generated." line;
#   - that the exit status is 1, or 0 for warn_*.lam (warnings only: the
#     model compiles and the warnings are printed);
#   - that every line saying "error:" is located: "X.lam:LINE:COL: error: ".
# The .err files were written by hand from what a user should see, then
# compared with laminac (see README). LAMINAC=path overrides the compiler
# (default: ./laminac at the repository root).
set -u
laminac=${LAMINAC:-./laminac}
case $laminac in /*) ;; *) laminac=$(pwd)/$laminac ;; esac
cd "$(dirname "$0")" || exit 1
[ -x "$laminac" ] || { echo "diag: no compiler at $laminac (run make laminac)"; echo "diag: 0 passed, 1 failed"; exit 1; }
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
pass=0 fail=0
for lam in *.lam; do
    name=${lam%.lam}
    want=1
    case $name in warn_*) want=0 ;; esac
    problems=""
    if [ ! -f "$name.err" ]; then
        problems="no $name.err"
    else
        "$laminac" --emit=ir "$lam" >"$out" 2>"$err"
        rc=$?
        [ "$rc" -eq "$want" ] || problems="exit status $rc, expected $want"
        if ! cmp -s "$name.err" "$err"; then
            problems="${problems:+$problems; }stderr differs from $name.err"
        fi
        unlocated=$(grep 'error:' "$err" | grep -v -E "^$name\.lam:[0-9]+:[0-9]+: error: " | head -n 1)
        [ -z "$unlocated" ] || problems="${problems:+$problems; }error without a location: $unlocated"
    fi
    if [ -z "$problems" ]; then
        pass=$((pass + 1))
        echo "ok   $lam"
    else
        fail=$((fail + 1))
        echo "FAIL $lam: $problems"
        [ -f "$name.err" ] && diff -u "$name.err" "$err" | head -n 40
    fi
done
echo "diag: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
