/*
 * main.c — the laminac driver: the command line, then the passes in the
 * order they run:
 *
 *   read -> parse (grammar/) -> lower + shape check (lower.c)
 *        -> autodiff (grad.c) -> memory plan (plan.c) -> C (emit_c.c)
 *
 * with a dump after each for people (--emit=ir, ir-grad, plan, dot,
 * --summary). Exit status: 0 success, 1 errors in the model file,
 * 2 a usage or I/O problem.
 */
#include "lamina.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum Emit { EMIT_NONE, EMIT_IR, EMIT_IR_GRAD, EMIT_DOT } Emit;

typedef struct Options {
    const char *input, *output;
    Emit emit;
    bool summary, inference_only;
} Options;

static void usage(FILE *f)
{
    fputs("usage: laminac [options] MODEL.lam\n"
          "\n"
          "Checks a model file and prints what was asked for.\n"
          "\n"
          "  --emit=ir        the checked forward IR, one line per tensor and node\n"
          "  --emit=ir-grad   the forward IR followed by the backward IR\n"
          "  --emit=dot       the forward graph for Graphviz (dot -Tsvg)\n"
          "  --summary        layers, output shapes, parameters, FLOPs and bytes\n"
          "  --inference-only the model needs no loss\n"
          "  -o FILE          write to FILE instead of standard output\n"
          "  --help           this text\n"
          "  --version        the version\n"
          "\n"
          "Exit status: 0 success, 1 errors in the model file, 2 usage or I/O error.\n",
          f);
}

static int parse_args(int argc, char **argv, Options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("laminac %s\n", LAMINA_VERSION);
            exit(0);
        } else if (!strcmp(a, "--emit=ir")) {
            o->emit = EMIT_IR;
        } else if (!strcmp(a, "--emit=ir-grad")) {
            o->emit = EMIT_IR_GRAD;
        } else if (!strcmp(a, "--emit=dot")) {
            o->emit = EMIT_DOT;
        } else if (!strcmp(a, "--summary")) {
            o->summary = true;
        } else if (!strcmp(a, "--inference-only")) {
            o->inference_only = true;
        } else if (!strcmp(a, "-o")) {
            if (++i == argc) {
                fputs("laminac: -o needs a file name\n", stderr);
                return 2;
            }
            o->output = argv[i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "laminac: unknown option '%s'\n", a);
            fputs("try 'laminac --help'\n", stderr);
            return 2;
        } else if (o->input) {
            fprintf(stderr, "laminac: one model file at a time ('%s' and '%s')\n", o->input, a);
            return 2;
        } else {
            o->input = a;
        }
    }
    if (!o->input) {
        usage(stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    Options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    Arena *arena = arena_new();
    Source src;
    if (!source_read(&src, arena, o.input)) {
        arena_free(arena);
        return 2;
    }
    Diag d;
    diag_init(&d, &src, stderr);
    Program *prog = parse_program(arena, &d, &src);
    Graph *g = NULL;
    if (d.errors == 0 || prog->nblocks > 0)
        g = lower_program(arena, &d, prog, !o.inference_only);
    if (d.errors) {
        fprintf(stderr, "%d error%s generated.\n", d.errors, d.errors == 1 ? "" : "s");
        arena_free(arena);
        return 1;
    }
    FILE *out = stdout;
    if (o.output && (o.emit != EMIT_NONE || o.summary)) {
        out = fopen(o.output, "w");
        if (!out) {
            fprintf(stderr, "laminac: cannot write '%s': %s\n", o.output, strerror(errno));
            arena_free(arena);
            return 2;
        }
    }
    if (o.summary)
        print_summary(out, g);
    if (o.emit == EMIT_IR)
        print_ir(out, g, false);
    else if (o.emit == EMIT_IR_GRAD)
        print_ir(out, g, true);
    else if (o.emit == EMIT_DOT)
        print_dot(out, g);
    if (fflush(out) != 0 || ferror(out) || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "laminac: cannot write '%s'\n", o.output ? o.output : "standard output");
        rc = 2;
    }
    arena_free(arena);
    return rc;
}
