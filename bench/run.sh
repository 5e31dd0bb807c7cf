#!/bin/sh
# bench/run.sh — what `make bench` runs: lamina's generated code against
# PyTorch on the same models, batches, threads and data, in one run.
#
#   1. builds, in build/bench/: for mlp, lenet5 and cnn a training binary
#      (--batch 64), a batch-1 inference binary (--batch 1
#      --inference-only) and a batch-64 one; for alexnet batch-1 and
#      batch-4 inference binaries; each is bench/bench.c over that model's
#      generated C, compiled with $BENCH_CFLAGS (default -O3 -march=native),
#      once per thread count (T > 1: laminac --threads T, -fopenmp);
#      then the FMA-peak probe (bench/peak.c) and the lm_sgemm probe
#      (bench/sgemm.c);
#   2. records the machine: CPU, ISA, BLAS (lm_blas_describe), compiler,
#      PyTorch, load average;
#   3. measures the FMA peak and lm_sgemm at 1 and 2 threads;
#   4. calibrates lamina and PyTorch at 2 threads: each of their sensible
#      thread settings once (lamina: split the batch across OpenMP threads,
#      laminac --threads, with OpenMP's default or passive waiting, or
#      give the threads to the BLAS; PyTorch: bench/torch_bench.py's
#      configs), keeping the fastest per model and measurement;
#   5. for each repetition, model and thread count (1, 2), runs lamina's
#      three measurements (training samples/s at batch 64, batch-1
#      latency, batch-64 inference samples/s), then PyTorch's: A B A B ...
#      AlexNet (forward only: batch-1 latency, batch-4 samples/s) gets
#      fewer repetitions;
#   6. runs the FMA probe again (the report warns when the 2-thread peak
#      is not about twice the 1-thread one, before or after: something else
#      was using the cores), then bench/report.py prints the table and writes results.md and
#      results.csv (bench/ for a full run; build/bench/ for a quick or
#      partial one, so that a smoke run never replaces real numbers).
#
# Every raw measurement is one JSON line in build/bench/raw.jsonl.
# Environment:
#   BENCH_QUICK=1     a smoke run of about 2 minutes (short windows, 1 rep)
#   BENCH_SECONDS     timed window per measurement (default 2)
#   BENCH_REPS        repetitions (default 5; AlexNet: BENCH_ALEXNET_REPS, 3)
#   BENCH_MODELS      subset of "mlp lenet5 cnn alexnet"
#   BENCH_THREADS     thread counts (default "1 2")
#   BENCH_CFLAGS      flags for the generated code (default -O3 -march=native)
#   BENCH_OUT         where results.md/csv go
#   B, BLAS, CC       as in the Makefile (set by `make bench`)
# About 13 minutes on a 2-core machine; run it on a quiet machine (the load
# average is recorded: anything else running skews the numbers).
# shellcheck disable=SC2317 # functions run through json() look unreachable
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
B=${B:-build}
BLAS=${BLAS:-$(cat "$B/blas.stamp" 2>/dev/null || echo openblas)}
CC=${CC:-cc}
OUT=$B/bench
BENCH_CFLAGS=${BENCH_CFLAGS:--O3 -march=native}
THREADS=${BENCH_THREADS:-1 2}
ALL_MODELS="mlp lenet5 cnn alexnet"
MODELS=${BENCH_MODELS:-$ALL_MODELS}
ALEX_BATCH=4
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    SECS=${BENCH_SECONDS:-0.25} WARM=0.1 REPS=${BENCH_REPS:-1} AREPS=${BENCH_ALEXNET_REPS:-1}
    CAL=0.2 CAL_ROUNDS=1
    DEST=${BENCH_OUT:-$OUT}
else
    SECS=${BENCH_SECONDS:-2} WARM=0.3 REPS=${BENCH_REPS:-5} AREPS=${BENCH_ALEXNET_REPS:-3}
    CAL=0.4 CAL_ROUNDS=3
    if [ "$MODELS" = "$ALL_MODELS" ] && [ "$THREADS" = "1 2" ]; then
        DEST=${BENCH_OUT:-bench}
    else
        DEST=${BENCH_OUT:-$OUT}
    fi
fi

if [ ! -x ./laminac ] || [ ! -f "$B/liblamina_rt.a" ]; then
    echo "bench/run.sh: run 'make' first" >&2
    exit 2
fi
LIBS="$B/liblamina_rt.a -lz -lm"
[ "$BLAS" = openblas ] && LIBS="$B/liblamina_rt.a $(pkg-config --libs openblas) -lz -lm"
mkdir -p "$OUT/bin" "$DEST"
RAW=$OUT/raw.jsonl
: >"$RAW"
T0=$(date +%s)
failed=0
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# CPU time of the whole machine (busy: user nice system irq softirq; steal:
# taken by the hypervisor for other guests), in clock ticks, to tell at the
# end how much of it was not this run's (the load average is no guide on
# these virtual machines: idle kernel threads keep it near 1).
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
CPU0=$(cpu_ticks)

fact() { # fact KEY VALUE: a line of RAW describing the run
    $PY -c 'import json, sys; print(json.dumps({"impl": "fact", "key": sys.argv[1], "value": sys.argv[2]}))' \
        "$1" "$2" >>"$RAW"
}
upper() { echo "$1" | tr '[:lower:]' '[:upper:]'; }

# ---- 1. build ------------------------------------------------------------
# variant NAME: the laminac flags of a binary
variant_flags() {
    case $1 in
    train) echo "--batch 64" ;;
    inf1) echo "--batch 1 --inference-only" ;;
    inf64) echo "--batch 64 --inference-only" ;;
    "inf$ALEX_BATCH") echo "--batch $ALEX_BATCH --inference-only" ;;
    esac
}
rt_omp=""
grep -qs "pragma omp\|omp_" runtime/*.c && rt_omp=1
# laminac --threads N: the generated passes split the batch in N parts
# (OpenMP). With it, each thread count T > 1 gets builds of its own
# (--threads T, -fopenmp); 1 thread is the default build, as a user who
# wants one thread compiles it.
split=""
./laminac --help 2>&1 | grep -q -- "--threads" && split=1
echo "== building in $OUT (generated code: $CC $BENCH_CFLAGS)"
build() { # build MODEL VARIANT THREADS -> $OUT/bin/MODEL_VARIANT_tTHREADS
    m=$1 v=$2 t=$3 d=$OUT/gen/$1_$2_t$3
    mkdir -p "$d"
    tflags="" omp=""
    if [ "$t" -gt 1 ] && [ -n "$split" ]; then tflags="--threads $t" omp=-fopenmp; fi
    # shellcheck disable=SC2046,SC2086
    ./laminac $(variant_flags "$v") $tflags "examples/$m.lam" -o "$d" || return 1
    [ -n "$rt_omp" ] && omp=-fopenmp
    has=""
    grep -q "${m}_set_threads" "$d/$m.h" && has=-DBENCH_HAS_THREADS
    # shellcheck disable=SC2086
    $CC -std=c99 $BENCH_CFLAGS $omp $has -D_POSIX_C_SOURCE=200809L -Iruntime -I"$d" \
        -DMODEL="$m" -DMODELU="$(upper "$m")" -include "$d/$m.h" \
        bench/bench.c "$d/$m.c" $LIBS -o "$OUT/bin/${m}_${v}_t$t"
}
for m in $MODELS; do
    if [ "$m" = alexnet ]; then variants="inf1 inf$ALEX_BATCH"; else variants="train inf1 inf64"; fi
    for v in $variants; do
        for t in $THREADS; do
            build "$m" "$v" "$t" || { echo "bench/run.sh: building $m ($v, $t threads) failed" >&2; exit 1; }
        done
    done
done
$CC -std=c99 -O2 -march=native -pthread bench/peak.c -o "$OUT/bin/peak"
# shellcheck disable=SC2086
$CC -std=c99 -O2 -D_POSIX_C_SOURCE=200809L -Iruntime bench/sgemm.c $LIBS -o "$OUT/bin/sgemm"

# ---- 2. the machine --------------------------------------------------------
first=$(echo "$MODELS" | awk '{print $1}')
fv=train_t$(echo "$THREADS" | awk '{print $1}')
[ "$first" = alexnet ] && fv=inf1_t$(echo "$THREADS" | awk '{print $1}')
fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
fact cores "$(nproc)"
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa=""
for f in sse4_2 avx avx2 fma avx512f; do
    case " ${flags#*:} " in *" $f "*) isa="$isa $f" ;; esac
done
fact cpu_flags "${isa# }"
fact kernel "$(uname -sr)"
fact cc "$($CC --version | head -n 1)"
fact cflags "$BENCH_CFLAGS"
fact blas "$(OPENBLAS_NUM_THREADS=1 "$OUT/bin/${first}_$fv" info | sed -n 's/.*"blas":"\([^"]*\)".*/\1/p') (BLAS=$BLAS)"
fact blas_config "$("$OUT/bin/${first}_$fv" info | sed -n 's/.*"blas_config":"\([^"]*\)".*/\1/p')"
if [ -n "$split" ]; then
    fact lamina_threads "1 thread: the default build, lm_set_threads(1), OPENBLAS_NUM_THREADS=1. T > 1: built with laminac --threads T and -fopenmp; split = NAME_set_threads(m, T) with the BLAS on 1 thread (split_passive: and OMP_WAIT_POLICY=PASSIVE), blas = NAME_set_threads(m, 1) with lm_set_threads(T); OPENBLAS_NUM_THREADS and OMP_NUM_THREADS as used"
else
    fact lamina_threads "lm_set_threads(T), OPENBLAS_NUM_THREADS=T, OMP_NUM_THREADS=T (laminac has no --threads)"
fi
fact torch "$($PY -c 'import torch; print(torch.__version__, "(Debian python3-torch;", torch.__config__.parallel_info().split(chr(10))[2].strip() + ")")' 2>/dev/null | tr -s ' ' || echo 'not installed')"
fact numpy "$($PY -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo '?')"
fact commit "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain 2>/dev/null | grep -q . && echo ' + uncommitted changes')"
fact loadavg_start "$LOAD0"
fact quick "${BENCH_QUICK:-0}"
fact reps "$REPS"
fact alexnet_reps "$AREPS"
fact seconds "$SECS"
fact warmup "$WARM"
# The FLOPs of the layers as written (--no-rewrite), the arithmetic PyTorch
# does: rewrite.c's crops would make lamina's count smaller than the work
# the model asks for, and its fraction of the peak look lower for being
# faster.
for m in $MODELS; do
    summary=$(./laminac --summary --no-rewrite "examples/$m.lam")
    fact "flops_$m" "$(echo "$summary" | sed -n 's/^Forward FLOPs per sample: //p' | tr -d ',')"
    fact "train_flops_$m" "$(echo "$summary" | sed -n 's/^Training FLOPs per sample: \([0-9,]*\).*/\1/p' | tr -d ',')"
done
echo "== $(cut -d' ' -f1-3 /proc/loadavg) load average; $(grep -c . "$RAW") facts recorded"

# ---- 3. probes -------------------------------------------------------------
# json CMD...: runs CMD, appends the JSON lines it prints to RAW and shows
# a one-line summary of each; fails when CMD does.
json() {
    rc=0
    "$@" >"$OUT/last.jsonl" || rc=$?
    grep '^{' "$OUT/last.jsonl" >>"$RAW" || true
    sed -n -E -e 's/.*"model": ?"([^"]*)".*"measure": ?"([a-z_]+)".*"threads": ?([0-9]+).*"value": ?([-0-9.e+]+).*"unit": ?"([^"]*)".*/     \1 \2 \3T: \4 \5/p' \
        -e 's/.*"measure": ?"([a-z_]+)".*"threads": ?([0-9]+).*"shape": ?"([^"]*)".*"value": ?([-0-9.e+]+).*"unit": ?"([^"]*)".*/     \1 \3 \2T: \4 \5/p' \
        -e 's/.*"measure": ?"(fma_peak)".*"threads": ?([0-9]+).*"value": ?([-0-9.e+]+).*"unit": ?"([^"]*)".*/     \1 \2T: \3 \4/p' \
        "$OUT/last.jsonl"
    return $rc
}
echo "== probes"
for t in $THREADS; do
    json "$OUT/bin/peak" "$t" 1.5 || failed=1
    json env OPENBLAS_NUM_THREADS="$t" "$OUT/bin/sgemm" "$t" "$(echo "$SECS" | awk '{print $1 / 4}')" ||
        failed=1
done

# ---- 4. PyTorch's 2-thread settings ----------------------------------------
# PyTorch's candidates at 2 threads (torch_bench.py's omp2_blas2, both pools
# spinning, is the trap issue 5 describes: 2-3x slower, never the best).
TORCH_CONFIGS="omp2_blas1 omp2_blas2_passive omp1_blas2"
torch_run() { # torch_run MODEL THREADS CONFIG MEASURES SECONDS WARMUP
    batch=64
    [ "$1" = alexnet ] && batch=$ALEX_BATCH
    $PY bench/torch_bench.py --model "$1" --threads "$2" --config "$3" \
        --measure "$4" --seconds "$5" --warmup "$6" --batch "$batch"
}
measures_of() { [ "$1" = alexnet ] && echo "latency throughput" || echo "train latency throughput"; }
LAMINA_CONFIGS="blas"
[ -n "$split" ] && LAMINA_CONFIGS="split split_passive blas"
lamina_run() { # lamina_run MODEL THREADS MEASURE CONFIG SECONDS WARMUP
    case $1:$3 in
    alexnet:latency) v=inf1 ;;
    alexnet:throughput) v=inf$ALEX_BATCH ;;
    *:train) v=train ;;
    *:latency) v=inf1 ;;
    *:throughput) v=inf64 ;;
    esac
    b=1 wait="-u OMP_WAIT_POLICY"
    [ "$4" = blas ] && b=$2
    [ "$4" = split_passive ] && wait=OMP_WAIT_POLICY=PASSIVE
    # shellcheck disable=SC2086
    env $wait OPENBLAS_NUM_THREADS=$b OMP_NUM_THREADS=$2 "$OUT/bin/${1}_${v}_t$2" "$3" "$2" "$5" "$6" "$4"
}
if echo " $THREADS " | grep -q " 2 "; then
    # Each setting once per round, rounds interleaved; report.py keeps the
    # setting with the best median. (Spinning OpenMP is bimodal on a
    # shared machine: fine while the other core is free, a scheduler
    # quantum per parallel region when it is not. One short run is not
    # enough to tell.)
    round=1
    while [ "$round" -le "$CAL_ROUNDS" ]; do
        echo "== 2 threads: trying lamina's and PyTorch's settings, round $round/$CAL_ROUNDS"
        for m in $MODELS; do
            for c in $LAMINA_CONFIGS; do
                echo "   $m lamina $c"
                for x in $(measures_of "$m"); do
                    BENCH_REP=$round BENCH_PHASE=calibrate json lamina_run "$m" 2 "$x" "$c" "$CAL" 0.2 ||
                        { echo "bench/run.sh: lamina $m $x ($c) failed" >&2; failed=1; }
                done
            done
            for c in $TORCH_CONFIGS; do
                echo "   $m pytorch $c"
                BENCH_REP=$round BENCH_PHASE=calibrate json torch_run "$m" 2 "$c" \
                    "$(measures_of "$m" | tr ' ' ',')" "$CAL" 0.2 ||
                    { echo "bench/run.sh: PyTorch $m ($c) failed" >&2; failed=1; }
            done
        done
        round=$((round + 1))
    done
fi

# ---- 5. the measurements, interleaved --------------------------------------
one_round() { # one_round REP MODEL THREADS
    r=$1 m=$2 t=$3
    echo "   rep $r/$REPS $m, $t thread(s)"
    for x in $(measures_of "$m"); do
        c=t1
        [ "$t" != 1 ] && c=$($PY bench/report.py choose "$RAW" lamina "$m" "$x" "$t")
        BENCH_REP=$r BENCH_PHASE=main json lamina_run "$m" "$t" "$x" "$c" "$SECS" "$WARM" ||
            { echo "bench/run.sh: lamina $m $x failed" >&2; failed=1; }
    done
    # PyTorch: one process per thread setting (usually one for all three).
    groups=""
    for x in $(measures_of "$m"); do
        if [ "$t" = 1 ]; then c=t1; else c=$($PY bench/report.py choose "$RAW" pytorch "$m" "$x" "$t"); fi
        groups="$groups $c:$x"
    done
    for c in $(echo "$groups" | tr ' ' '\n' | sed -n 's/:.*//p' | sort -u); do
        xs=$(echo "$groups" | tr ' ' '\n' | sed -n "s/^$c://p" | tr '\n' ',' | sed 's/,$//')
        BENCH_REP=$r BENCH_PHASE=main json torch_run "$m" "$t" "$c" "$xs" "$SECS" "$WARM" ||
            { echo "bench/run.sh: PyTorch $m failed" >&2; failed=1; }
    done
}
echo "== measurements: $REPS repetitions, ${SECS} s windows"
r=1
while [ "$r" -le "$REPS" ]; do
    for m in $MODELS; do
        [ "$m" = alexnet ] && [ "$r" -gt "$AREPS" ] && continue
        for t in $THREADS; do
            one_round "$r" "$m" "$t"
        done
    done
    r=$((r + 1))
done

# ---- 6. the table ------------------------------------------------------------
fact loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== the FMA probe again (did anything else use the cores?)"
for t in $THREADS; do
    BENCH_PHASE=end json "$OUT/bin/peak" "$t" 1 || failed=1
done
T1=$(date +%s)
fact duration "$(((T1 - T0) / 60)) min $(((T1 - T0) % 60)) s"
# Others' share: the machine's busy time minus this script's children's
# (bash's `times`: user and system time of the waited-for children).
CPU1=$(cpu_ticks)
times >"$OUT/times.txt" # not in a pipeline: that would be a subshell's times
fact cpu_others "$(tail -n 1 "$OUT/times.txt" | awk -v a="$CPU0" -v b="$CPU1" -v hz="$(getconf CLK_TCK)" -v s="$((T1 - T0))" '
    function sec(t) { split(t, x, "m"); sub("s", "", x[2]); return x[1] * 60 + x[2] }
    { split(a, p, " "); split(b, q, " ");
      others = (q[1] - p[1]) / hz - sec($1) - sec($2); steal = (q[2] - p[2]) / hz;
      if (others < 0) others = 0;
      printf "%.1f %.1f %d", others, steal, s }')"
echo
$PY bench/report.py table "$RAW" "$DEST"
echo
echo "bench: wrote $DEST/results.md and $DEST/results.csv (raw: $RAW) in $(((T1 - T0) / 60)) min $(((T1 - T0) % 60)) s"
exit "$failed"
