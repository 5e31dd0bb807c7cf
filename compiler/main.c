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

typedef enum Emit { EMIT_C, EMIT_IR, EMIT_IR_GRAD, EMIT_DOT, EMIT_PLAN, EMIT_NONE } Emit;

typedef struct Options {
    const char *input, *output, *prefix;
    Emit emit;
    bool summary, inference_only, input_grad, verify, program, no_rewrite;
    const char *embed_weights;
    long batch, threads;
    const char *keep[8];
    int nkeep;
} Options;

static void usage(FILE *f)
{
    fputs("usage: laminac [options] MODEL.lam\n"
          "\n"
          "Compiles a model file to C: writes DIR/NAME.h and DIR/NAME.c (NAME: the\n"
          "model's name or --prefix). With --emit or --summary, prints that instead.\n"
          "\n"
          "  -o DIR           where the C goes (default: the current directory); with\n"
          "                   --emit or --summary, the file to write instead of stdout\n"
          "  --prefix NAME    prefix every exported symbol with NAME, not the model's name\n"
          "  --emit=c         the C code (the default)\n"
          "  --emit=ir        the checked forward IR, one line per tensor and node\n"
          "  --emit=ir-grad   the forward IR followed by the backward IR\n"
          "  --emit=dot       the forward graph for Graphviz (dot -Tsvg)\n"
          "  --emit=plan      the memory plan: every buffer's offset, size and lifetime\n"
          "  --no-rewrite     compile the layers exactly as written (no relu or bias\n"
          "                   moved into a max pooling, no convolution cropped to what\n"
          "                   its pooling reads, no activation differentiated in the\n"
          "                   loop of the average pooling after it); for reading the IR\n"
          "                   against the source\n"
          "  --summary        layers, output shapes, parameters, FLOPs and bytes\n"
          "  --main           also write DIR/NAME_main.c, a program: train, eval, predict\n"
          "  --embed-weights CKPT  compile the checkpoint's parameters in as static const\n"
          "                   data (with --inference-only: no file I/O at all)\n"
          "  --batch N        compile for batches of up to N samples (default: the\n"
          "                   train block's batch)\n"
          "  --threads N      split every pass's batch in N parts, each with memory of\n"
          "                   its own, that up to N threads run in parallel (compile\n"
          "                   the C with -fopenmp); default 1\n"
          "  --keep LAYER     keep LAYER's output after forward, for NAME_activation\n"
          "                   (with --main, a layer named 'code' is kept: --latent)\n"
          "  --input-grad     also compute the gradient of the loss with respect to the\n"
          "                   input (NAME_input_grad)\n"
          "  --verify         parse the written C with libclang and check it\n"
          "  --check          check the model, write nothing\n"
          "  --inference-only no gradients or optimizer; activations share memory;\n"
          "                   the model needs no loss\n"
          "  --list-ops       the op table: every operation and its kind\n"
          "  -h, --help       this text\n"
          "  --version        the version\n"
          "\n"
          "Exit status: 0 success, 1 errors in the model file (or problems --verify\n"
          "found), 2 usage or I/O error.\n",
          f);
}

/* The number after option argv[*i], from 1 to max, into *out (and *i past
 * it); false, with a message naming the option, when it is missing or out
 * of range. */
static bool number_arg(int argc, char **argv, int *i, long max, long *out)
{
    const char *opt = argv[*i];
    char *end = NULL;
    *out = ++*i < argc ? strtol(argv[*i], &end, 10) : 0;
    if (!end || *end || *out < 1 || *out > max) {
        fprintf(stderr, "laminac: %s needs a number from 1 to %ld\n", opt, max);
        return false;
    }
    return true;
}

static bool valid_prefix(const char *s)
{
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

static int parse_args(int argc, char **argv, Options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--list-ops")) {
            /* The op table, for tests that must cover every op. */
            static const char *const kinds[] = {"layer", "activation", "loss", "gradient"};
            for (int k = 0; k < OP_COUNT; k++)
                printf("%s %s\n", op_info[k].name, kinds[op_info[k].kind]);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("laminac %s\n", LAMINA_VERSION);
            exit(0);
        } else if (!strcmp(a, "--emit=c")) {
            o->emit = EMIT_C;
        } else if (!strcmp(a, "--check")) {
            o->emit = EMIT_NONE;
        } else if (!strcmp(a, "--prefix")) {
            if (++i == argc || !valid_prefix(argv[i])) {
                fputs("laminac: --prefix needs a C identifier\n", stderr);
                return 2;
            }
            o->prefix = argv[i];
        } else if (!strcmp(a, "--emit=ir")) {
            o->emit = EMIT_IR;
        } else if (!strcmp(a, "--emit=ir-grad")) {
            o->emit = EMIT_IR_GRAD;
        } else if (!strcmp(a, "--emit=dot")) {
            o->emit = EMIT_DOT;
        } else if (!strcmp(a, "--emit=plan")) {
            o->emit = EMIT_PLAN;
        } else if (!strcmp(a, "--summary")) {
            o->summary = true;
        } else if (!strcmp(a, "--batch")) {
            if (!number_arg(argc, argv, &i, 65536, &o->batch))
                return 2;
        } else if (!strcmp(a, "--keep")) {
            if (++i == argc || o->nkeep == 8) {
                fputs("laminac: --keep needs a layer name (at most 8 of them)\n", stderr);
                return 2;
            }
            o->keep[o->nkeep++] = argv[i];
        } else if (!strcmp(a, "--threads")) {
            if (!number_arg(argc, argv, &i, 64, &o->threads))
                return 2;
        } else if (!strcmp(a, "--no-rewrite")) {
            o->no_rewrite = true;
        } else if (!strcmp(a, "--input-grad")) {
            o->input_grad = true;
        } else if (!strcmp(a, "--verify")) {
            o->verify = true;
        } else if (!strcmp(a, "--main")) {
            o->program = true;
        } else if (!strcmp(a, "--embed-weights")) {
            if (++i == argc) {
                fputs("laminac: --embed-weights needs a checkpoint file\n", stderr);
                return 2;
            }
            o->embed_weights = argv[i];
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
        g = lower_program(arena, &d, prog, !o.inference_only, o.batch);
    if (d.errors) {
        fprintf(stderr, "%d error%s generated.\n", d.errors, d.errors == 1 ? "" : "s");
        arena_free(arena);
        return 1;
    }
    /* --keep: layer outputs that NAME_activation must find intact. */
    for (int k = 0; k < o.nkeep + (o.program ? 1 : 0); k++) {
        const char *want = k < o.nkeep ? o.keep[k] : "code";
        bool found = false;
        for (int l = 0; l < g->layers.len; l++) {
            Layer *ly = g->layers.items[l];
            if (!strcmp(ly->name, want) && ly->out && ly->out->role == ROLE_ACT)
                ly->out->keep = found = true;
        }
        if (!found && k < o.nkeep) {
            fprintf(stderr, "laminac: --keep %s: the model has no layer of that name\n", want);
            arena_free(arena);
            return 2;
        }
    }
    if (!o.no_rewrite)
        rewrite_forward(g);
    if (g->loss && !o.inference_only) {
        g->input->grad_wanted = o.input_grad;
        grad_build(g, !o.no_rewrite);
    }
    Plan *plan = plan_build(g, !o.inference_only, o.embed_weights != NULL, (int)o.threads);
    FILE *out = stdout;
    if (o.emit == EMIT_C && !o.summary) {
        EmitOptions eo = {o.prefix, o.input, o.inference_only, o.embed_weights};
        const char *dir = o.output ? o.output : ".";
        rc = emit_c(g, plan, &eo, dir) ? 0 : 2;
        if (rc == 0 && o.program && !emit_main(g, plan, &eo, dir))
            rc = 2;
        if (rc == 0 && o.verify && !verify_c(dir, eo.prefix ? eo.prefix : g->name, NULL))
            rc = verify_available() ? 1 : 2; /* 2: no libclang, a usage problem */
        arena_free(arena);
        return rc;
    }
    if (o.output && (o.emit != EMIT_NONE || o.summary)) {
        out = fopen(o.output, "w");
        if (!out) {
            fprintf(stderr, "laminac: cannot write '%s': %s\n", o.output, strerror(errno));
            arena_free(arena);
            return 2;
        }
    }
    if (o.summary)
        print_summary(out, g, plan);
    if (o.emit == EMIT_IR)
        print_ir(out, g, false);
    else if (o.emit == EMIT_IR_GRAD)
        print_ir(out, g, true);
    else if (o.emit == EMIT_DOT)
        print_dot(out, g);
    else if (o.emit == EMIT_PLAN)
        print_plan(out, g, plan);
    if (fflush(out) != 0 || ferror(out) || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "laminac: cannot write '%s'\n", o.output ? o.output : "standard output");
        rc = 2;
    }
    arena_free(arena);
    return rc;
}
