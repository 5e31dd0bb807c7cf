#!/bin/sh
# tests/codegen/run.sh — the generated C: compiles clean, matches PyTorch,
# runs clean under ASan/UBSan, and keeps its promises about memory.
#   1. every example, for training and --inference-only, compiles with gcc
#      and clang at -std=c99 -Wall -Wextra -Werror -pedantic;
#   2. --summary's instance bytes equal the generated NAME_size();
#   3. every example against PyTorch, under AddressSanitizer and UBSan,
#      and checkpoints both ways (test_models.py);
#   4. every op of the table on 20 random configurations, SGD and Adam
#      (test_ops.py);
#   5. the same with the runtime's portable GEMM (make BLAS=none), on the
#      examples and 3 configurations per op;
#   6. the float helpers for tanh, exp and the logistic function against
#      the C library in double precision (math_check.c).
set -u
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in examples/*.lam; do
    name=$(basename "$f" .lam)
    for mode in train infer threads; do
        flag=""; [ $mode = infer ] && flag="--inference-only"
        [ $mode = threads ] && flag="--threads 3"
        out="$tmp/$mode"
        mkdir -p "$out"
        if ! ./laminac $flag "$f" -o "$out" 2>"$tmp/err"; then
            bad "$name ($mode): laminac failed: $(cat "$tmp/err")"; continue
        fi
        for cc in gcc clang; do
            if $cc -std=c99 -Wall -Wextra -Werror -pedantic -O1 -Iruntime -c "$out/$name.c" \
                -o "$out/$name.o" 2>"$tmp/err"; then
                ok "$name ($mode) compiles warning-free with $cc"
            else
                bad "$name ($mode) with $cc:"; cat "$tmp/err"
            fi
        done
        # The instance is exactly as large as --summary says.
        printf '#include "%s.h"\n#include <stdio.h>\nint main(void) { printf("%%zu\\n", %s_size()); return 0; }\n' \
            "$name" "$name" >"$out/size.c"
        cc -std=c99 -I"$out" -Iruntime "$out/size.c" "$out/$name.c" build/liblamina_rt.a \
            $(pkg-config --libs openblas) -lz -lm -o "$out/size" 2>"$tmp/err" || cat "$tmp/err"
        got=$("$out/size")
        want=$(./laminac $flag --summary "$f" | awk '/^  total/ {gsub(",", "", $2); print $2}')
        if [ "$got" = "$want" ]; then
            ok "$name ($mode): --summary's $want bytes are ${name}_size()"
        else
            bad "$name ($mode): --summary says $want bytes, ${name}_size() is $got"
        fi
    done
done

echo "== --keep with the batch in parts: a kept layer is read whole after forward"
# A kept layer stays out of the parts' own areas (a kept flatten: the
# buffer of the layer it views). Its values must be those of a one-part
# build, with the same seed and input.
for name in lenet5 cnn; do
    for t in 1 3; do
        out="$tmp/keep$t"
        mkdir -p "$out"
        ./laminac --threads $t --keep flatten_1 "examples/$name.lam" -o "$out"
        printf '#include "%s.h"\n#include <stdio.h>\nint main(void) {\n  %s *m = %s_create(5);\n  static float x[7 * %s_IN_SIZE];\n  for (int i = 0; i < 7 * %s_IN_SIZE; i++) x[i] = (float)(i %% 17) / 17.0f;\n  %s_forward(m, x, 7, NULL);\n  int n = 0;\n  const float *a = %s_activation(m, "flatten_1", &n);\n  for (int i = 0; i < 7 * n; i++) printf("%%a\\n", a[i]);\n  %s_destroy(m);\n  return 0;\n}\n' \
            "$name" "$name" "$name" "$(echo $name | tr a-z A-Z)" "$(echo $name | tr a-z A-Z)" "$name" "$name" "$name" >"$out/k.c"
        gcc -std=c99 -Wall -Wextra -Werror -pedantic -fopenmp -I"$out" -Iruntime "$out/k.c" "$out/$name.c" \
            build/liblamina_rt.a $(pkg-config --libs openblas) -lz -lm -o "$out/k" 2>"$tmp/err" || cat "$tmp/err"
        "$out/k" >"$tmp/keep$t.txt" 2>&1
    done
    if [ -s "$tmp/keep1.txt" ] && cmp -s "$tmp/keep1.txt" "$tmp/keep3.txt"; then
        ok "$name --threads 3 --keep flatten_1: the kept layer as with one part ($(wc -l <"$tmp/keep1.txt") values)"
    else
        bad "$name --threads 3 --keep flatten_1: the kept layer differs from a one-part build's"
    fi
done

echo "== --embed-weights: the same outputs as loading the checkpoint, and no file I/O"
emb="$tmp/embed"
mkdir -p "$emb"
lib="build/liblamina_rt.a $(pkg-config --libs openblas) -lz -lm"
./laminac --prefix la examples/lenet5.lam -o "$emb"
printf '#include "la.h"\nint main(int c, char **v) { char e[256]; la *m = la_create(7);\n  static float x[8 * 784]; static int32_t y[8];\n  for (int i = 0; i < 8 * 784; i++) x[i] = (float)(i %% 13) / 13.0f;\n  for (int s = 0; s < 3; s++) la_train_step(m, x, y, 8);\n  return c == 2 && la_save(m, v[1], e, sizeof e) == 0 ? 0 : 1; }\n' >"$emb/mk.c"
cc -std=c99 -I"$emb" -Iruntime "$emb/mk.c" "$emb/la.c" $lib -o "$emb/mk" && "$emb/mk" "$emb/ck.st"
for flags in "--inference-only" ""; do
    ./laminac --prefix lb $flags --embed-weights "$emb/ck.st" examples/lenet5.lam -o "$emb"
    cc -std=c99 -Wall -Wextra -Werror -pedantic -O1 -DA=la -DAU=LA -DB=lb -include "$emb/la.h" \
        -include "$emb/lb.h" -Iruntime tests/codegen/embed_check.c "$emb/la.c" "$emb/lb.c" $lib -o "$emb/ec"
    if [ $? -eq 0 ] && "$emb/ec" "$emb/ck.st" >"$tmp/err"; then
        ok "--embed-weights ${flags:-(training)}: $(cat "$tmp/err")"
    elif [ -n "$flags" ]; then
        bad "--embed-weights $flags: $(cat "$tmp/err")"
    elif grep -q "same outputs, load accepted" "$tmp/err"; then
        ok "--embed-weights (training): same outputs; the weights stay loadable"
    else
        bad "--embed-weights (training): $(cat "$tmp/err")"
    fi
done
./laminac --prefix lb --inference-only --embed-weights "$emb/ck.st" examples/lenet5.lam -o "$emb"
printf '#include "lb.h"\nint main(void) { static float x[784], y[10]; lb *m = lb_create(0);\n  lb_forward(m, x, 1, y); lb_destroy(m); return y[0] != y[0]; }\n' >"$emb/dev.c"
cc -std=c99 -O1 -I"$emb" -Iruntime "$emb/dev.c" "$emb/lb.c" $lib -o "$emb/dev"
if "$emb/dev" && ! nm -u "$emb/dev" | grep -qE " (fopen|fopen64|open|open64|fwrite|fread|gzopen)(@.*)?$"; then
    ok "--embed-weights --inference-only: the program links no file I/O"
else
    bad "--embed-weights --inference-only: file I/O linked in: $(nm -u "$emb/dev" | grep -E 'open|fwrite|fread')"
fi
if ./laminac --embed-weights "$tmp/missing.st" examples/lenet5.lam -o "$emb" 2>"$tmp/err"; then
    bad "--embed-weights accepted a missing checkpoint"
else
    grep -q "missing.st" "$tmp/err" && ok "--embed-weights names a missing checkpoint: $(cat "$tmp/err")" \
        || bad "--embed-weights message: $(cat "$tmp/err")"
fi

count() { # the "passed, failed" line of a python test, added to ours
    line=$(grep -E "^[a-z]+: [0-9]+ passed, [0-9]+ failed" "$1" | tail -n 1)
    if [ -z "$line" ]; then fail=$((fail + 1)); echo "FAIL $2 printed no result"; return; fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) failed.*/\1/')
    pass=$((pass + p)); fail=$((fail + f))
}

echo "== the float helpers (tanh, exp, the logistic function) against double precision"
# With and without fused multiply-adds: gcc -march=native takes the fmaf
# branch (FP_FAST_FMAF), clang fuses a * b + c itself where the target
# has FMA, and -O2 for the generic x86-64 has none.
./laminac tests/ir/all_ops.lam -o "$tmp/math"
for c in "gcc -O3 -march=native" "gcc -O2" "clang -O3 -march=native" "clang -O2"; do
    # shellcheck disable=SC2086
    if $c -std=c99 -D_POSIX_C_SOURCE=200809L -Iruntime -I"$tmp/math" \
        -DMODEL_C="\"$tmp/math/all_ops.c\"" tests/codegen/math_check.c $lib -o "$tmp/math/check" \
        2>"$tmp/err" && "$tmp/math/check" >"$tmp/math/out"; then
        ok "float helpers within 3e-7 of double ($c): $(awk '{printf "%s %s  ", $1, $4}' "$tmp/math/out")"
    else
        bad "float helpers ($c):"; cat "$tmp/err" "$tmp/math/out" 2>/dev/null
    fi
done

echo "== the examples against PyTorch, under ASan and UBSan"
ASAN_OPTIONS=detect_leaks=0 CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -g" \
    $PY tests/codegen/test_models.py >"$tmp/models.log" 2>&1
grep -v "^ok " "$tmp/models.log"; count "$tmp/models.log" test_models.py

echo "== every op on random configurations against PyTorch"
$PY tests/codegen/test_ops.py "${LAMINA_OP_CONFIGS:-20}" >"$tmp/ops.log" 2>&1
cat "$tmp/ops.log" | tail -n 40; count "$tmp/ops.log" test_ops.py

# Each part has a work area of its own, which the generated code reaches
# through pointers set back by the part's first sample. A part that
# strayed into another's area would change the results (the parity
# checks; test_ops draws batches that fill the parts); one that strayed
# out of the instance, AddressSanitizer reports. 3 parts: uneven ones.
echo "== the batch in parts on threads (laminac --threads 3 and 2, -fopenmp)"
OMP_WAIT_POLICY=PASSIVE ASAN_OPTIONS=detect_leaks=0 LAMINAC_FLAGS="--threads 3" \
    CFLAGS="-fopenmp -fsanitize=address,undefined -fno-sanitize-recover=all -g" \
    $PY tests/codegen/test_models.py lenet5 cnn mlp autoencoder xor_mlp >"$tmp/th.log" 2>&1
grep -v "^ok " "$tmp/th.log"; count "$tmp/th.log" "test_models.py (--threads 3, ASan, UBSan)"
OMP_WAIT_POLICY=PASSIVE LAMINAC_FLAGS="--threads 2" CFLAGS="-fopenmp" \
    $PY tests/codegen/test_ops.py 3 >"$tmp/tho.log" 2>&1
tail -n 2 "$tmp/tho.log"; count "$tmp/tho.log" "test_ops.py (--threads 2)"
# A convolution through its max pooling, in parts: the weight gradient's
# per-part sums and channels-last copies, the pinned configurations
# (more windows than a chunk, wide rows, a global pooling) included.
OMP_WAIT_POLICY=PASSIVE LAMINAC_FLAGS="--threads 2" CFLAGS="-fopenmp" \
    $PY tests/codegen/test_ops.py 8 maxpool >"$tmp/thm.log" 2>&1
tail -n 2 "$tmp/thm.log"; count "$tmp/thm.log" "test_ops.py maxpool (--threads 2)"

# The per-parameter loops (the optimizer's update; sum_grads and the sums
# of the parts in a --threads build) are long and simple, and gcc -O3
# must vectorise them. Under -fopenmp it did not while an inner loop
# summed the parts, and LeNet-5's two-thread update ran one float at a
# time; Adam's update did not at all, for sqrtf's errno, until it moved to
# the runtime (optim.c, built with -fno-math-errno). The loops are found by
# their text in the generated file and looked up in gcc's report.
echo "== gcc -O3 vectorises the per-parameter loops (SGD, SGD with weight decay, Adam; -fopenmp)"
for name in lenet5 alexnet autoencoder; do
    for flag in "" "--threads 2" "--threads 3"; do
        out="$tmp/vec"; rm -rf "$out"; mkdir -p "$out"
        # shellcheck disable=SC2086
        ./laminac $flag "examples/$name.lam" -o "$out" 2>"$tmp/err" || { bad "$name $flag: $(cat "$tmp/err")"; continue; }
        gcc -std=c99 -O3 -march=x86-64-v3 -fopenmp -Iruntime -c "$out/$name.c" -o /dev/null \
            -fopt-info-vec-optimized 2>"$tmp/vec.log"
        # Adam's own loop is the runtime's: in parts, the sum of the parts is here.
        want="optimizer_step"
        [ -n "$flag" ] && want="optimizer_step sum_grads"
        [ "$name" = autoencoder ] && [ -z "$flag" ] && want=""
        for fn in $want; do
            line=$(awk -v fn="$fn" '$0 ~ "^static void " fn "\\(" {on = 1}
                on && /^ +for \(size_t i = / {print NR; exit} on && /^}/ {exit}' "$out/$name.c")
            if [ -z "$line" ]; then
                bad "$name ${flag:-(one part)}: no loop over the parameters in $fn"
            # (gcc -fopenmp names the line after the for)
            elif grep -Eq "$name\.c:($line|$((line + 1))):.*loop vectorized" "$tmp/vec.log"; then
                ok "$name ${flag:-(one part)}: gcc vectorises $fn's loop (line $line)"
            else
                bad "$name ${flag:-(one part)}: gcc does not vectorise $fn's loop (line $line)"
            fi
        done
        if [ "$name" = autoencoder ] && grep -q "lm_adam_update" "$out/$name.c"; then
            ok "$name ${flag:-(one part)}: Adam's update is the runtime's lm_adam_update"
        elif [ "$name" = autoencoder ]; then
            bad "$name ${flag:-(one part)}: Adam's update does not call lm_adam_update"
        fi
    done
done
# The runtime's Adam loop: a square root of a vector in each of its clones
# (AVX-512, AVX2, x86-64), and no call to the C library's sqrtf.
clones=$(objdump -d build/runtime/optim.o | awk '/^[0-9a-f]+ <adam_rows[.]/ {f = $2} /v?sqrtps/ && f {print f; f = ""}' | wc -l)
if [ "$clones" -ge 3 ] && ! objdump -dr build/runtime/optim.o | grep -q "sqrtf"; then
    ok "runtime/optim.o: Adam's loop is vectorised in its $clones clones, with no call to sqrtf"
else
    bad "runtime/optim.o: Adam's loop is vectorised in $clones of 3 clones, or calls sqrtf"
fi

echo "== the same with the portable GEMM (BLAS=none)"
make --no-print-directory -s BLAS=none B=build/noblas build/noblas/liblamina_rt.a >/dev/null
LAMINA_RT=build/noblas/liblamina_rt.a BLAS=none $PY tests/codegen/test_models.py lenet5 cnn mlp autoencoder \
    >"$tmp/nb.log" 2>&1
grep -v "^ok " "$tmp/nb.log"; count "$tmp/nb.log" "test_models.py (BLAS=none)"
LAMINA_RT=build/noblas/liblamina_rt.a BLAS=none $PY tests/codegen/test_ops.py 3 >"$tmp/nbo.log" 2>&1
tail -n 2 "$tmp/nbo.log"; count "$tmp/nbo.log" "test_ops.py (BLAS=none)"

echo "codegen: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
