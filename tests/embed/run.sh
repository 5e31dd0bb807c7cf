#!/bin/sh
# tests/embed/run.sh — the README's embedding example, compiled and run.
#
# classify.c (at most 30 lines) includes the header laminac writes for
# examples/lenet5.lam, loads a checkpoint and classifies one image. This
# suite trains a LeNet-5 briefly with the generated program (laminac
# --main), compiles classify.c warning-free with gcc and clang, and checks
# that it names the same class as the program's predict for several
# Fashion-MNIST test images. Run from the repository root after `make`;
# ends with "embed: N passed, N failed" and fails if anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
OUT=build/test-embed
FM=/usr/share/datasets/fashion-mnist
STRICT="-std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes"
LIBS="build/liblamina_rt.a $(pkg-config --libs openblas 2>/dev/null) -lz -lm"
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "embed: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

lines=$(wc -l < tests/embed/classify.c)
if [ "$lines" -le 30 ]; then ok "classify.c is $lines lines (at most 30)"; else bad "classify.c is $lines lines, more than 30"; fi

rm -rf "$OUT"
mkdir -p "$OUT"
if ! ./laminac --main examples/lenet5.lam -o "$OUT" ||
   ! cc -std=c99 -O2 -D_POSIX_C_SOURCE=200809L -Iruntime -I"$OUT" "$OUT/lenet5_main.c" "$OUT/lenet5.c" $LIBS -o "$OUT/lenet5"; then
    bad "laminac --main examples/lenet5.lam and its program build"
    finish
fi
ok "laminac --main examples/lenet5.lam and its program build"

for cc in gcc clang; do
    command -v $cc >/dev/null || { bad "$cc is not installed"; continue; }
    if $cc $STRICT -O2 -Iruntime -I"$OUT" tests/embed/classify.c "$OUT/lenet5.c" $LIBS -o "$OUT/classify-$cc"; then
        ok "classify.c compiles warning-free with $cc (-std=c99 -pedantic -Werror)"
    else
        bad "classify.c does not compile warning-free with $cc"
    fi
done
[ -x "$OUT/classify-gcc" ] || finish

if [ ! -f "$FM/t10k-images-idx3-ubyte.gz" ]; then
    bad "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
    finish
fi
# A short training run is enough: the check is that classify.c and the
# program agree, not how good the model is.
if ! "$OUT/lenet5" train --train "$FM/train-images-idx3-ubyte.gz" --limit 10000 --epochs 1 \
        --save "$OUT/lenet5.safetensors" --quiet >"$OUT/train.log" 2>&1; then
    bad "lenet5 train (see $OUT/train.log)"
    finish
fi
ok "lenet5 trained for one epoch on 10000 images"

"$OUT/lenet5" predict --ckpt "$OUT/lenet5.safetensors" --data "$FM/t10k-images-idx3-ubyte.gz" \
    --limit 8 >"$OUT/predict.csv" 2>"$OUT/predict.err"
agree=0
for i in 0 1 2 3 4 5 6 7; do
    want=$(awk -F, -v i="$i" '$1 == i { print $3 }' "$OUT/predict.csv")
    got=$("$OUT/classify-gcc" "$OUT/lenet5.safetensors" "$FM/t10k-images-idx3-ubyte.gz" "$i")
    echo "  $got; predict says class $want"
    case $got in *"(class $want)") agree=$((agree + 1)) ;; esac
done
if [ "$agree" -eq 8 ]; then ok "classify and predict agree on 8 test images"; else bad "classify and predict agree on only $agree of 8 images"; fi

if "$OUT/classify-gcc" "$OUT/missing.safetensors" "$FM/t10k-images-idx3-ubyte.gz" 2>"$OUT/err.txt"; then
    bad "classify with a missing checkpoint succeeded"
elif grep -q "missing.safetensors" "$OUT/err.txt"; then
    ok "classify names a missing checkpoint: $(cat "$OUT/err.txt")"
else
    bad "classify's message for a missing checkpoint: $(cat "$OUT/err.txt")"
fi
finish
