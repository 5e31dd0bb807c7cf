#!/bin/sh
# tests/train/long.sh — make test-long: the Fashion-MNIST accuracy runs.
#
# For the MLP, LeNet-5 and the Keras-style CNN, trains the lamina program
# (laminac --main examples/NAME.lam) and the same network in PyTorch
# (tests/train/torch_ref.py) with the recipe of the model's train block,
# read back from laminac: SGD's learning rate, momentum, Nesterov and
# weight decay, the batch size, the initialiser family and the input
# scaling; 10 epochs; a new shuffle every epoch; THREADS threads each
# (default 1). Each seed of SEEDS (default "42 43 44") is one lamina run
# and one PyTorch run, side by side when the machine has 2 or more cores.
# Test accuracy after an epoch moves by about half a point from seed to
# seed, so the checks use the mean over the seeds:
#   - after 5 epochs, lamina's mean is within 1.0 point of PyTorch's;
#   - after 10 epochs, lamina's mean reaches MLP 87%, LeNet-5 88%, CNN 88.5%.
# Every run's accuracies and times are printed. Run from the repository
# root after `make`; needs dataset-fashion-mnist and python3-torch. Ends
# with "long: N passed, N failed"; exits non-zero if anything failed.
# Usage: tests/train/long.sh [mlp lenet5 cnn]
set -u
cd "$(dirname "$0")/../.." || exit 2
OUT=build/test-long
FM=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
THREADS=${THREADS:-1}
SEEDS=${SEEDS:-42 43 44}
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
# mean X...: their mean, 2 decimals.
mean() { echo "$*" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }'; }
now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{ printf "%.0f", $1 - $2 }'; }

# field TRAIN KEY: KEY's value in laminac's IR train line, such as
# "sgd(lr=0.01, momentum=0.9, nesterov=false, weight_decay=0) epochs=10 seed=42 init=default".
field() { echo "$1" | sed -n "s/.*[ (]$2=\\([^,) ]*\\).*/\\1/p"; }
# macro HEADER NAME: a number #defined in a generated header ("0.01f" -> "0.01").
macro() { awk -v m="$2" '$1 == "#define" && $2 == m { sub(/f$/, "", $3); print $3 }' "$1"; }

# recipe NAME: torch_ref.py's options for the train block of examples/NAME.lam.
recipe() {
    t=$(./laminac --emit=ir "examples/$1.lam" | sed -n 's/^; train: //p')
    case $t in
    sgd\(*) ;;
    *) echo "long.sh: examples/$1.lam does not train with SGD: $t" >&2; return 1 ;;
    esac
    U=$(echo "$1" | tr a-z A-Z)
    h=$OUT/$1/$1.h
    echo "--lr $(field "$t" lr) --momentum $(field "$t" momentum)" \
        "--weight-decay $(field "$t" weight_decay) --init $(field "$t" init)" \
        "--batch $(macro "$h" "${U}_BATCH") --scale $(macro "$h" "${U}_SCALE")" \
        "--shift $(macro "$h" "${U}_SHIFT")$([ "$(field "$t" nesterov)" = true ] && echo ' --nesterov')"
}

parallel=0
[ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && parallel=1
mkdir -p "$OUT"
summary=""
T0=$(now)
for m in $models; do
    d=$OUT/$m
    mkdir -p "$d"
    if ! ./laminac --main "examples/$m.lam" -o "$d" ||
       ! cc -std=c99 -O2 -D_POSIX_C_SOURCE=200809L -Iruntime -I"$d" "$d/${m}_main.c" "$d/$m.c" $LIBS -o "$d/$m" ||
       ! r=$(recipe "$m"); then
        bad "$m: build"
        continue
    fi
    echo "-- $m: $EPOCHS epochs, seeds $SEEDS, $THREADS thread(s); PyTorch: $r"
    l5="" t5="" l10="" t10="" ltime="" ttime="" failed=0
    for s in $SEEDS; do
        t0=$(now)
        "$d/$m" train --train "$FM/train-images-idx3-ubyte.gz" --test "$FM/t10k-images-idx3-ubyte.gz" \
            --epochs $EPOCHS --seed "$s" --threads "$THREADS" --save "$d/seed$s.safetensors" \
            --metrics "$d/lamina$s.csv" --plot "$d/lamina$s.png" >"$d/lamina$s.log" 2>&1 &
        lpid=$!
        if [ $parallel = 0 ]; then
            wait $lpid
            lrc=$?
            lt=$(since "$t0")
            t0=$(now)
        fi
        # shellcheck disable=SC2086
        $PY tests/train/torch_ref.py "$m" "$d/torch$s.csv" --epochs $EPOCHS --threads "$THREADS" \
            --seed "$s" $r >"$d/torch$s.log" 2>&1 &
        tpid=$!
        if [ $parallel = 1 ]; then
            wait $lpid
            lrc=$?
            lt=$(since "$t0")
        fi
        wait $tpid
        trc=$?
        tt=$(since "$t0")
        if [ $lrc -ne 0 ] || [ $trc -ne 0 ]; then
            cat "$d/lamina$s.log" "$d/torch$s.log"
            bad "$m seed $s: a run failed (lamina exit $lrc, PyTorch exit $trc)"
            failed=1
            continue
        fi
        rate=$(awk -F, 'NR > 1 { s += $5 } END { printf "%.0f", 60000 * (NR - 1) / s }' "$d/lamina$s.csv")
        echo "  seed $s: lamina $(acc "$d/lamina$s.csv" 5)% / $(acc "$d/lamina$s.csv" $EPOCHS)%" \
            "in $lt s ($rate samples/s with the test set), PyTorch $(acc "$d/torch$s.csv" 5)% /" \
            "$(acc "$d/torch$s.csv" $EPOCHS)% in $tt s (after 5 / $EPOCHS epochs)"
        l5="$l5 $(acc "$d/lamina$s.csv" 5)"
        t5="$t5 $(acc "$d/torch$s.csv" 5)"
        l10="$l10 $(acc "$d/lamina$s.csv" $EPOCHS)"
        t10="$t10 $(acc "$d/torch$s.csv" $EPOCHS)"
        ltime="$ltime ${lt}s"
        ttime="$ttime ${tt}s"
    done
    [ $failed = 0 ] || continue
    ml5=$(mean $l5) mt5=$(mean $t5) ml10=$(mean $l10) mt10=$(mean $t10)
    if awk -v a="$ml5" -v b="$mt5" 'BEGIN { d = a - b; exit !(d <= 1.0 && d >= -1.0) }'; then
        ok "$m after 5 epochs: lamina $ml5%, PyTorch $mt5% (means; within 1.0 point)"
    else
        bad "$m after 5 epochs: lamina $ml5%, PyTorch $mt5% (means; more than 1.0 point apart)"
    fi
    want=$(target "$m")
    if awk -v a="$ml10" -v b="$want" 'BEGIN { exit !(a >= b) }'; then
        ok "$m after $EPOCHS epochs: lamina $ml10% >= $want% (mean; runs:$l10; PyTorch $mt10%)"
    else
        bad "$m after $EPOCHS epochs: lamina $ml10% < $want% (mean; runs:$l10; PyTorch $mt10%)"
    fi
    summary="$summary
  $m: lamina$ltime, PyTorch$ttime"
done
echo "times per run ($THREADS thread(s) each$([ $parallel = 1 ] && echo '; lamina and PyTorch side by side')):$summary"
echo "all: $(since "$T0") s"
echo "long: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
