/*
 * fuzz_parse.c — a libFuzzer target for laminac's front end.
 *
 * Runs the lexer, the parser, lowering with its shape checks, and the IR
 * and dot printers on arbitrary bytes, as laminac would on a model file.
 * Diagnostics go to /dev/null: what judges a run is AddressSanitizer,
 * UBSan and libFuzzer's leak check. `make fuzz` builds it with clang and
 * runs it for FUZZ_SECONDS (60 by default) from a corpus seeded with
 * examples/; crashes are written to the current directory as crash-*.
 */
#include "lamina.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    if (!null && !(null = fopen("/dev/null", "w")))
        return 0;
    Arena *a = arena_new();
    char *text = arena_alloc(a, size + 1); /* NUL-terminated, as source_read makes it */
    memcpy(text, data, size);
    Source src = {"fuzz.lam", text, size};
    Diag d;
    diag_init(&d, &src, null);
    Program *p = parse_program(a, &d, &src);
    if (d.errors == 0 || p->nblocks > 0) {
        Graph *g = lower_program(a, &d, p, size % 2 == 0, 0); /* half of them --inference-only */
        if (g) {
            print_ir(null, g, false);
            print_dot(null, g);
        }
    }
    arena_free(a);
    return 0;
}
