# lamina — build, test, demo.
#   make            build laminac and the runtime library
#   make demo       the main job (installs missing Debian packages as root)
#   make test       every test
#   make bench      lamina vs PyTorch, side by side (bench/run.sh; BENCH_QUICK=1: a smoke run)
#   make test-long  the Fashion-MNIST accuracy runs against PyTorch (minutes)
#   make plot       redraw the demo's training curves
#   make fuzz       libFuzzer target for the parser (clang)
#   make BLAS=none  use the runtime's portable GEMM instead of OpenBLAS

CC      ?= cc
BLAS    ?= openblas
OPT     ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS  += -std=c99 $(OPT) $(WARN) -D_POSIX_C_SOURCE=200809L
B        = build

COMPILER_SRC = $(wildcard compiler/*.c)
# The compiler reads checkpoints (--embed-weights) with the runtime's own
# safetensors reader: one parser for one format.
COMPILER_OBJ = $(COMPILER_SRC:compiler/%.c=$(B)/compiler/%.o) $(B)/grammar/parser.o $(B)/grammar/lexer.o \
               $(B)/compiler/rt_safetensors.o
RUNTIME_SRC  = $(wildcard runtime/*.c)
RUNTIME_OBJ  = $(RUNTIME_SRC:runtime/%.c=$(B)/runtime/%.o)

ifeq ($(BLAS),openblas)
BLAS_CFLAGS = -DLM_BLAS_OPENBLAS $(shell pkg-config --cflags openblas)
BLAS_LIBS   = $(shell pkg-config --libs openblas)
endif
RT_LIBS = $(B)/liblamina_rt.a $(BLAS_LIBS) -lz -lm

# libclang, for --verify (compiler/verify.c). `make LIBCLANG=1` builds
# ./laminac with it; `make laminac-verify` builds build/laminac-verify with
# it from objects of its own in build/clang/, leaving ./laminac as it is.
LLVM_DIR ?= /usr/lib/llvm-14
ifeq ($(LIBCLANG),1)
CLANG_CFLAGS = -DLM_LIBCLANG -I$(LLVM_DIR)/include
CLANG_LIBS   = -L$(LLVM_DIR)/lib -lclang -Wl,-rpath,$(LLVM_DIR)/lib
VERIFY_BIN  ?= $(B)/laminac-verify
endif

.PHONY: all deps demo test test-long fuzz bench clean laminac-asan laminac-verify
all: laminac $(B)/liblamina_rt.a

deps:
	@scripts/deps.sh build

laminac: $(COMPILER_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(CLANG_LIBS) $(LDFLAGS) -lm

# laminac with libclang (see LIBCLANG above): `make laminac-verify`.
laminac-verify:
	@$(MAKE) --no-print-directory LIBCLANG=1 B=$(B)/clang VERIFY_BIN=$(B)/laminac-verify $(B)/laminac-verify
ifeq ($(LIBCLANG),1)
$(VERIFY_BIN): $(COMPILER_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(CLANG_LIBS) $(LDFLAGS) -lm
endif

$(B)/grammar/parser.c $(B)/grammar/parser.h: grammar/parser.y
	@mkdir -p $(B)/grammar
	bison -Wall -Werror --defines=$(B)/grammar/parser.h -o $(B)/grammar/parser.c $<

$(B)/grammar/lexer.c $(B)/grammar/lexer.h: grammar/lexer.l
	@mkdir -p $(B)/grammar
	flex --header-file=$(B)/grammar/lexer.h -o $(B)/grammar/lexer.c $<

# flex's skeleton is not ours to fix: it gets the warnings that are about
# our code, not the ones about its own unused helpers.
$(B)/grammar/lexer.o: $(B)/grammar/lexer.c $(B)/grammar/parser.h compiler/lamina.h
	$(CC) $(CFLAGS) -Wno-unused-function -Wno-sign-compare -Wno-missing-prototypes -I$(B)/grammar -Icompiler -c -o $@ $<
$(B)/grammar/parser.o: $(B)/grammar/parser.c $(B)/grammar/lexer.h compiler/lamina.h
	$(CC) $(CFLAGS) -I$(B)/grammar -Icompiler -c -o $@ $<

$(B)/compiler/%.o: compiler/%.c compiler/lamina.h
	@mkdir -p $(B)/compiler
	$(CC) $(CFLAGS) $(CLANG_CFLAGS) -Iruntime -c -o $@ $<

# Objects remember which BLAS they were built for: changing BLAS rebuilds.
$(B)/blas.stamp: FORCE
	@mkdir -p $(B)
	@echo '$(BLAS)' | cmp -s - $@ || echo '$(BLAS)' > $@
FORCE:

$(B)/compiler/rt_safetensors.o: runtime/safetensors.c runtime/lamina_rt.h
	@mkdir -p $(B)/compiler
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/runtime/%.o: runtime/%.c runtime/lamina_rt.h runtime/internal.h $(B)/blas.stamp
	@mkdir -p $(B)/runtime
	$(CC) $(CFLAGS) $(RT_CFLAGS_$*) -fPIC $(BLAS_CFLAGS) -c -o $@ $<

# gemm.c alone: a * b + c as one fused multiply-add in its vector loops'
# clones for AVX2 and AVX-512 (gcc's -std=c99 keeps them two instructions,
# half the speed). Not the other files: rng.c's parameters must be the
# same bits on every machine.
RT_CFLAGS_gemm = -ffp-contract=fast
# dense.c: its multiply-adds fused too (the AVX-512 kernel of a batch
# through a dense layer's weights).
RT_CFLAGS_dense = -ffp-contract=fast
# optim.c: sqrtf without errno, so that Adam's update loop is vectorised
# (v, its argument, is never negative).
RT_CFLAGS_optim = -fno-math-errno

$(B)/liblamina_rt.a: $(RUNTIME_OBJ)
	rm -f $@
	ar rcs $@ $^

demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# The Fashion-MNIST accuracy runs: lamina's MLP, LeNet-5 and CNN against
# PyTorch, 10 epochs each (tests/train/long.sh; THREADS=N, default 1).
test-long:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@tests/train/long.sh

# Draws the loss and accuracy curves of a metrics file with gnuplot: by
# default the demo's (out/lenet5/metrics.csv -> out/lenet5/curves.png),
# or METRICS=run.csv PLOT=run.png; any program from laminac --main can.
.PHONY: plot
METRICS ?= out/lenet5/metrics.csv
PLOT ?= $(if $(filter out/lenet5/metrics.csv,$(METRICS)),out/lenet5/curves.png,$(METRICS:.csv=.png))
plot:
	@test -x out/lenet5/lenet5 || { echo "make plot: run 'make demo' first"; exit 1; }
	@out/lenet5/lenet5 plot --metrics '$(METRICS)' --plot '$(PLOT)' && echo "plotted $(PLOT)"

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	@tests/run.sh

# The benchmark (bench/run.sh): the generated code and PyTorch on the same
# models, interleaved; prints the table and writes bench/results.md and
# bench/results.csv. About 13 minutes; BENCH_QUICK=1 for a 2-minute smoke
# run (results in $(B)/bench/). Benchmarks report; no test times anything.
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@B=$(B) BLAS=$(BLAS) CC=$(CC) bench/run.sh

# laminac under AddressSanitizer and UBSan, from objects of its own in
# build/asan/: `make laminac-asan` builds build/asan/laminac, which the
# mutation test (tests/fuzz/run.sh) runs.
ASAN_OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
laminac-asan:
	@$(MAKE) --no-print-directory SANITIZE=1 B=build/asan OPT="$(ASAN_OPT)" build/asan/laminac
ifeq ($(SANITIZE),1)
$(B)/laminac: $(COMPILER_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) -lm
endif

# The libFuzzer target for the front end (tests/fuzz/fuzz_parse.c, clang):
# parse + lower + print on arbitrary bytes for FUZZ_SECONDS, from a corpus
# seeded with examples/ and kept in build/fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              $(WARN) -Wno-unused-function -Wno-sign-compare -Wno-missing-prototypes \
              -D_POSIX_C_SOURCE=200809L -I$(B)/grammar -Icompiler
fuzz: $(B)/grammar/parser.c $(B)/grammar/lexer.c
	@scripts/deps.sh test
	@mkdir -p $(B)/fuzz/corpus
	clang $(FUZZ_CFLAGS) -o $(B)/fuzz/fuzz_parse tests/fuzz/fuzz_parse.c \
	    $(filter-out compiler/main.c,$(COMPILER_SRC)) $(B)/grammar/parser.c $(B)/grammar/lexer.c -lm
	cp examples/*.lam $(B)/fuzz/corpus/
	$(B)/fuzz/fuzz_parse -max_total_time=$(FUZZ_SECONDS) -timeout=10 -dict=tests/fuzz/lamina.dict \
	    $(B)/fuzz/corpus

clean:
	rm -rf $(B) laminac
