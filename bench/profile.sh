#!/bin/sh
# bench/profile.sh — where a training step of the generated code spends
# its time; a tool for whoever optimises the emitter, not part of
# `make bench`.
#
#   bench/profile.sh MODEL [THREADS]      (after `make`; MODEL in examples/)
#
# Builds MODEL's training binary as bench/run.sh does (--batch 64,
# $BENCH_CFLAGS, default -O3 -march=native) plus -g (and, for valgrind,
# which does not decode AVX-512, a copy with -mno-avx512f), then
#   1. lm_sgemm by caller and shape: the binary again with every lm_sgemm
#      call wrapped and timed (bench/gemmprof.c, -Wl,--wrap=lm_sgemm),
#      2 s of train_step at THREADS (default 1) threads: per step, the
#      calls and microseconds of each (generated function, shape), and the
#      share of the step spent in lm_sgemm (with THREADS > 1, the model is
#      built with laminac --threads and run split_passive, and the times
#      are summed over the threads);
#   2. perf record -e cpu-clock (a software timer: hardware counters are
#      not available on this project's virtual machines, but sampling on
#      the clock is), 2 s of train_step: time by function, the generated
#      functions kept out of line (-fno-inline-functions-called-once
#      -fno-inline-functions -fno-inline-small-functions) so that each keeps its name;
#   3. callgrind (valgrind) over a few train_step calls, collecting only
#      inside NAME_train_step: instructions by function, self cost
#      (instructions, not time: a cache miss or a division costs more than
#      its share); PROFILE_CALLGRIND=0 skips it (it takes a minute or so).
# Output in build/bench/profile/MODEL/.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/profile.sh MODEL [THREADS]" >&2; exit 2; }
M=$1
T=${2:-1}
B=${B:-build}
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O3 -march=native}
D=$B/bench/profile/$M
LIBS="$B/liblamina_rt.a -lz -lm"
[ "$(cat "$B/blas.stamp" 2>/dev/null || echo openblas)" = openblas ] &&
    LIBS="$B/liblamina_rt.a $(pkg-config --libs openblas) -lz -lm"
mkdir -p "$D"
# As bench/run.sh builds it: 1 thread, the default build; T > 1, laminac
# --threads T and OpenMP, run with the batch split in T parts.
tflags="" omp="" has="" config=t1
if [ "$T" -gt 1 ] && ./laminac --help 2>&1 | grep -q -- "--threads"; then
    tflags="--threads $T" omp=-fopenmp config=split_passive
fi
[ "$T" -gt 1 ] && [ -z "$tflags" ] && config=blas
# shellcheck disable=SC2086
./laminac --batch 64 $tflags "examples/$M.lam" -o "$D"
grep -q "${M}_set_threads" "$D/$M.h" && has=-DBENCH_HAS_THREADS
U=$(echo "$M" | tr '[:lower:]' '[:upper:]')
# shellcheck disable=SC2086
set -- -std=c99 $BENCH_CFLAGS $omp $has -g -D_POSIX_C_SOURCE=200809L -Iruntime -I"$D" \
    -DMODEL="$M" -DMODELU="$U" -include "$D/$M.h"
# shellcheck disable=SC2086
$CC "$@" -no-pie -DBENCH_PROFILE bench/bench.c bench/gemmprof.c "$D/$M.c" $LIBS \
    -Wl,--wrap=lm_sgemm -pthread -o "$D/gemmprof"
# For the per-function views: the generated functions are not inlined into
# the passes that call them once, so that each keeps its name; helpers
# declared inline (tanh, exp) still are, and the loops compile as before.
# For valgrind, which (3.19) does not decode AVX-512: the same without it.
NOINLINE="-fno-inline-functions-called-once -fno-inline-functions -fno-inline-small-functions"
# shellcheck disable=SC2086
$CC "$@" $NOINLINE bench/bench.c "$D/$M.c" $LIBS -o "$D/bench-noinline"
# shellcheck disable=SC2086
$CC "$@" $NOINLINE -mno-avx512f bench/bench.c "$D/$M.c" $LIBS -o "$D/bench-vg"

echo "== $M: lm_sgemm per training step (batch 64, $T thread(s)), by caller and shape"
B_THREADS=$T
[ "$config" = blas ] || B_THREADS=1
export OPENBLAS_NUM_THREADS="$B_THREADS" OMP_NUM_THREADS="$T"
[ "$config" = split_passive ] && export OMP_WAIT_POLICY=PASSIVE
"$D/gemmprof" train "$T" 2 0.5 "$config" >"$D/train.json" 2>"$D/gemm.txt"
cat "$D/train.json"
# Each caller address -> the innermost function (inlined or not) it lies in.
while read -r kind addr rest; do
    if [ "$kind" = gemm ]; then
        # the call instruction is just before the return address
        fn=$(addr2line -f -i -e "$D/gemmprof" "$(printf '0x%x' $((addr - 1)))" | head -n 1)
        echo "$fn $rest"
    else
        echo "total $addr $rest"
    fi
done <"$D/gemm.txt" | awk '
    $1 == "total" { gemm = $2; step = $3; next }
    { line[++n] = $0; us[n] = $8 }
    END {
        printf "%-34s %-3s %-3s %5s %5s %5s %9s %10s %7s %7s\n", "function", "tA", "tB", "m", "n", "k",
               "calls", "us/step", "% step", "GFLOP/s"
        for (i = 1; i <= n; i++) order[i] = i
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (us[order[j]] > us[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
        for (i = 1; i <= n; i++) {
            split(line[order[i]], f, " ")
            gf = us[order[i]] > 0 ? 2.0 * f[4] * f[5] * f[6] * f[7] / (us[order[i]] * 1e3) : 0
            printf "%-34s %-3s %-3s %5d %5d %5d %9g %10.1f %6.1f%% %7.1f\n", f[1], f[2], f[3], f[4], f[5],
                   f[6], f[7], f[8], 100 * f[8] / step, gf
        }
        printf "lm_sgemm: %.0f us of a %.0f us step (%.0f%%); the rest: %.0f us\n", gemm, step,
               100 * gemm / step, step - gemm
    }' | tee "$D/gemm_by_shape.txt"

if perf record -e cpu-clock -o "$D/perf.probe" true >/dev/null 2>&1; then
    echo
    echo "== $M: perf (cpu-clock samples, time), by function, $T thread(s), generated functions kept out of line"
    perf record -e cpu-clock -F 4000 -o "$D/perf.data" \
        "$D/bench-noinline" train "$T" 2 0.3 "$config" >/dev/null 2>"$D/perf.log"
    perf report -i "$D/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//' | head -n 30 | tee "$D/perf.txt"
fi
rm -f "$D/perf.probe"

if [ "${PROFILE_CALLGRIND:-1}" != 1 ]; then
    :
elif command -v valgrind >/dev/null 2>&1; then
    echo
    echo "== $M: callgrind, instructions inside ${M}_train_step by function (self), $T thread(s)"
    valgrind --tool=callgrind \
        --callgrind-out-file="$D/callgrind.out" --toggle-collect="${M}_train_step" \
        "$D/bench-vg" train "$T" 0 0 "$config" >/dev/null 2>"$D/valgrind.log" || {
        echo "valgrind failed: see $D/valgrind.log" >&2
        exit 1
    }
    callgrind_annotate --inclusive=no --auto=no "$D/callgrind.out" 2>/dev/null |
        sed -n '/^Ir/,$p' | sed -e 's| \[/[^]]*\]$||' -e "s|$D/||" | sed -n '1,32p' |
        tee "$D/callgrind.txt"
else
    echo "(valgrind is not installed: no callgrind profile)"
fi
