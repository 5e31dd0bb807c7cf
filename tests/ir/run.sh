#!/bin/sh
# tests/ir/run.sh — the front end's output for every example.
#
# For every examples/X.lam, and tests/ir/X.lam (models that use what the
# examples do not):
#   ir       `laminac --emit=ir` is exactly tests/ir/X.ir (a golden file,
#            reviewed by hand once: see tests/ir/README);
#   dot      `laminac --emit=dot` is a graph Graphviz renders (dot -Tsvg);
#   summary  `laminac --summary` succeeds and prints the parameter total.
#   as written  `laminac --emit=ir --no-rewrite examples/cnn.lam` is
#            tests/ir/cnn.as-written: the IR before rewrite.c applied the
#            relus and the convolutions' biases to the poolings' maxima (the
#            golden of the layers as written), and --summary shows conv2
#            cropped to the 10x10 that pool2 reads;
#   avgpool_act_dx  lenet5's backward fuses each tanh with the average
#            pooling after it, and --no-rewrite does not.
# Each example needs a golden, and each golden an example.
# LAMINAC=path overrides the compiler (default: ./laminac).
set -u
cd "$(dirname "$0")/../.." || exit 1
laminac=${LAMINAC:-./laminac}
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
for lam in examples/*.lam tests/ir/*.lam; do
    name=$(basename "$lam" .lam)
    golden=tests/ir/$name.ir
    if [ ! -f "$golden" ]; then
        bad "$name ir: no golden $golden (review the output, then save it there)"
    elif "$laminac" --emit=ir "$lam" >"$out" 2>"$err" && cmp -s "$golden" "$out"; then
        ok "$name ir"
    else
        bad "$name ir: differs from $golden"
        cat "$err"
        diff -u "$golden" "$out" | head -n 40
    fi
    if "$laminac" --emit=dot "$lam" 2>"$err" | dot -Tsvg >"$out" 2>>"$err" &&
       [ -s "$out" ] && [ ! -s "$err" ]; then
        ok "$name dot"
    else
        bad "$name dot: laminac --emit=dot | dot -Tsvg failed"
        head -n 20 "$err"
    fi
    if "$laminac" --summary "$lam" >"$out" 2>"$err" && [ ! -s "$err" ] &&
       grep -q '^Total params: ' "$out"; then
        ok "$name summary"
    else
        bad "$name summary"
        head -n 20 "$err"
    fi
done
# Training FLOPs of the MLP (784 -> 256 relu -> 128 relu -> 10, softmax
# cross-entropy on the logits), from the definitions in the README: dense
# units*(2*in + 1), an activation 1 and its gradient 2 per element, the
# loss and its gradient 4 per logit; backward dW and dx 2*in*out each (no
# dx for the first layer), db 1 per unit.
fwd=$((256 * (2 * 784 + 1) + 256 + 128 * (2 * 256 + 1) + 128 + 10 * (2 * 128 + 1) + 4 * 10))
bwd=$((4 * 10 + 2 * 128 * 10 * 2 + 10 + 2 * 128 + 2 * 256 * 128 * 2 + 128 + 2 * 256 + 2 * 784 * 256 + 256))
want=$(printf "%d" $((fwd + bwd)) | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')
if "$laminac" --summary examples/mlp.lam 2>"$err" | grep -q "^Training FLOPs per sample: $want "; then
    ok "mlp summary: training FLOPs $want, counted by hand"
else
    bad "mlp summary: training FLOPs are not $want"
    "$laminac" --summary examples/mlp.lam | grep FLOPs
fi
# The CNN's conv2 makes 11x11 outputs; pool2's 2x2 windows, side by side,
# read 10x10 of them: rewrite.c crops conv2 to those. --summary shows the
# layer as written, marked, and counts what is computed: 2 FLOPs per
# weight (16 channels, 3x3) per output (32 filters, 10x10), no bias (pool2
# adds it); as written it would be 32 * 11 * 11 outputs.
if "$laminac" --summary examples/cnn.lam >"$out" 2>"$err" &&
   grep -q "^conv2 (conv2d+relu)  *\[32,11,11\]\*  *4,640  *$(printf "%d" $((2 * 16 * 9 * 32 * 10 * 10)) |
        sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')\$" "$out" &&
   grep -q "^\* conv2 computes 10x10 of it" "$out"; then
    ok "cnn summary: conv2 computes the 10x10 of its 11x11 output that pool2 reads"
else
    bad "cnn summary: conv2 is not shown cropped to 10x10"
    cat "$out"
fi
if "$laminac" --emit=ir --no-rewrite examples/cnn.lam >"$out" 2>"$err" &&
   cmp -s tests/ir/cnn.as-written "$out"; then
    ok "cnn ir --no-rewrite: the layers as written"
else
    bad "cnn ir --no-rewrite: differs from tests/ir/cnn.as-written"
    diff -u tests/ir/cnn.as-written "$out" | head -n 40
fi
# An activation followed by an average pooling of side-by-side windows is
# differentiated in one node (grad.c): LeNet-5's tanh-then-avgpool pairs
# give avgpool_act_dx and no stored gradient between the two; with
# --no-rewrite, the two nodes of the layers as written.
# lenet5_grad_ir WHAT ABSENT FLAG PRESENT...: `laminac --emit=ir-grad FLAG
# examples/lenet5.lam` has every PRESENT line (fixed strings) and no line
# matching the regex ABSENT.
lenet5_grad_ir() {
    what=$1 absent=$2 flag=$3
    shift 3
    good=true
    # shellcheck disable=SC2086
    "$laminac" --emit=ir-grad $flag examples/lenet5.lam >"$out" 2>"$err" || good=false
    for want; do
        grep -qF -- "$want" "$out" || good=false
    done
    ! grep -q -- "$absent" "$out" || good=false
    if $good; then
        ok "$what"
    else
        bad "$what: not so"
        grep 'grad = ' "$out" | tail -n 8
    fi
}
p='kernel=[2,2] stride=[2,2] pad=[0,0]'
lenet5_grad_ir "lenet5 ir-grad: tanh and avgpool differentiated together (avgpool_act_dx)" \
    '^%c[13]\.grad ' "" \
    "%c1.pre.grad = avgpool_act_dx(%s2.grad, %c1) $p of=tanh : f32[64,6,28,28]" \
    "%c3.pre.grad = avgpool_act_dx(%s4.grad, %c3) $p of=tanh : f32[64,16,10,10]"
lenet5_grad_ir "lenet5 ir-grad --no-rewrite: avgpool_dx then act_dx, as written" \
    'avgpool_act_dx' --no-rewrite \
    "%c1.grad = avgpool_dx(%s2.grad) $p : " \
    '%c1.pre.grad = act_dx(%c1.grad, %c1) of=tanh : '
for golden in tests/ir/*.ir; do
    name=$(basename "$golden" .ir)
    [ -f "examples/$name.lam" ] || [ -f "tests/ir/$name.lam" ] || bad "$golden: no model $name.lam"
done
echo "ir: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
