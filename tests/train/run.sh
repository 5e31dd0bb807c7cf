#!/bin/sh
# tests/train/run.sh — the generated programs (laminac --main), end to end.
#
# Run from the repository root after `make`. For the examples it builds
# the programs into build/test-train/NAME/ and checks:
#   - every example's NAME_main.c compiles warning-free with gcc and clang
#     (-std=c99 -pedantic -Werror and the project's warnings);
#   - the course networks: the perceptron learns AND and OR (4/4) and not
#     XOR; the 2-2-1 network learns XOR; the autoencoder's reconstruction
#     error beats a stated bound; AlexNet's forward pass and one training
#     step run clean under AddressSanitizer and UBSan;
#   - metrics CSV, plot, predict output;
#   - reproducibility: the same seed and threads give the same checkpoint,
#     bit for bit, also across an interruption (SIGINT) and --resume;
#   - bad input loses nothing: each bad file is named in a message, the
#     exit status is non-zero and the checkpoint is untouched; a diverging
#     loss stops training and keeps the last good checkpoint;
#   - the program itself runs clean under AddressSanitizer and UBSan
#     (train, resume, eval, predict, plot, and every bad input above).
# Fashion-MNIST runs use subsets; the full accuracy runs are
# tests/train/long.sh (make test-long). Needs dataset-fashion-mnist,
# python3-numpy, gnuplot, clang. About a minute on 2 cores.
# Ends with "train: N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
OUT=build/test-train
FM=/usr/share/datasets/fashion-mnist
TRAIN=$FM/train-images-idx3-ubyte.gz
TEST=$FM/t10k-images-idx3-ubyte.gz
PY=/usr/bin/python3
WARN="-std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes"
LIBS="build/liblamina_rt.a $(pkg-config --libs openblas 2>/dev/null) -lz -lm"
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
    what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# build NAME: writes the C for examples/NAME.lam and builds the program
# $OUT/NAME/NAME (the main file with every warning as an error).
build() {
    d=$OUT/$1
    mkdir -p "$d"
    ./laminac --main "examples/$1.lam" -o "$d" &&
        cc $WARN -O2 -Iruntime -I"$d" -c "$d/$1_main.c" -o "$d/main.o" &&
        cc -std=c99 -O2 -Iruntime -c "$d/$1.c" -o "$d/model.o" &&
        cc -o "$d/$1" "$d/main.o" "$d/model.o" $LIBS
}

# right PROG CKPT DATA: "k/n", the samples eval classifies rightly.
right() {
    "$1" eval --ckpt "$2" --data "$3" | sed -n 's/.*(\([0-9]*\/[0-9]*\)).*/\1/p'
}

# meta CKPT KEY: a metadata value of a checkpoint.
meta() {
    $PY -c 'import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n)).get("__metadata__", {}).get(sys.argv[2], ""))' "$1" "$2"
}

# same A B: the two files are identical.
same() { cmp -s "$1" "$2"; }

if [ ! -x ./laminac ] || [ ! -f build/liblamina_rt.a ]; then
    echo "tests/train/run.sh: run 'make' first" >&2
    exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"
T0=$(date +%s)

echo "-- the programs compile warning-free"
for f in examples/*.lam; do
    n=$(basename "$f" .lam)
    d=$OUT/$n
    mkdir -p "$d"
    if ! ./laminac --main "$f" -o "$d"; then
        bad "laminac --main $f"
        continue
    fi
    good=1
    for cc in gcc clang; do
        $cc $WARN -D_POSIX_C_SOURCE=200809L -Iruntime -I"$d" -fsyntax-only "$d/${n}_main.c" || good=0
        $cc $WARN -Iruntime -I"$d" -fsyntax-only "$d/${n}_main.c" || good=0
    done
    check "${n}_main.c: gcc and clang, -std=c99 -pedantic -Werror" [ $good = 1 ]
done

echo "-- usage"
build mlp || bad "build the mlp program"
MLP=$OUT/mlp/mlp
check "--help prints the usage" sh -c "'$MLP' --help | grep -q 'usage: mlp train'"
"$MLP" train --train x --batch 65 2>"$OUT/err.txt"
rc=$?
check "--batch above the compiled 64: exit 2, says so: $(cat "$OUT/err.txt")" \
    sh -c "[ $rc = 2 ] && grep -q 'from 1 to 64' '$OUT/err.txt'"
"$MLP" train --train x --bogus 2>"$OUT/err.txt"
rc=$?
check "an unknown option: exit 2: $(cat "$OUT/err.txt")" [ $rc = 2 ]
"$MLP" evaluate 2>"$OUT/err.txt"
rc=$?
check "an unknown command: exit 2: $(cat "$OUT/err.txt")" [ $rc = 2 ]

echo "-- the perceptron and the 2-2-1 network (truth tables as CSV)"
D=$OUT/tables
mkdir -p "$D"
printf 'label,x1,x2\n0,0,0\n0,0,1\n0,1,0\n1,1,1\n' >"$D/and.csv"
printf 'label,x1,x2\n0,0,0\n1,0,1\n1,1,0\n1,1,1\n' >"$D/or.csv"
printf 'label,x1,x2\n0,0,0\n1,0,1\n1,1,0\n0,1,1\n' >"$D/xor.csv"
for t in and or xor; do
    build perceptron_$t || bad "build perceptron_$t"
    P=$OUT/perceptron_$t/perceptron_$t
    "$P" train --train "$D/$t.csv" --save "$D/p_$t.st" --quiet >/dev/null
    r=$(right "$P" "$D/p_$t.st" "$D/$t.csv")
    case $t in
    xor) check "the perceptron does not learn XOR: $r right, fewer than 4/4" \
        sh -c "[ -n '$r' ] && [ '$r' != 4/4 ]" ;;
    *) check "the perceptron learns $(echo $t | tr a-z A-Z): $r right" [ "$r" = 4/4 ] ;;
    esac
done
"$OUT/perceptron_and/perceptron_and" predict --ckpt "$D/p_and.st" --data "$D/and.csv" >"$D/and.out"
check "predict on AND: a line per input, predicted = label" \
    sh -c "[ \$(awk -F, 'NR > 1 && \$2 == \$3' '$D/and.out' | wc -l) = 4 ]"
build xor_mlp || bad "build xor_mlp"
"$OUT/xor_mlp/xor_mlp" train --train "$D/xor.csv" --save "$D/xor_mlp.st" --quiet >/dev/null
r=$(right "$OUT/xor_mlp/xor_mlp" "$D/xor_mlp.st" "$D/xor.csv")
check "the 2-2-1 network learns XOR: $r right" [ "$r" = 4/4 ]

if [ ! -f "$TRAIN" ]; then
    bad "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): the rest is skipped"
    echo "train: $pass passed, $fail failed"
    exit 1
fi

echo "-- the autoencoder"
# The bound: predicting the mean training image for every test image is the
# best that ignores the input; its MSE is the baseline. PCA with 32
# components, the best *linear* 32-number code, shows what is possible.
# After one epoch of Adam on the 60,000 training images, the 32-unit code
# must bring the test MSE below 0.3 x the baseline: it has learnt most of
# what distinguishes the images, within 2x of the linear optimum.
build autoencoder || bad "build autoencoder"
AE=$OUT/autoencoder/autoencoder
"$AE" train --train "$TRAIN" --epochs 1 --save "$OUT/ae.st" --quiet >/dev/null
mse=$("$AE" eval --ckpt "$OUT/ae.st" --data "$TEST" | sed -n 's/.* loss \([0-9.]*\) .*/\1/p')
ref=$($PY - "$TRAIN" "$TEST" <<'EOF'
import gzip, sys
import numpy as np
def images(p):
    return np.frombuffer(gzip.open(p).read()[16:], dtype=np.uint8).reshape(-1, 784) / 255.0
tr, te = images(sys.argv[1]), images(sys.argv[2])
mu = tr.mean(0)
_, _, vt = np.linalg.svd(tr[:20000] - mu, full_matrices=False)
v = vt[:32]
pca = te - ((te - mu) @ v.T @ v + mu)
print("%.6f %.6f" % (((te - mu) ** 2).mean(), (pca ** 2).mean()))
EOF
)
base=${ref% *}
pca=${ref#* }
check "autoencoder test MSE $mse < 0.3 x $base (mean image; PCA-32: $pca)" \
    $PY -c "import sys; sys.exit(not (0 < $mse < 0.3 * $base))"
"$AE" predict --ckpt "$OUT/ae.st" --data "$TEST" --limit 3 >"$OUT/ae.csv"
check "autoencoder predict: 3 reconstructions of 784 values" \
    sh -c "[ \$(wc -l < '$OUT/ae.csv') = 4 ] && awk -F, 'NR > 1 && NF != 785 { exit 1 }' '$OUT/ae.csv'"
# The latent codes: the 'code' layer's outputs, checked against the code
# computed here from the checkpoint's weights: relu(W2 relu(W1 x + b1) + b2).
"$AE" predict --ckpt "$OUT/ae.st" --data "$TEST" --limit 100 --latent "$OUT/latent.csv" >/dev/null
cat >"$OUT/latent.py" <<'EOF'
import gzip, sys
import numpy as np
sys.path.insert(0, "tests/runtime")
import st
w = st.load(sys.argv[1])
x = np.frombuffer(gzip.open(sys.argv[2]).read()[16:], dtype=np.uint8).reshape(-1, 784)[:100] / 255.0
h = np.maximum(x @ w["enc1.weight"].T + w["enc1.bias"], 0)
code = np.maximum(h @ w["code.weight"].T + w["code.bias"], 0)
got = np.loadtxt(sys.argv[3], delimiter=",", ndmin=2)
ok = got.shape == (100, 33) and (got[:, 0] == np.arange(100)).all()
ok = ok and np.abs(got[:, 1:] - code).max() <= 1e-4 * max(1.0, np.abs(code).max())
sys.exit(0 if ok else 1)
EOF
check "autoencoder --latent: 100 codes of 32 values, equal to relu(W2 relu(W1 x + b1) + b2)" \
    $PY "$OUT/latent.py" "$OUT/ae.st" "$TEST" "$OUT/latent.csv"

echo "-- Fashion-MNIST (MLP, subsets): outputs and reproducibility"
S="--train $TRAIN --test $TEST --limit 6000 --threads 2"
"$MLP" train $S --epochs 2 --save "$OUT/a.st" --metrics "$OUT/a.csv" --plot "$OUT/a.png" >"$OUT/a.log" 2>&1
rc=$?
sed 's/^/  /' "$OUT/a.log"
check "train: 2 epochs, exit 0" [ $rc = 0 ]
check "metrics: a header and 2 lines of 5 fields" \
    sh -c "head -1 '$OUT/a.csv' | grep -qx 'epoch,train_loss,test_loss,test_accuracy,seconds' &&
           [ \$(wc -l < '$OUT/a.csv') = 3 ] && awk -F, 'NF != 5 { exit 1 }' '$OUT/a.csv'"
check "plot: a PNG file" sh -c "head -c 4 '$OUT/a.png' | grep -q PNG"
acc=$(tail -1 "$OUT/a.csv" | cut -d, -f4)
check "test accuracy after 2 epochs on 6,000 images: $acc > 0.7" $PY -c "import sys; sys.exit(not $acc > 0.7)"
"$MLP" train $S --epochs 2 --save "$OUT/b.st" --quiet >/dev/null
check "same seed and threads: a bitwise-identical checkpoint" same "$OUT/a.st" "$OUT/b.st"
"$MLP" train $S --epochs 2 --save "$OUT/c.st" --seed 7 --quiet >/dev/null
check "another seed: another checkpoint" sh -c "! cmp -s '$OUT/a.st' '$OUT/c.st'"
# A model compiled with laminac --threads 2 and OpenMP splits each batch in
# two parts, run in parallel: reproducible too, and the same bit for bit
# whether one thread or two run the parts.
d=$OUT/mlp-omp
mkdir -p "$d"
if ./laminac --main --threads 2 examples/mlp.lam -o "$d" &&
    cc $WARN -D_POSIX_C_SOURCE=200809L -O2 -fopenmp -Iruntime -I"$d" "$d/mlp_main.c" "$d/mlp.c" $LIBS -o "$d/mlp"; then
    "$d/mlp" train $S --epochs 2 --save "$d/a.st" --quiet >/dev/null
    "$d/mlp" train $S --epochs 2 --save "$d/b.st" --quiet >/dev/null
    check "laminac --threads 2, OpenMP, --threads 2: bitwise-identical checkpoints" same "$d/a.st" "$d/b.st"
    "$d/mlp" train $S --epochs 2 --save "$d/c.st" --quiet --threads 1 >/dev/null
    check "laminac --threads 2, OpenMP: --threads 1 gives the checkpoint --threads 2 does" same "$d/a.st" "$d/c.st"
else
    bad "build mlp with laminac --threads 2 and -fopenmp"
fi
"$MLP" train $S --epochs 1 --save "$OUT/e1.st" --quiet >/dev/null
cp "$OUT/e1.st" "$OUT/e2.st"
"$MLP" train $S --epochs 2 --resume "$OUT/e2.st" --quiet >/dev/null
check "resumed after epoch 1: the same checkpoint as 2 epochs straight" same "$OUT/a.st" "$OUT/e2.st"
"$MLP" predict --ckpt "$OUT/a.st" --data "$TEST" --limit 5 >"$OUT/pred.csv"
check "predict: header + 5 lines, probabilities summing to 1" \
    sh -c "[ \$(wc -l < '$OUT/pred.csv') = 6 ] && awk -F, 'NR > 1 { s = 0; for (i = 4; i <= NF; i++) s += \$i; if (s < 0.99 || s > 1.01) exit 1 }' '$OUT/pred.csv'"
ev=$("$MLP" eval --ckpt "$OUT/a.st" --data "$TEST" --limit 6000)
check "eval: the last epoch's test accuracy ($ev)" sh -c "echo '$ev' | grep -q 'accuracy $($PY -c "print('%.2f' % (100 * $acc))")%'"

echo "-- interrupted and resumed (LeNet-5, 10,000 images)"
build lenet5 || bad "build lenet5"
L=$OUT/lenet5/lenet5
S="--train $TRAIN --limit 10000 --epochs 2"
"$L" train $S --save "$OUT/full.st" --quiet >/dev/null
rm -f "$OUT/int.csv"
"$L" train $S --save "$OUT/int.st" --metrics "$OUT/int.csv" >"$OUT/int.log" 2>&1 &
pid=$!
# Wait for the first epoch's line in the metrics, then interrupt epoch 2.
i=0
while [ $i -lt 1200 ] && [ "$(cat "$OUT/int.csv" 2>/dev/null | wc -l)" -lt 2 ]; do
    sleep 0.05
    i=$((i + 1))
done
sleep 0.5
kill -INT $pid
wait $pid
rc=$?
sed 's/^/  /' "$OUT/int.log"
batch=$(meta "$OUT/int.st" batch)
check "SIGINT in epoch 2: exit 130, a checkpoint at epoch $(meta "$OUT/int.st" epoch) + batch $batch" \
    sh -c "[ $rc = 130 ] && [ '$batch' -gt 0 ] && grep -q 'interrupted' '$OUT/int.log'"
"$L" train $S --resume "$OUT/int.st" --metrics "$OUT/int.csv" >"$OUT/resume.log" 2>&1
rc=$?
sed 's/^/  /' "$OUT/resume.log"
check "--resume completes the run" [ $rc = 0 ]
check "interrupted + resumed = uninterrupted, bit for bit" same "$OUT/full.st" "$OUT/int.st"
epochs=$(cut -d, -f1 "$OUT/int.csv" | tr '\n' ' ')
check "metrics: one line per epoch across the interruption: $epochs" [ "$epochs" = "epoch 1 2 " ]

echo "-- a diverging loss"
cp "$OUT/a.st" "$OUT/good.st"
"$MLP" train --train "$TRAIN" --limit 6000 --epochs 4 --resume "$OUT/good.st" --lr 1000 \
    >/dev/null 2>"$OUT/err.txt"
rc=$?
sed 's/^/  /' "$OUT/err.txt"
check "NaN: exit 1, names epoch and batch, the checkpoint stays" \
    sh -c "[ $rc = 1 ] && grep -q 'in epoch 3, batch [0-9]' '$OUT/err.txt' && cmp -s '$OUT/a.st' '$OUT/good.st'"
"$MLP" train --train "$TRAIN" --limit 6000 --save "$OUT/never.st" --lr 1000 >/dev/null 2>&1
rc=$?
check "NaN in epoch 1: exit 1, no checkpoint written" sh -c "[ $rc = 1 ] && [ ! -e '$OUT/never.st' ]"

echo "-- the program under AddressSanitizer and UBSan"
SAN="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
d=$OUT/mlp-asan
mkdir -p "$d"
if ./laminac --main examples/mlp.lam -o "$d" &&
    cc $WARN $SAN -D_POSIX_C_SOURCE=200809L -DLM_BLAS_OPENBLAS -Iruntime -I"$d" "$d/mlp_main.c" \
        "$d/mlp.c" runtime/*.c $LIBS -o "$d/mlp" 2>"$d/build.log"; then
    A=$d/mlp
    S="--train $TRAIN --test $TEST --limit 2000"
    if "$A" train $S --epochs 1 --save "$d/a.st" --metrics "$d/m.csv" --quiet >"$d/log" 2>&1 &&
        "$A" train $S --epochs 2 --resume "$d/a.st" --metrics "$d/m.csv" --plot "$d/m.png" --quiet >>"$d/log" 2>&1 &&
        "$A" eval --ckpt "$d/a.st" --data "$TEST" --limit 500 >>"$d/log" 2>&1 &&
        "$A" predict --ckpt "$d/a.st" --data "$TEST" --limit 70 >/dev/null 2>>"$d/log"; then
        ok "train, resume, eval, predict, plot: clean"
    else
        bad "the mlp program under ASan/UBSan: $(cat "$d/log")"
    fi
    MLP=$A # the bad-input checks below run under the sanitizers too
else
    cat "$d/build.log"
    bad "build the mlp program with -fsanitize=address,undefined"
fi

echo "-- bad input: named, non-zero exit, nothing overwritten"
B=$OUT/bad
mkdir -p "$B"
$PY - "$TEST" "$FM/t10k-labels-idx1-ubyte.gz" "$B" <<'EOF'
import gzip, struct, sys
img = gzip.open(sys.argv[1]).read()
lab = gzip.open(sys.argv[2]).read()
d, n = sys.argv[3], 100
images = struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784]
labels = struct.pack(">II", 0x801, n) + lab[8:8 + n]
def pair(name, i, l):
    open("%s/%s-images-idx3-ubyte" % (d, name), "wb").write(i)
    open("%s/%s-labels-idx1-ubyte" % (d, name), "wb").write(l)
pair("ok", images, labels)
pair("magic", b"\x12\x34" + images[2:], labels)
pair("truncated", images[:-1000], labels)
out = bytearray(labels)
out[8 + 57] = 10
pair("range", images, bytes(out))
pair("size", struct.pack(">IIII", 0x803, n, 27, 27) + bytes(n * 27 * 27), labels)
pair("count", images, struct.pack(">II", 0x801, n - 1) + lab[8:8 + n - 1])
open("%s/nolabels-images-idx3-ubyte" % d, "wb").write(images)
with open("%s/fields.csv" % d, "w") as f:
    f.write("label," + ",".join("p%d" % i for i in range(784)) + "\n")
    for i in range(10):
        f.write("%d," % i + ",".join("0" for _ in range(784 if i != 6 else 783)) + "\n")
EOF
head -c 1000 "$OUT/a.st" >"$B/cut.st"
cp "$OUT/a.st" "$B/keep.st"
# bad_run DESCRIPTION EXPECTED-TEXT ARGS...: the program fails, with a
# message holding EXPECTED-TEXT, and keep.st is as it was.
bad_run() {
    d=$1
    want=$2
    shift 2
    "$MLP" "$@" >/dev/null 2>"$B/err.txt"
    rc=$?
    if [ $rc -ne 0 ] && grep -qF -- "$want" "$B/err.txt" && same "$OUT/a.st" "$B/keep.st"; then
        ok "$d (exit $rc): $(head -1 "$B/err.txt")"
    else
        bad "$d: exit $rc: $(cat "$B/err.txt")"
        cp "$OUT/a.st" "$B/keep.st"
    fi
}
K="--save $B/keep.st"
bad_run "wrong magic number" "magic-images-idx3-ubyte: not an IDX file" train --train "$B/magic-images-idx3-ubyte" $K
bad_run "truncated file" "truncated-images-idx3-ubyte: truncated" train --train "$B/truncated-images-idx3-ubyte" $K
bad_run "label out of range" "range-labels-idx1-ubyte: label 10 of sample 57" train --train "$B/range-images-idx3-ubyte" $K
bad_run "image size not the model's input" "size-images-idx3-ubyte: samples have 729 values" train --train "$B/size-images-idx3-ubyte" $K
bad_run "image and label counts differ" "count-" train --train "$B/count-images-idx3-ubyte" $K
bad_run "labels file missing" "nolabels-labels-idx1-ubyte" train --train "$B/nolabels-images-idx3-ubyte" $K
bad_run "bad test data" "magic-images-idx3-ubyte" train --train "$B/ok-images-idx3-ubyte" --test "$B/magic-images-idx3-ubyte" $K
bad_run "CSV row with a field missing" "fields.csv:8: expected 785 fields, found 784" train --train "$B/fields.csv" $K
bad_run "resume from another model's checkpoint" "p_and.st: a checkpoint of model 'perceptron_and', not of 'mlp'" \
    train --train "$B/ok-images-idx3-ubyte" --resume "$D/p_and.st" $K
bad_run "eval with another model's checkpoint" "p_and.st: a checkpoint of model 'perceptron_and'" \
    eval --ckpt "$D/p_and.st" --data "$B/ok-images-idx3-ubyte"
bad_run "resume from a truncated checkpoint" "cut.st" train --train "$B/ok-images-idx3-ubyte" --resume "$B/cut.st" $K
bad_run "metrics file cannot be written" "nodir/m.csv: cannot write" \
    train --train "$B/ok-images-idx3-ubyte" --metrics "$B/nodir/m.csv" $K

echo "-- AlexNet under AddressSanitizer and UBSan"
d=$OUT/alexnet
if cc -std=c99 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
        -D_POSIX_C_SOURCE=200809L -DLM_BLAS_OPENBLAS -Iruntime -I"$d" tests/train/alexnet_step.c \
        "$d/alexnet.c" runtime/*.c $LIBS -o "$d/step" 2>"$d/build.log"; then
    if "$d/step" >"$d/step.log" 2>&1; then
        sed 's/^/  /' "$d/step.log"
        ok "AlexNet: a forward pass on one 227x227x3 input and a training step at batch 2, clean"
    else
        cat "$d/step.log"
        bad "AlexNet under ASan/UBSan"
    fi
else
    cat "$d/build.log"
    bad "AlexNet: build with -fsanitize=address,undefined"
fi

echo "($(($(date +%s) - T0)) s)"
echo "train: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
