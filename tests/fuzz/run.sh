#!/bin/sh
# tests/fuzz/run.sh — the mutation test (the libFuzzer target is `make fuzz`).
#
# Builds laminac under AddressSanitizer and UBSan (build/asan/laminac,
# `make laminac-asan`), then runs tests/fuzz/mutate.py: 5000 seeded byte-level
# mutants of examples/*.lam, each through --summary --emit=ir (and every
# eighth through --emit=dot --inference-only), two at a time, checking that
# every run exits 0 or 1 with no signal or sanitizer report and that every
# error is located. FUZZ_RUNS and FUZZ_SEED change the count and the seed.
set -u
cd "$(dirname "$0")/../.." || exit 1
mkdir -p build
if ! make --no-print-directory -s laminac-asan >build/asan-make.log 2>&1; then
    cat build/asan-make.log
    echo "fuzz: 0 passed, 1 failed"
    exit 1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:exitcode=87
exec python3 tests/fuzz/mutate.py build/asan/laminac examples build/fuzz/mutants \
    "${FUZZ_RUNS:-5000}" "${FUZZ_SEED:-1}"
