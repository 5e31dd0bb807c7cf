#!/bin/sh
# scripts/demo.sh — `make demo`: LeNet-5 learns Fashion-MNIST, in plain C.
#
# The Makefile has installed what is missing (scripts/deps.sh demo) and
# built laminac and the runtime. This script compiles examples/lenet5.lam
# to C with a training program (laminac --main), builds it, trains it on
# Debian's Fashion-MNIST until the test accuracy passes 85% (at most 10
# epochs; each takes 10-30 s on one core), and shows the result: the
# accuracy, a few predictions, and where the C, the checkpoint and the
# plot are. Everything goes to out/lenet5/.
#   THREADS=N make demo   BLAS threads (default 1; small convolutions run
#                         fastest on one)
set -eu
cd "$(dirname "$0")/.."
OUT=out/lenet5
FM=/usr/share/datasets/fashion-mnist
TRAIN=$FM/train-images-idx3-ubyte.gz
TEST=$FM/t10k-images-idx3-ubyte.gz
THREADS=${THREADS:-1}
PROG=$OUT/lenet5
CKPT=$OUT/lenet5.safetensors

step() { printf '\n== %s\n' "$*"; }

if [ ! -f "$TRAIN" ]; then
    echo "demo.sh: $TRAIN is missing; as root: apt-get install dataset-fashion-mnist" >&2
    exit 1
fi

step "1/5 compile examples/lenet5.lam to C"
mkdir -p "$OUT"
./laminac --summary examples/lenet5.lam
./laminac --main examples/lenet5.lam -o "$OUT"
echo "wrote $OUT/lenet5.h and $OUT/lenet5.c (the network) and $OUT/lenet5_main.c (the program)"

step "2/5 build the program"
blas=$(pkg-config --libs openblas 2>/dev/null || true)
set -- cc -std=c99 -O3 -march=native -Iruntime -I"$OUT" "$OUT/lenet5_main.c" "$OUT/lenet5.c" \
    build/liblamina_rt.a $blas -lz -lm -o "$PROG"
echo "$*"
"$@"

step "3/5 train on Fashion-MNIST (60,000 images) until test accuracy passes 85%"
rm -f "$OUT/metrics.csv"
"$PROG" train --train "$TRAIN" --test "$TEST" --epochs 10 --target-accuracy 85 \
    --threads "$THREADS" --save "$CKPT" --metrics "$OUT/metrics.csv" --plot "$OUT/curves.png"

step "4/5 the checkpoint on the 10,000 test images"
result=$("$PROG" eval --ckpt "$CKPT" --data "$TEST")
echo "$result"
accuracy=$(echo "$result" | sed -n 's/.*accuracy \([0-9.]*%\).*/\1/p')

step "5/5 the first 10 test images"
"$PROG" predict --ckpt "$CKPT" --data "$TEST" --limit 10 | awk -F, '
BEGIN {
    split("T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot", name, ",")
}
NR > 1 {
    # index,label,predicted,p0..p9
    p = $(4 + $3)
    printf "  image %-2d  predicted %-12s (%5.1f%%)  true %-12s %s\n", $1, name[$3 + 1],
           100 * p, name[$2 + 1], $2 == $3 ? "" : "<- wrong"
}'

cat <<EOF

LeNet-5 reached $accuracy test accuracy, trained by C generated from
examples/lenet5.lam. Where things are:
  $OUT/lenet5.c            the network: forward and backward pass, layer by layer
  $OUT/lenet5.h            its API (create, forward, train_step, save, load, ...)
  $OUT/lenet5_main.c       the program you just ran (train, eval, predict, plot)
  $CKPT  the trained weights (safetensors: PyTorch and numpy read it)
  $OUT/metrics.csv         loss and accuracy per epoch
  $OUT/curves.png          their plot (make plot draws it again)
Next: $PROG --help
EOF
