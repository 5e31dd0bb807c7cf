#!/bin/sh
# tests/runtime/run.sh — build and run the runtime's tests, from the repo root.
#
#   sh tests/runtime/run.sh            # every configuration below
#   CC=clang BLAS=portable SANITIZE=0 sh tests/runtime/run.sh
#
# CC        compiler (default cc)
# BLAS      openblas | portable (or none, as in the top-level Makefile) |
#           all (default all)
# SANITIZE  1 (default) also builds and runs -fsanitize=address,undefined
#           variants; 0 skips them
#
# Each configuration compiles runtime/*.c with the project's warning flags
# plus -pedantic -Werror into build/test-runtime/<config>/, then runs
# test_runtime (C) and test_st_torch.py (through st_roundtrip).  The last
# line is the total: "runtime: N passed, N failed"; the exit status is 0
# only when nothing failed.
set -u

CC=${CC:-cc}
BLAS=${BLAS:-all}
SANITIZE=${SANITIZE:-1}
PY=/usr/bin/python3
OUT=build/test-runtime
WARN="-std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -pedantic -Werror -D_POSIX_C_SOURCE=200809L"
SAN="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"

if [ ! -f runtime/lamina_rt.h ]; then
    echo "run.sh: run from the repository root" >&2
    exit 2
fi

configs=
case $BLAS in
openblas) configs="openblas" ;;
portable|none) configs="portable" ;;
all) configs="openblas portable" ;;
*) echo "run.sh: BLAS must be openblas, portable, none or all" >&2; exit 2 ;;
esac
if [ "$SANITIZE" = 1 ]; then
    for c in $configs; do configs="$configs $c-asan"; done
fi

total_pass=0
total_fail=0

# add_counts FILE: add the last "N passed, N failed" line of FILE to the totals.
add_counts() {
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        total_fail=$((total_fail + 1))
        echo "  (no result line: counted as one failure)"
        return
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
}

for cfg in $configs; do
    dir=$OUT/$cfg
    mkdir -p "$dir"
    case $cfg in
    openblas*) blas="-DLM_BLAS_OPENBLAS $(pkg-config --cflags openblas)"
               blaslib="$(pkg-config --libs openblas)" ;;
    *) blas=; blaslib= ;;
    esac
    case $cfg in
    *-asan) opt=$SAN ;;
    *) opt=-O2 ;;
    esac
    echo "== runtime tests: $cfg ($CC)"
    ok=1
    for src in runtime/*.c; do
        obj=$dir/$(basename "$src" .c).o
        # shellcheck disable=SC2086
        $CC $WARN $opt $blas -Iruntime -c "$src" -o "$obj" || ok=0
    done
    if [ $ok = 1 ]; then
        # shellcheck disable=SC2086
        ar rcs "$dir/liblamina_rt.a" "$dir"/*.o &&
        $CC $WARN $opt -Iruntime tests/runtime/test_runtime.c \
            "$dir/liblamina_rt.a" $blaslib -lz -lm -o "$dir/test_runtime" &&
        $CC $WARN $opt -Iruntime tests/runtime/st_roundtrip.c \
            "$dir/liblamina_rt.a" $blaslib -lz -lm -o "$dir/st_roundtrip" ||
        ok=0
    fi
    if [ $ok = 0 ]; then
        echo "  build failed"
        total_fail=$((total_fail + 1))
        continue
    fi
    "$dir/test_runtime" >"$dir/test_runtime.log" 2>&1
    cat "$dir/test_runtime.log"
    add_counts "$dir/test_runtime.log"
    LM_ST_ROUNDTRIP=$dir/st_roundtrip $PY tests/runtime/test_st_torch.py \
        >"$dir/test_st_torch.log" 2>&1
    cat "$dir/test_st_torch.log"
    add_counts "$dir/test_st_torch.log"
done

echo "runtime: $total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
