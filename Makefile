# lamina — build, test, demo.
#   make            build laminac and the runtime library
#   make demo       the main job (installs missing Debian packages as root)
#   make test       every test
#   make fuzz       libFuzzer target for the parser (clang)
#   make BLAS=none  use the runtime's portable GEMM instead of OpenBLAS

CC      ?= cc
BLAS    ?= openblas
OPT     ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS  += -std=c99 $(OPT) $(WARN) -D_POSIX_C_SOURCE=200809L
B        = build

COMPILER_SRC = $(wildcard compiler/*.c)
COMPILER_OBJ = $(COMPILER_SRC:compiler/%.c=$(B)/compiler/%.o) $(B)/grammar/parser.o $(B)/grammar/lexer.o
RUNTIME_SRC  = $(wildcard runtime/*.c)
RUNTIME_OBJ  = $(RUNTIME_SRC:runtime/%.c=$(B)/runtime/%.o)

ifeq ($(BLAS),openblas)
BLAS_CFLAGS = -DLM_BLAS_OPENBLAS $(shell pkg-config --cflags openblas)
BLAS_LIBS   = $(shell pkg-config --libs openblas)
endif
RT_LIBS = $(B)/liblamina_rt.a $(BLAS_LIBS) -lz -lm

ifeq ($(LIBCLANG),1)
CLANG_CFLAGS = -DLM_LIBCLANG -I/usr/lib/llvm-14/include
CLANG_LIBS   = -L/usr/lib/llvm-14/lib -lclang -Wl,-rpath,/usr/lib/llvm-14/lib
endif

.PHONY: all deps demo test test-long fuzz bench clean
all: laminac $(B)/liblamina_rt.a

deps:
	@scripts/deps.sh build

laminac: $(COMPILER_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(CLANG_LIBS) $(LDFLAGS)

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
	$(CC) $(CFLAGS) $(CLANG_CFLAGS) -c -o $@ $<

$(B)/runtime/%.o: runtime/%.c runtime/lamina_rt.h
	@mkdir -p $(B)/runtime
	$(CC) $(CFLAGS) -fPIC $(BLAS_CFLAGS) -c -o $@ $<

$(B)/liblamina_rt.a: $(RUNTIME_OBJ)
	rm -f $@
	ar rcs $@ $^

demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	@tests/run.sh

fuzz:
	@scripts/deps.sh test
	@tests/fuzz/run.sh

clean:
	rm -rf $(B) laminac
