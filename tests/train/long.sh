#!/bin/sh
# tests/train/long.sh — make test-long: the Fashion-MNIST accuracy runs.
#
# For the MLP, LeNet-5 and the Keras-style CNN, trains the lamina program
# (laminac --main examples/NAME.lam) and the same network in PyTorch
# (tests/train/torch_ref.py) with the same recipe: SGD lr 0.01 momentum
# 0.9, batch 64, default initialisation, inputs scaled to [0, 1], a new
# shuffle each epoch, 10 epochs, THREADS threads each (default 1). The two
# run side by side when the machine has 2 or more cores. Checks:
#   - after 5 epochs lamina's test accuracy is within 1.0 point of PyTorch's;
#   - after 10 epochs: MLP >= 87%, LeNet-5 >= 88%, CNN >= 88.5%.
# Prints each run's time and samples/s. Run from the repository root after
# `make`; needs dataset-fashion-mnist and python3-torch. Ends with
# "long: N passed, N failed"; exits non-zero if anything failed.
# Usage: tests/train/long.sh [mlp lenet5 cnn]
set -u
cd "$(dirname "$0")/../.." || exit 2
OUT=build/test-long
FM=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
THREADS=${THREADS:-1}
EPOCHS=10
LIBS="build/liblamina_rt.a $(pkg-config --libs openblas 2>/dev/null) -lz -lm"
models=${*:-mlp lenet5 cnn}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# The accuracy each model must reach after 10 epochs, in percent.
target() {
    case $1 in
    mlp) echo 87.0 ;;
    lenet5) echo 88.0 ;;
    cnn) echo 88.5 ;;
    esac
}

# acc CSV EPOCH: the test accuracy in percent after EPOCH in a metrics file.
acc() { awk -F, -v e="$2" '$1 == e { printf "%.2f", 100 * $4 }' "$1"; }

now() { date +%s.%N; }

parallel=0
[ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && parallel=1
mkdir -p "$OUT"
summary=""
for m in $models; do
    d=$OUT/$m
    mkdir -p "$d"
    if ! ./laminac --main "examples/$m.lam" -o "$d" ||
       ! cc -std=c99 -O2 -D_POSIX_C_SOURCE=200809L -Iruntime -I"$d" "$d/${m}_main.c" "$d/$m.c" $LIBS -o "$d/$m"; then
        bad "$m: build"
        continue
    fi
    echo "-- $m: lamina and PyTorch, $EPOCHS epochs, $THREADS thread(s) each"
    t0=$(now)
    "$d/$m" train --train "$FM/train-images-idx3-ubyte.gz" --test "$FM/t10k-images-idx3-ubyte.gz" \
        --epochs $EPOCHS --threads "$THREADS" --save "$d/$m.safetensors" --metrics "$d/lamina.csv" \
        --plot "$d/lamina.png" >"$d/lamina.log" 2>&1 &
    lpid=$!
    if [ $parallel = 0 ]; then
        wait $lpid
        lrc=$?
        t1=$(now)
    fi
    $PY tests/train/torch_ref.py "$m" $EPOCHS "$THREADS" "$d/torch.csv" >"$d/torch.log" 2>&1 &
    tpid=$!
    if [ $parallel = 1 ]; then
        wait $lpid
        lrc=$?
        t1=$(now)
    fi
    wait $tpid
    trc=$?
    t2=$(now)
    sed 's/^/  /' "$d/lamina.log" "$d/torch.log"
    if [ $lrc -ne 0 ] || [ $trc -ne 0 ]; then
        bad "$m: a run failed (lamina exit $lrc, torch exit $trc)"
        continue
    fi
    lt=$(echo "$t1 $t0" | awk '{ printf "%.0f", $1 - $2 }')
    [ $parallel = 1 ] || t0=$t1 # PyTorch started after lamina ended
    tt=$(echo "$t2 $t0" | awk '{ printf "%.0f", $1 - $2 }')
    l5=$(acc "$d/lamina.csv" 5)
    t5=$(acc "$d/torch.csv" 5)
    l10=$(acc "$d/lamina.csv" $EPOCHS)
    t10=$(acc "$d/torch.csv" $EPOCHS)
    rate=$(awk -F, 'NR > 1 { s += $5 } END { printf "%.0f", 60000 * (NR - 1) / s }' "$d/lamina.csv")
    if awk -v a="$l5" -v b="$t5" 'BEGIN { d = a - b; exit !(d <= 1.0 && d >= -1.0) }'; then
        ok "$m after 5 epochs: lamina $l5%, PyTorch $t5% (within 1.0 point)"
    else
        bad "$m after 5 epochs: lamina $l5%, PyTorch $t5% (more than 1.0 point apart)"
    fi
    want=$(target "$m")
    if awk -v a="$l10" -v b="$want" 'BEGIN { exit !(a >= b) }'; then
        ok "$m after $EPOCHS epochs: lamina $l10% >= $want% (PyTorch $t10%)"
    else
        bad "$m after $EPOCHS epochs: lamina $l10% < $want% (PyTorch $t10%)"
    fi
    summary="$summary
  $m: lamina $lt s (about $rate samples/s, test included), PyTorch $tt s; accuracy 5/10 epochs: lamina $l5/$l10, PyTorch $t5/$t10"
done
echo "timings ($THREADS thread(s) each$([ $parallel = 1 ] && echo ', lamina and PyTorch side by side')):$summary"
echo "long: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
