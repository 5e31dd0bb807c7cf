#!/bin/sh
# tests/bench/run.sh — keeps the benchmark's code from rotting; times nothing.
#
# Run from the repository root after `make`. Builds bench/bench.c over each
# bench model's generated C as bench/run.sh does (mlp, lenet5 and cnn:
# training, batch-1 and batch-64 inference builds, and with laminac
# --threads 2 and OpenMP the training and batch-64 ones; alexnet: batch-1
# and batch-4 inference builds), runs each measurement for a few
# milliseconds at 1 and 2 threads (2 threads: the BLAS's, and the split
# batch of the --threads builds), and checks that every run exits 0 and
# prints well-formed JSON with the fields bench/report.py reads (a value
# that is a positive finite number, the right model, measure, threads and
# batch). Also: the FMA and lm_sgemm probes, bench/report.py on the lines
# collected (it must write results.md and results.csv), and that
# bench/run.sh and bench/torch_bench.py parse. PyTorch is not run.
# Ends with "bench: N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=/usr/bin/python3
LIBS="build/liblamina_rt.a $(pkg-config --libs openblas 2>/dev/null) -lz -lm"
if [ "$(cat build/blas.stamp 2>/dev/null)" = none ]; then LIBS="build/liblamina_rt.a -lz -lm"; fi
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

if [ ! -x ./laminac ] || [ ! -f build/liblamina_rt.a ]; then
    echo "tests/bench/run.sh: run 'make' first" >&2
    exit 2
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
ALL="$OUT/all.jsonl"
: >"$ALL"

# valid FILE MODEL MEASURE THREADS BATCH CONFIG [MEASURE2]: FILE holds one JSON line
# per expected measure, each well-formed and sensible.
valid() {
    $PY - "$@" <<'EOF'
import json, math, sys
path, model, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
want = [sys.argv[3]] + sys.argv[7:]
lines = [l for l in open(path).read().splitlines() if l.strip()]
if len(lines) != len(want):
    sys.exit("expected %d line(s), got %d: %r" % (len(want), len(lines), lines))
for line, measure in zip(lines, want):
    d = json.loads(line)
    for key in ("impl", "model", "measure", "threads", "batch", "value", "unit"):
        if key not in d:
            sys.exit("no %r in %s" % (key, line))
    expect = {"impl": "lamina", "model": model, "measure": measure, "threads": threads,
              "batch": batch, "config": sys.argv[6] if threads > 1 else "t1"}
    for k, v in expect.items():
        if d[k] != v:
            sys.exit("%s is %r, expected %r: %s" % (k, d[k], v, line))
    v = d["value"]
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        sys.exit("value %r is not a positive number: %s" % (v, line))
    if measure == "memory" and not (d["size_bytes"] > 0 and d["resident_bytes"] > 0):
        sys.exit("memory line without sizes: %s" % line)
EOF
}

# build MODEL NAME FLAGS...: the binary bench/run.sh would build, as
# $OUT/MODEL_NAME (with OpenMP when FLAGS hold --threads).
build() {
    m=$1 v=$2
    shift 2
    d=$OUT/gen/${m}_$v
    mkdir -p "$d"
    upper=$(echo "$m" | tr '[:lower:]' '[:upper:]')
    omp="" has=""
    case " $* " in *" --threads "*) omp=-fopenmp ;; esac
    grep -qs "pragma omp\|omp_" runtime/*.c && omp=-fopenmp
    ./laminac "$@" "examples/$m.lam" -o "$d" 2>"$OUT/err" || return 1
    grep -q "${m}_set_threads" "$d/$m.h" && has=-DBENCH_HAS_THREADS
    # shellcheck disable=SC2086
    cc -std=c99 -O1 -Wall -Wextra -Werror -pedantic $omp $has -D_POSIX_C_SOURCE=200809L \
        -Iruntime -I"$d" -DMODEL="$m" -DMODELU="$upper" -include "$d/$m.h" \
        bench/bench.c "$d/$m.c" $LIBS -o "$OUT/${m}_$v" 2>>"$OUT/err"
}

# run NAME MODEL BINARY MEASURE THREADS BATCH CONFIG [EXTRA_MEASURE]
run() {
    name=$1 m=$2 bin=$3 measure=$4 t=$5 batch=$6 config=$7
    shift 7
    if ! OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t BENCH_REP=1 BENCH_PHASE=main \
        "$OUT/$bin" "$measure" "$t" 0.02 0.005 "$config" >"$OUT/out.jsonl" 2>"$OUT/err"; then
        bad "$name: exit status $? ($(cat "$OUT/err"))"
        return
    fi
    if msg=$(valid "$OUT/out.jsonl" "$m" "$measure" "$t" "$batch" "$config" "$@" 2>&1); then
        ok "$name: well-formed JSON"
        cat "$OUT/out.jsonl" >>"$ALL"
    else
        bad "$name: $msg"
    fi
}

# laminac --threads (batch split across OpenMP threads), when it has it.
split=""
./laminac --help 2>&1 | grep -q -- "--threads" && split=1
for m in mlp lenet5 cnn alexnet; do
    if [ $m = alexnet ]; then
        set -- "inf1:--batch 1 --inference-only" "inf4:--batch 4 --inference-only"
    else
        set -- "train:--batch 64" "inf1:--batch 1 --inference-only" "inf64:--batch 64 --inference-only"
        [ -n "$split" ] && set -- "$@" "train_t2:--batch 64 --threads 2" \
            "inf64_t2:--batch 64 --inference-only --threads 2"
    fi
    for spec in "$@"; do
        v=${spec%%:*}
        # shellcheck disable=SC2086
        if build $m "$v" ${spec#*:}; then
            ok "$m ($v): bench.c builds warning-free"
        else
            bad "$m ($v): build failed: $(cat "$OUT/err")"
            continue
        fi
        case $v in
        *_t2) runs="2:split 2:split_passive 2:blas" ;;
        *) runs="1:t1 2:blas" ;;
        esac
        for tc in $runs; do
            t=${tc%%:*} c=${tc#*:}
            case $v in
            train*) run "$m train, $t thread(s), $c" $m "${m}_$v" train "$t" 64 "$c" memory ;;
            inf1) run "$m latency, $t thread(s), $c" $m "${m}_$v" latency "$t" 1 "$c" weights ;;
            inf64*) run "$m throughput, $t thread(s), $c" $m "${m}_$v" throughput "$t" 64 "$c" ;;
            inf4) run "$m throughput, $t thread(s), $c" $m "${m}_$v" throughput "$t" 4 "$c" ;;
            esac
        done
    done
done

# An inference build has no train mode, and says so.
if "$OUT/mlp_inf1" train 1 0.01 >/dev/null 2>"$OUT/err"; then
    bad "train on an --inference-only build should fail"
else
    grep -q "not available" "$OUT/err" && ok "train on an --inference-only build is refused" ||
        bad "train on an --inference-only build: $(cat "$OUT/err")"
fi

# The probes.
if cc -std=c99 -O2 -march=native -Wall -Wextra -Werror -pedantic -pthread bench/peak.c \
    -o "$OUT/peak" 2>"$OUT/err"; then
    for t in 1 2; do
        "$OUT/peak" $t 0.03 >"$OUT/out.jsonl" &&
            $PY -c 'import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["measure"] == "fma_peak" and d["threads"] == int(sys.argv[2]) and d["value"] > 0, d' \
                "$OUT/out.jsonl" $t && cat "$OUT/out.jsonl" >>"$ALL" &&
            ok "FMA probe, $t thread(s): well-formed JSON" || bad "FMA probe, $t thread(s)"
    done
else
    bad "peak.c: $(cat "$OUT/err")"
fi
if cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -Iruntime \
    bench/sgemm.c $LIBS -o "$OUT/sgemm" 2>"$OUT/err"; then
    OPENBLAS_NUM_THREADS=1 "$OUT/sgemm" 1 0.005 "tiny:0,1,3,5,7" "square 64:0,0,64,64,64" \
        >"$OUT/out.jsonl" &&
        $PY -c 'import json, sys
ls = [json.loads(l) for l in open(sys.argv[1])]
assert [l["shape"] for l in ls] == ["tiny", "square 64"] and all(l["value"] > 0 for l in ls), ls' \
            "$OUT/out.jsonl" && cat "$OUT/out.jsonl" >>"$ALL" &&
        ok "lm_sgemm probe: well-formed JSON" || bad "lm_sgemm probe"
    "$OUT/sgemm" 1 0.01 "bad:1,2" >/dev/null 2>&1 && bad "lm_sgemm probe accepts a bad shape" ||
        ok "lm_sgemm probe rejects a bad shape"
else
    bad "sgemm.c: $(cat "$OUT/err")"
fi

# The report, from these lines (no PyTorch rows: its columns stay empty).
for kv in "cpu:test" "flops_mlp:470322" "flops_lenet5:852410" "flops_cnn:1369306" "reps:1"; do
    $PY -c 'import json, sys; k, v = sys.argv[1].split(":", 1); print(json.dumps({"impl": "fact", "key": k, "value": v}))' \
        "$kv" >>"$ALL"
done
if $PY bench/report.py table "$ALL" "$OUT" >"$OUT/table.txt" 2>"$OUT/err" &&
    grep -q "LeNet-5 | training samples/s | 64 | 1 |" "$OUT/results.md" &&
    [ "$(head -n 1 "$OUT/results.csv" | cut -d, -f1-3)" = "model,measure,batch" ] &&
    grep -q "^lenet5,memory," "$OUT/results.csv"; then
    ok "report.py writes results.md and results.csv"
else
    bad "report.py: $(cat "$OUT/err")"
fi

sh -n bench/run.sh && ok "bench/run.sh parses" || bad "bench/run.sh does not parse"
$PY -c 'import py_compile, sys
for f in sys.argv[2:]:
    py_compile.compile(f, cfile=sys.argv[1] + "/x.pyc", doraise=True)' "$OUT" bench/torch_bench.py bench/report.py 2>"$OUT/err" &&
    ok "torch_bench.py and report.py compile" || bad "py_compile: $(cat "$OUT/err")"

echo "bench: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
