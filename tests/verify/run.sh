#!/bin/sh
# tests/verify/run.sh — laminac --verify (compiler/verify.c), from the repo root.
#
# Builds build/laminac-verify (make laminac-verify: laminac with libclang;
# ./laminac is left as it is) and tests/verify/vcheck (verify.c on files
# already written), then:
#   - every example, for training and with --inference-only (and one with
#     --input-grad --prefix), must pass --verify and report its stack;
#   - copies of a freshly generated model, each broken in one way by
#     break.py (an allocation, a variable-length array, recursion, printf or
#     fopen or a non-compute runtime call on the hot path, a call through a
#     pointer, a syntax error, a warning in the .c or the .h), must each be
#     rejected with exactly one problem, for that reason (the message is
#     grepped); an unbroken edit (control) must pass.
# The last line is "verify: N passed, N failed"; exit status 0 only when
# nothing failed.
set -u

if [ ! -f compiler/verify.c ]; then
    echo "run.sh: run from the repository root" >&2
    exit 2
fi
OUT=build/test-verify
LLVM_DIR=${LLVM_DIR:-/usr/lib/llvm-14}
PY=/usr/bin/python3
rm -rf "$OUT"
mkdir -p "$OUT"

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || sed 's/^/     | /' "$2"; }

if ! make --no-print-directory laminac-verify >"$OUT/build.log" 2>&1 ||
   ! ${CC:-cc} -std=c99 -O2 -g -Wall -Wextra -Wshadow -Wmissing-prototypes \
        -Wstrict-prototypes -Werror -Icompiler -o "$OUT/vcheck" tests/verify/vcheck.c \
        build/clang/compiler/verify.o build/clang/compiler/util.o \
        -L"$LLVM_DIR/lib" -lclang -Wl,-rpath,"$LLVM_DIR/lib" >>"$OUT/build.log" 2>&1; then
    bad "build laminac-verify and vcheck" "$OUT/build.log"
    echo "verify: $pass passed, $fail failed"
    exit 1
fi
# a hang in the compiler fails its test instead of the whole run
LAMINAC="build/laminac-verify"
command -v timeout >/dev/null && LAMINAC="timeout 300 $LAMINAC"

# ---- every example passes ------------------------------------------------

# example NAME DIR [laminac options...]: --verify passes; prints its stack line
example() {
    name=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    if $LAMINAC --verify "$@" -o "$dir" >"$dir/log" 2>&1 &&
       grep -q "^verify: [a-z_0-9]*\.c: ok: " "$dir/log"; then
        ok "$name: $(sed -n 's/^verify: [a-z_0-9]*\.c: ok: //p' "$dir/log")"
    else
        bad "$name" "$dir/log"
    fi
}

for f in examples/*.lam; do
    n=$(basename "$f" .lam)
    example "$n" "$OUT/$n" "$f"
    example "$n --inference-only" "$OUT/$n-inf" --inference-only "$f"
done
example "lenet5 --input-grad --prefix net" "$OUT/lenet5-ig" --input-grad --prefix net \
    examples/lenet5.lam
if grep -q "^verify: net\.c: stack from net_input_grad: " "$OUT/lenet5-ig/log"; then
    ok "net_input_grad is an entry point"
else
    bad "net_input_grad is an entry point" "$OUT/lenet5-ig/log"
fi
# the record: what is outside the hot path may allocate, and is listed
if grep -q "^  lenet5_create: .*malloc" "$OUT/lenet5/log" &&
   grep -q "^  lenet5_destroy: .*free" "$OUT/lenet5/log"; then
    ok "lenet5: create and destroy allocate outside the hot path, on the record"
else
    bad "lenet5: create/destroy not on the record" "$OUT/lenet5/log"
fi

# ---- broken copies are rejected -----------------------------------------

BASE=$OUT/base
mkdir -p "$BASE"
if ! $LAMINAC examples/lenet5.lam -o "$BASE" >"$OUT/base.log" 2>&1; then
    bad "generate lenet5 to break" "$OUT/base.log"
fi

# broken KIND WHAT PATTERN: break.py KIND on a copy; vcheck must reject it
# with one problem, the one matching PATTERN (grep -E)
broken() {
    kind=$1 what=$2 pattern=$3
    dir=$OUT/broken-$kind
    rm -rf "$dir"
    cp -r "$BASE" "$dir"
    if ! $PY tests/verify/break.py "$kind" "$dir" lenet5 >"$dir/log" 2>&1; then
        bad "$what: could not break the file" "$dir/log"
        return
    fi
    "$OUT/vcheck" "$dir" lenet5 runtime >"$dir/log" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -Eq "$pattern" "$dir/log" &&
       grep -q "^verify: lenet5\.c: FAILED: 1 problem$" "$dir/log"; then
        ok "rejects $what: $(grep -E "$pattern" "$dir/log" | head -n 1 | sed 's/^[^ ]*: //')"
    else
        bad "$what (exit $rc; wanted 1 and /$pattern/)" "$dir/log"
    fi
}

dir=$OUT/broken-control
cp -r "$BASE" "$dir"
if $PY tests/verify/break.py control "$dir" lenet5 >"$dir/log" 2>&1 &&
   "$OUT/vcheck" "$dir" lenet5 runtime >"$dir/log" 2>&1; then
    ok "accepts an edit that breaks nothing (control)"
else
    bad "control edit rejected" "$dir/log"
fi

broken malloc "malloc in a forward function" \
    'lenet5\.c:[0-9]+:[0-9]+: error: forward_[a-z_0-9]+ allocates memory on the hot path: calls malloc'
broken vla "a variable-length array" \
    "lenet5\.c:[0-9]+:[0-9]+: error: forward_[a-z_0-9]+: 'lm_vla_' is a variable-length array"
broken recursion "a recursive function on the hot path" \
    'lenet5\.c:[0-9]+:[0-9]+: error: lm_depth_ is recursive: lm_depth_ -> lm_depth_'
broken mutual "mutual recursion outside the hot path" \
    'lenet5\.c:[0-9]+:[0-9]+: error: lm_(odd|even)_ is recursive: lm_(odd|even)_ -> lm_(odd|even)_ -> lm_(odd|even)_'
broken printf "printf in a backward function" \
    'lenet5\.c:[0-9]+:[0-9]+: error: backward_[a-z_0-9]+ calls printf on the hot path'
broken fopen "fopen in lenet5_zero_grad" \
    'lenet5\.c:[0-9]+:[0-9]+: error: lenet5_zero_grad calls fopen on the hot path'
broken runtime "a runtime call that is not compute (lm_now)" \
    'lenet5\.c:[0-9]+:[0-9]+: error: forward_[a-z_0-9]+ calls lm_now on the hot path'
broken pointer "a call through a function pointer" \
    'lenet5\.c:[0-9]+:[0-9]+: error: forward_[a-z_0-9]+ calls through a function pointer on the hot path'
broken syntax "a syntax error" \
    'lenet5\.c:[0-9]+:[0-9]+: error: expected expression'
broken warning "a warning" \
    "lenet5\.c:[0-9]+:[0-9]+: warning: unused variable 'lm_unused_' \[-Wunused-variable\]"
broken header "a warning in the generated header" \
    'lenet5\.h:[0-9]+:[0-9]+: warning: .*\[-W'

# the same fault in inference-only code
dir=$OUT/broken-inf
rm -rf "$dir"
cp -r "$OUT/lenet5-inf" "$dir"
if $PY tests/verify/break.py malloc "$dir" lenet5 >"$dir/log" 2>&1 &&
   ! "$OUT/vcheck" "$dir" lenet5 runtime >"$dir/log" 2>&1 &&
   grep -q "error: forward_[a-z_0-9]* allocates memory on the hot path: calls malloc" "$dir/log"; then
    ok "rejects malloc in a forward function (--inference-only)"
else
    bad "malloc in a forward function (--inference-only)" "$dir/log"
fi

echo "verify: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
