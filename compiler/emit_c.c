/*
 * emit_c.c — the C emitter: a checked, differentiated, planned graph in,
 * <prefix>.h and <prefix>.c out.
 *
 * The generated code is written to be read. Each node becomes one static
 * function whose comment gives the operation, the shapes and the formula;
 * the forward and backward passes are straight lists of calls to them, in
 * schedule order, on named regions of one float array laid out by plan.c.
 * Every loop bound except the batch count n is a constant. Nothing is
 * allocated after create, nothing is global but constant tables, and the
 * only calls out are to <math.h>, <string.h> and the lamina runtime
 * (GEMM, random numbers, checkpoint files).
 *
 * This file decides how each op is computed in C; it does not decide
 * shapes (ops.c), gradients (grad.c) or memory (plan.c).
 */
#include "lamina.h"
#include "lamina_rt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct Emitter {
    const Graph *g;
    const Plan *p;
    const char *prefix, *PREFIX;
    const char **macro;   /* by tensor id: the name of its memory in C */
    const char **scratch; /* by node id: the name of its scratch memory */
    Buf fn;  /* the node functions */
    Buf fwd; /* calls of the forward pass */
    Buf bwd; /* calls of the backward pass */
    Buf *call;
    bool need_tanh, need_sigmoid; /* which math helpers the nodes call */
} Emitter;

/* ---- names ------------------------------------------------------------------ */

/* "c1.pre.grad" -> "c1_pre_grad" */
static const char *cname(const Emitter *e, const Tensor *t)
{
    char *s = arena_strdup(e->g->arena, t->name);
    for (char *c = s; *c; c++)
        if (*c == '.')
            *c = '_';
    return s;
}

static const char *upper(const Emitter *e, const char *s)
{
    char *u = arena_strdup(e->g->arena, s);
    for (char *c = u; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    return u;
}

/* How generated code names a tensor's memory: the caller's x and target,
 * or a macro for its region of mem. */
static const char *ref(const Emitter *e, const Tensor *t)
{
    while (t->def && (t->def->op == OP_FLATTEN || t->def->op == OP_RESHAPE_DX))
        t = t->def->in[0]; /* a view is its source's memory */
    if (t->role == ROLE_INPUT)
        return "x";
    if (t->role == ROLE_TARGET)
        return "target";
    return e->macro[t->id];
}

/* Names the generated code or the headers it includes already use, which a
 * layer's upper-cased name must not take: 1 for a name taken outright,
 * 2 for one in a reserved family (INT..., LM_..., the model's PREFIX_...),
 * which no numbered suffix can rescue. */
static int macro_taken(const Emitter *e, const char *s, const char **names, int n)
{
    static const char *const reserved[] = {
        "NULL", "NAN", "INFINITY", "HUGE_VAL", "HUGE_VALF", "HUGE_VALL", "EOF", "BUFSIZ",
        "FILENAME_MAX", "FOPEN_MAX", "TMP_MAX", "SEEK_SET", "SEEK_CUR", "SEEK_END",
        "EXIT_SUCCESS", "EXIT_FAILURE", "RAND_MAX", "MB_CUR_MAX", "MOMENTUM", "ADAM_M", "PART_FLOATS",
        "ADAM_V", "MAX_META", "EDOM", "ERANGE", "EILSEQ", "CAT", "CAT_", "F", "U"};
    static const char *const prefixes[] = {"INT", "UINT", "SIZE_", "PTRDIFF_", "WCHAR_", "WINT_",
                                           "SIG", "FP_", "MATH_", "M_", "LM_", "PRI", "SCN", "_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(s, prefixes[i], strlen(prefixes[i])))
            return 2;
    size_t lp = strlen(e->PREFIX);
    if (!strncmp(s, e->PREFIX, lp) && s[lp] == '_')
        return 2;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (!strcmp(s, reserved[i]))
            return 1;
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(s, names[i]))
            return 1;
    return 0;
}

/* Gives every tensor and scratch buffer a macro name: its upper-cased
 * name, or that with _2, _3, ... when the plain one is taken. */
static void name_macros(Emitter *e)
{
    const Graph *g = e->g;
    int nt = g->tensors.len, nn = g->nodes.len;
    const char **all = ARENA_ARRAY(g->arena, const char *, nt + nn + 1);
    e->macro = ARENA_ARRAY(g->arena, const char *, nt + 1);
    e->scratch = ARENA_ARRAY(g->arena, const char *, nn + 1);
    int used = 0;
    for (int i = 0; i < nt + nn; i++) {
        const char *base;
        if (i < nt) {
            base = upper(e, cname(e, g->tensors.items[i]));
        } else {
            const Node *nd = g->nodes.items[i - nt];
            if (!e->p->scratch_of[nd->id])
                continue;
            base = upper(e, arena_printf(g->arena, "%s_col", cname(e, nd->out)));
        }
        if (macro_taken(e, base, all, used) == 2)
            base = arena_printf(g->arena, "V_%s", base);
        const char *name = base;
        for (int k = 2; macro_taken(e, name, all, used); k++)
            name = arena_printf(g->arena, "%s_%d", base, k);
        all[used++] = name;
        if (i < nt)
            e->macro[i] = name;
        else
            e->scratch[i - nt] = name;
    }
}

static const char *fn_name(const Emitter *e, const Node *n)
{
    return arena_printf(e->g->arena, "%s_%s", n->id < e->g->nforward ? "forward" : "backward",
                        cname(e, n->out));
}

/* A float literal C accepts: 2 -> "2.0f", 0.5 -> "0.5f". */
static const char *flit(const Emitter *e, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.9g", v);
    if (!strpbrk(b, ".eEn"))
        strcat(b, ".0");
    return arena_printf(e->g->arena, "%sf", b);
}

/* Per-sample shape text: "[1,28,28]", or "[]" for a scalar. */
static const char *dims(const Emitter *e, const Tensor *t)
{
    Shape s = t->shape;
    if (t->role != ROLE_PARAM && t->role != ROLE_PGRAD && s.rank > 0) {
        s.rank--;
        memmove(s.dim, s.dim + 1, sizeof(int64_t) * (size_t)s.rank);
    }
    char b[96];
    shape_str(&s, b, sizeof b);
    return arena_strdup(e->g->arena, b);
}

/* Text of a tensor with its shape: "x[n,1,28,28]", "c1.weight[6,1,5,5]". */
static const char *typed(const Emitter *e, const Tensor *t)
{
    const char *d = dims(e, t);
    if (t->role == ROLE_PARAM || t->role == ROLE_PGRAD)
        return arena_printf(e->g->arena, "%s%s", t->name, d);
    return arena_printf(e->g->arena, "%s[n%s%s", t->name, strcmp(d, "[]") ? "," : "", d + 1);
}

static int64_t per_sample(const Tensor *t)
{
    return t->shape.rank ? shape_elems(&t->shape) / t->shape.dim[0] : 1;
}

static void fn(Emitter *e, const char *fmt, ...) LM_PRINTF(2, 3);
static void fn(Emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&e->fn, fmt, ap);
    va_end(ap);
}

/* The comment that opens every node's function. */
static void header(Emitter *e, const Node *n, const char *what, const char *formula)
{
    const Layer *ly = e->g->layers.items[n->layer];
    int pad = 60 - (int)(strlen(ly->name) + strlen(what));
    fn(e, "\n/*\n * %s: %s%*s(line %d)\n", ly->name, what, pad > 1 ? pad : 1, "", n->loc.line);
    fn(e, " *   ");
    for (int i = 0; i < n->nin; i++)
        fn(e, "%s%s", i ? ", " : "", typed(e, n->in[i]));
    fn(e, " -> %s\n", typed(e, n->out));
    for (int k = 0; k < n->nnotes; k++)
        fn(e, " *   (%s)\n", n->note[k]);
    fn(e, "%s */\n", formula);
}

/* The call in a pass: name(arg, arg, ..., extra). A pass runs on one part
 * of the batch, samples s0 <= s < s1 (see run_forward): parameter
 * gradients go to that part's gradient buffer (+ gp), the loss to its
 * slot (+ part). */
static void call(Emitter *e, const Node *n, const char *extra)
{
    buf_printf(e->call, "    %s(", fn_name(e, n));
    for (int i = 0; i < n->nin; i++)
        buf_printf(e->call, "%s, ", ref(e, n->in[i]));
    const char *part = n->out->role == ROLE_PGRAD ? " + gp" : n->out->role == ROLE_LOSS ? " + part" : "";
    buf_printf(e->call, "%s%s%s%s);\n", ref(e, n->out), part, extra ? ", " : "", extra ? extra : "");
}

/* A node's scratch (its part's, see emit_layout) and the samples it takes. */
static const char *scratch_arg(const Emitter *e, const Node *n)
{
    return arena_printf(e->g->arena, "%s, s0, s1", e->scratch[n->id]);
}

/* "i * 2 - 1 + p" with the trivial parts left out; "i * 2" when k is NULL. */
static const char *index_expr(const Emitter *e, const char *i, int stride, int pad, const char *k)
{
    const char *s = stride == 1 ? i : arena_printf(e->g->arena, "%s * %d", i, stride);
    if (!k) /* "i * 2" alone */
        return s;
    return pad ? arena_printf(e->g->arena, "%s - %d + %s", s, pad, k)
               : arena_printf(e->g->arena, "%s + %s", s, k);
}

/* ---- dense ------------------------------------------------------------------ */

void emit_dense(Emitter *e, const Node *n)
{
    int64_t in = n->in[1]->shape.dim[1], out = n->in[1]->shape.dim[0];
    header(e, n, arena_printf(e->g->arena, "dense, %lld -> %lld", (long long)in, (long long)out),
           " *   y[s,o] = b[o] + sum_i x[s,i] W[o,i]\n"
           " *   as one matrix product over the batch: Y = X W^T, after Y = 1 b^T\n");
    fn(e, "static void %s(const float *restrict x, const float *restrict w,\n"
          "    const float *restrict b, float *restrict y, int s0, int s1)\n{\n", fn_name(e, n));
    fn(e, "    for (int s = s0; s < s1; s++)\n"
          "        memcpy(y + (size_t)s * %lld, b, %lld * sizeof(float));\n",
       (long long)out, (long long)out);
    fn(e, "    lm_sgemm(0, 1, s1 - s0, %lld, %lld, 1.0f, x + (size_t)s0 * %lld, %lld, w, %lld, 1.0f,\n"
          "             y + (size_t)s0 * %lld, %lld);\n}\n",
       (long long)out, (long long)in, (long long)in, (long long)in, (long long)in, (long long)out,
       (long long)out);
    call(e, n, "s0, s1");
}

void emit_dense_dw(Emitter *e, const Node *n)
{
    int64_t out = n->out->shape.dim[0], in = n->out->shape.dim[1];
    header(e, n, "gradient of the dense weight",
           " *   dW[o,i] += sum_s dy[s,o] x[s,i]    (dW += dY^T X)\n");
    fn(e, "static void %s(const float *restrict dy, const float *restrict x,\n"
          "    float *restrict dw, int s0, int s1)\n{\n", fn_name(e, n));
    fn(e, "    lm_sgemm(1, 0, %lld, %lld, s1 - s0, 1.0f, dy + (size_t)s0 * %lld, %lld,\n"
          "             x + (size_t)s0 * %lld, %lld, 1.0f, dw, %lld);\n}\n",
       (long long)out, (long long)in, (long long)out, (long long)out, (long long)in, (long long)in,
       (long long)in);
    call(e, n, "s0, s1");
}

void emit_dense_dx(Emitter *e, const Node *n)
{
    int64_t out = n->in[1]->shape.dim[0], in = n->in[1]->shape.dim[1];
    header(e, n, "gradient of the dense input",
           " *   dx[s,i] = sum_o dy[s,o] W[o,i]    (dX = dY W)\n");
    fn(e, "static void %s(const float *restrict dy, const float *restrict w,\n"
          "    float *restrict dx, int s0, int s1)\n{\n", fn_name(e, n));
    fn(e, "    lm_sgemm(0, 0, s1 - s0, %lld, %lld, 1.0f, dy + (size_t)s0 * %lld, %lld, w, %lld, 0.0f,\n"
          "             dx + (size_t)s0 * %lld, %lld);\n}\n",
       (long long)in, (long long)out, (long long)out, (long long)out, (long long)in, (long long)in,
       (long long)in);
    call(e, n, "s0, s1");
}

static const Node *fused_bias_db(const Emitter *e, const Node *dx);

void emit_bias_db(Emitter *e, const Node *n)
{
    const Node *from = n->in[0]->def;
    if (from && fused_bias_db(e, from) == n) {
        buf_printf(e->call, "    /* %s: summed by %s, with %s */\n", n->out->name, fn_name(e, from),
                   n->in[0]->name);
        return;
    }
    const Shape *dy = &n->in[0]->shape;
    int64_t ch = dy->dim[1], inner = per_sample(n->in[0]) / ch;
    header(e, n, "gradient of the bias",
           inner > 1 ? " *   db[f] += sum over s, i, j of dy[s,f,i,j]\n"
                     : " *   db[o] += sum_s dy[s,o]\n");
    fn(e, "static void %s(const float *restrict dy, float *restrict db, int s0, int s1)\n{\n",
       fn_name(e, n));
    fn(e, "    for (int s = s0; s < s1; s++)\n"
          "        for (int f = 0; f < %lld; f++) {\n", (long long)ch);
    if (inner > 1) {
        /* Eight running sums, which a compiler keeps in one vector register:
         * one sum would be a chain of dependent additions. */
        int64_t main_part = inner / 8 * 8;
        fn(e, "            const float *d = dy + ((size_t)s * %lld + f) * %lld;\n"
              "            float part[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};\n"
              "            for (int k = 0; k < %lld; k += 8)\n"
              "                for (int j = 0; j < 8; j++)\n"
              "                    part[j] += d[k + j];\n"
              "            float sum = 0.0f;\n",
           (long long)ch, (long long)inner, (long long)main_part);
        if (main_part < inner)
            fn(e, "            for (int k = %lld; k < %lld; k++)\n"
                  "                sum += d[k];\n", (long long)main_part, (long long)inner);
        fn(e, "            for (int j = 0; j < 8; j++)\n"
              "                sum += part[j];\n"
              "            db[f] += sum;\n");
    } else {
        fn(e, "            db[f] += dy[(size_t)s * %lld + f];\n", (long long)ch);
    }
    fn(e, "        }\n}\n");
    call(e, n, "s0, s1");
}

/* ---- conv2d ----------------------------------------------------------------- */

/* The geometry of a convolution, read off its forward node. */
typedef struct Conv {
    int64_t c, h, w, f, oh, ow, kh, kw, sh, sw, ph, pw;
    int64_t rows, cols; /* of the column matrix: C*KH*KW by OH*OW */
    const char *name;   /* of its helpers: im2col_<name> */
} Conv;

static Conv conv_of(const Emitter *e, const Node *n)
{
    const Node *fwd = n->op == OP_CONV2D ? n : e->g->nodes.items[n->attr.of_node];
    const Shape *x = &fwd->in[0]->shape, *y = &fwd->out->shape;
    Conv c = {x->dim[1], x->dim[2], x->dim[3], y->dim[1], y->dim[2], y->dim[3],
              fwd->attr.kernel[0], fwd->attr.kernel[1], fwd->attr.stride[0], fwd->attr.stride[1],
              fwd->attr.pad[0], fwd->attr.pad[1], 0, 0, cname(e, fwd->out)};
    c.rows = c.c * c.kh * c.kw;
    c.cols = c.oh * c.ow;
    return c;
}

/* col2im's loops: for row (c,p,q) of the columns
 * and output row i, h is the input row; [j0, j1) are the output columns
 * whose input column w = j*SW - PW + q falls inside x (outside: padding).
 * The bounds are worked out once per row, so the inner loop has no test. */
static void window_rows(Emitter *e, const Conv *c, const char *row_decl)
{
    fn(e, "    for (int c = 0; c < %lld; c++)\n"
          "        for (int p = 0; p < %lld; p++)\n"
          "            for (int q = 0; q < %lld; q++) {\n"
          "                %s = col + (size_t)((c * %lld + p) * %lld + q) * ld;\n",
       (long long)c->c, (long long)c->kh, (long long)c->kw, row_decl, (long long)c->kh,
       (long long)c->kw);
    if (c->pw == 0) {
        fn(e, "                const int j0 = 0, j1 = %lld;\n", (long long)c->ow);
    } else if (c->sw == 1) {
        fn(e, "                const int j0 = q < %lld ? %lld - q : 0;\n"
              "                const int j1 = %lld - q < %lld ? %lld - q : %lld;\n",
           (long long)c->pw, (long long)c->pw, (long long)(c->w + c->pw), (long long)c->ow,
           (long long)(c->w + c->pw), (long long)c->ow);
    } else {
        fn(e, "                const int j0 = q < %lld ? (%lld - q + %lld) / %lld : 0;\n"
              "                int j1 = (%lld - q) / %lld + 1;\n"
              "                j1 = j1 > %lld ? %lld : j1;\n",
           (long long)c->pw, (long long)c->pw, (long long)(c->sw - 1), (long long)c->sw,
           (long long)(c->w - 1 + c->pw), (long long)c->sw, (long long)c->ow, (long long)c->ow);
    }
    fn(e, "                for (int i = 0; i < %lld; i++) {\n"
          "                    const int h = %s;\n",
       (long long)c->oh, index_expr(e, "i", (int)c->sh, (int)c->ph, "p"));
}

/* The statements that copy sample x into xp (declared from `at`), x with a
 * border of zeros: every window of a padded convolution lies inside xp. */
static void emit_pad_copy(Emitter *e, const Conv *c, const char *at)
{
    const int64_t hp = c->h + 2 * c->ph, wp = c->w + 2 * c->pw;
    fn(e, "    float *restrict xp = %s;\n"
          "    memset(xp, 0, %lld * sizeof(float));\n"
          "    for (int c = 0; c < %lld; c++)\n"
          "        for (int h = 0; h < %lld; h++)\n"
          "            for (int w = 0; w < %lld; w++)\n"
          "                xp[(c * %lld + h + %lld) * %lld + w + %lld] = x[(c * %lld + h) * %lld + w];\n",
       at, (long long)(c->c * hp * wp), (long long)c->c, (long long)c->h, (long long)c->w, (long long)hp,
       (long long)c->ph, (long long)wp, (long long)c->pw, (long long)c->h, (long long)c->w);
}

static void emit_im2col(Emitter *e, const Conv *c)
{
    /* With padding, x is first copied into a zero-bordered image (after
     * the columns in the scratch buffer, see plan_scratch_size): every
     * window then lies inside it, and the copy loops have fixed bounds
     * and no test. */
    const bool padded = c->ph > 0 || c->pw > 0;
    const int64_t hp = c->h + 2 * c->ph, wp = c->w + 2 * c->pw;
    fn(e, "\n/* Unfolds one sample x[%lld,%lld,%lld] into %lld rows of %lld columns, ld apart:\n"
          " * row (c,p,q) holds x[c, i*%lld-%lld+p, j*%lld-%lld+q] for every output\n"
          " * position (i,j)",
       (long long)c->c, (long long)c->h, (long long)c->w, (long long)c->rows, (long long)c->cols,
       (long long)c->sh, (long long)c->ph, (long long)c->sw, (long long)c->pw);
    if (padded)
        fn(e, ", 0 outside x. x is first copied into xp[%lld,%lld,%lld], x with a\n"
              " * border of zeros, at col + %lld rows * ld",
           (long long)c->c, (long long)hp, (long long)wp, (long long)c->rows);
    fn(e, ". */\n");
    fn(e, "static void im2col_%s(const float *restrict x, float *restrict col, int ld)\n{\n", c->name);
    if (padded)
        emit_pad_copy(e, c, arena_printf(e->g->arena, "col + (size_t)%lld * ld", (long long)c->rows));
    fn(e, "    for (int c = 0; c < %lld; c++)\n"
          "        for (int p = 0; p < %lld; p++)\n"
          "            for (int q = 0; q < %lld; q++) {\n"
          "                float *row = col + (size_t)((c * %lld + p) * %lld + q) * ld;\n"
          "                for (int i = 0; i < %lld; i++) {\n"
          "                    const float *in = %s + (c * %lld + %s) * %lld;\n",
       (long long)c->c, (long long)c->kh, (long long)c->kw, (long long)c->kh, (long long)c->kw,
       (long long)c->oh, padded ? "xp" : "x", (long long)(padded ? hp : c->h),
       index_expr(e, "i", (int)c->sh, 0, "p"), (long long)(padded ? wp : c->w));
    /* With stride 1 a window row is OW contiguous floats: one memcpy,
     * which the C compiler inlines as plain vector moves. gcc's copy loop
     * was slower: overlap checks where the source is the zero-bordered
     * copy inside col, permutes for the short rows of an unpadded layer.
     * LeNet-5 training +3.5%, CNN latency -3% here. */
    if (c->sw == 1)
        fn(e, "                    memcpy(row + i * %lld, in + q, %lld * sizeof(float));\n",
           (long long)c->ow, (long long)c->ow);
    else
        fn(e, "                    for (int j = 0; j < %lld; j++)\n"
              "                        row[i * %lld + j] = in[%s];\n",
           (long long)c->ow, (long long)c->ow, index_expr(e, "j", (int)c->sw, 0, "q"));
    fn(e, "                }\n"
          "            }\n}\n");
}

/* col2im of a stride-1 convolution (fold: plan_fold_size's floats). Row
 * (c,p,q) of the columns is a plane of OH x OW outputs, and lands on the
 * (padded) input shifted by p rows and q columns: adding it row by row
 * moves 10-float rows onto 14-float ones at every q (LeNet-5's c3), short
 * loops whose loads meet the stores just made at another offset. Instead,
 * per channel, the planes of each q are summed over p into u[q], OH + KH - 1
 * rows of OW (a shift by p rows is one by p * OW floats: one contiguous
 * loop per plane), then each row of dx is the sum of the KW rows of u,
 * q columns apart, in a local row written once. LeNet-5 training +3%. */
static void emit_col2im_fold(Emitter *e, const Conv *c)
{
    const int64_t rf = c->oh + c->kh - 1, wf = c->ow + c->kw - 1, plane = rf * c->ow;
    const int64_t keep = wf - c->pw < c->w ? wf - c->pw : c->w; /* dx columns the fold reaches */
    fn(e, "\n/* Folds %lld rows of %lld columns (ld apart) back onto one sample\n"
          " * dx[%lld,%lld,%lld], adding where windows overlap: the transpose of im2col_%s.\n"
          " * Row (c,p,q) holds the outputs' %lldx%lld plane, which lands on the input%s\n"
          " * p rows down and q columns right: per channel, the planes of each q are\n"
          " * first summed over p into u[q] (%lld rows of %lld, the shift by p rows one of\n"
          " * p * %lld floats), then each row of dx sums the %lld rows of u it meets, q\n"
          " * columns apart.%s */\n",
       (long long)c->rows, (long long)c->cols, (long long)c->c, (long long)c->h, (long long)c->w,
       c->name, (long long)c->oh, (long long)c->ow,
       c->ph || c->pw ? arena_printf(e->g->arena, " (padded by %lld,%lld)", (long long)c->ph, (long long)c->pw) : "",
       (long long)rf, (long long)c->ow, (long long)c->ow, (long long)c->kw,
       c->h + c->ph > rf || keep < c->w
           ? "\n * The rows and columns of dx that no output's window reaches (the convolution\n"
             " * computes only what the pooling after it reads) are 0."
           : "");
    fn(e, "static void col2im_%s(const float *restrict col, float *restrict u, float *restrict dx, int ld)\n{\n"
          "    for (int c = 0; c < %lld; c++) {\n"
          "        memset(u, 0, %lld * sizeof(float));\n"
          "        for (int p = 0; p < %lld; p++)\n"
          "            for (int q = 0; q < %lld; q++) {\n"
          "                const float *row = col + (size_t)((c * %lld + p) * %lld + q) * ld;\n"
          "                float *to = u + q * %lld + p * %lld;\n"
          "                for (int k = 0; k < %lld; k++)\n"
          "                    to[k] += row[k];\n"
          "            }\n"
          "        for (int h = 0; h < %lld; h++) {\n"
          "            float *out = dx + (c * %lld + h) * %lld;\n",
       c->name, (long long)c->c, (long long)(c->kw * plane), (long long)c->kh, (long long)c->kw,
       (long long)c->kh, (long long)c->kw, (long long)plane, (long long)c->ow, (long long)c->cols,
       (long long)c->h, (long long)c->h, (long long)c->w);
    /* Rows of the input below the fold (a convolution cropped by rewrite.c
     * to what its pooling reads) and columns right of it get 0. */
    if (c->h + c->ph > rf)
        fn(e, "            if (h >= %lld) {\n"
              "                memset(out, 0, %lld * sizeof(float));\n"
              "                continue;\n"
              "            }\n",
           (long long)(rf - c->ph), (long long)c->w);
    fn(e, "            float sum[%lld] = {0.0f};\n"
          "            for (int q = 0; q < %lld; q++)\n"
          "                for (int j = 0; j < %lld; j++)\n"
          "                    sum[j + q] += u[q * %lld + %s * %lld + j];\n"
          "            memcpy(out, sum%s, %lld * sizeof(float));\n",
       (long long)wf, (long long)c->kw, (long long)c->ow, (long long)plane,
       c->ph ? arena_printf(e->g->arena, "(h + %lld)", (long long)c->ph) : "h", (long long)c->ow,
       c->pw ? arena_printf(e->g->arena, " + %lld", (long long)c->pw) : "", (long long)keep);
    if (keep < c->w)
        fn(e, "            memset(out + %lld, 0, %lld * sizeof(float));\n", (long long)keep,
           (long long)(c->w - keep));
    fn(e, "        }\n    }\n}\n");
}

static void emit_col2im(Emitter *e, const Conv *c)
{
    fn(e, "\n/* Folds %lld rows of %lld columns (ld apart) back onto one sample\n"
          " * dx[%lld,%lld,%lld], adding where windows overlap: the transpose of im2col_%s. */\n",
       (long long)c->rows, (long long)c->cols, (long long)c->c, (long long)c->h, (long long)c->w,
       c->name);
    fn(e, "static void col2im_%s(const float *restrict col, float *restrict dx, int ld)\n{\n", c->name);
    fn(e, "    memset(dx, 0, %lld * sizeof(float));\n", (long long)(c->c * c->h * c->w));
    window_rows(e, c, "const float *row");
    if (c->ph > 0)
        fn(e, "                    if (h < 0 || h >= %lld)\n"
              "                        continue;\n", (long long)c->h);
    fn(e, "                    const float *in = row + i * %lld;\n"
          "                    float *out = dx + (c * %lld + h) * %lld;\n"
          "                    for (int j = j0; j < j1; j++)\n"
          "                        out[%s] += in[j];\n"
          "                }\n"
          "            }\n}\n",
       (long long)c->ow, (long long)c->h, (long long)c->w,
       index_expr(e, "j", (int)c->sw, (int)c->pw, "q"));
}

/* Convolutions run one sample at a time: its columns (im2col) fit in
 * cache, and one matrix product per sample measured faster here than one
 * product for the whole batch (see the README's performance notes). */
void emit_conv2d(Emitter *e, const Node *n)
{
    Conv c = conv_of(e, n);
    emit_im2col(e, &c);
    const char *what = arena_printf(e->g->arena, "conv2d, %lld filters %lldx%lld, stride %lld,%lld, pad %lld,%lld",
                                    (long long)c.f, (long long)c.kh, (long long)c.kw,
                                    (long long)c.sh, (long long)c.sw, (long long)c.ph, (long long)c.pw);
    /* No bias when rewrite.c moved it into the max pooling after it. */
    const bool bias = n->nin > 2;
    const char *formula = arena_printf(
        e->g->arena,
        " *   y[s,f,i,j] = %ssum_{c,p,q} W[f,c,p,q] x[s, c, i*%lld-%lld+p, j*%lld-%lld+q]\n"
        " *   per sample: unfold x into columns (im2col), col[%lld, %lld], then one\n"
        " *   matrix product y[%lld, %lld] = W[%lld, %lld] col%s\n",
        bias ? "b[f] + " : "", (long long)c.sh, (long long)c.ph, (long long)c.sw, (long long)c.pw, (long long)c.rows,
        (long long)c.cols, (long long)c.f, (long long)c.cols, (long long)c.f, (long long)c.rows,
        bias ? ", onto y = b" : "");
    header(e, n, what, formula);
    fn(e, "static void %s(const float *restrict x, const float *restrict w,\n"
          "    %sfloat *restrict y, float *restrict col, int s0, int s1)\n{\n",
       fn_name(e, n), bias ? "const float *restrict b, " : "");
    fn(e, "    for (int s = s0; s < s1; s++) {\n"
          "        float *ys = y + (size_t)s * %lld;\n"
          "        im2col_%s(x + (size_t)s * %lld, col, %lld);\n",
       (long long)(c.f * c.cols), c.name, (long long)(c.c * c.h * c.w), (long long)c.cols);
    if (bias)
        fn(e, "        for (int f = 0; f < %lld; f++)\n"
              "            for (int k = 0; k < %lld; k++)\n"
              "                ys[f * %lld + k] = b[f];\n",
           (long long)c.f, (long long)c.cols, (long long)c.cols);
    fn(e, "        lm_sgemm(0, 0, %lld, %lld, %lld, 1.0f, w, %lld, col, %lld, %s, ys, %lld);\n"
          "    }\n}\n",
       (long long)c.f, (long long)c.cols, (long long)c.rows, (long long)c.rows, (long long)c.cols,
       bias ? "1.0f" : "0.0f", (long long)c.cols);
    call(e, n, scratch_arg(e, n));
}

/* im2row copies each window row, KW floats, as `wide` floats (the next
 * power of two: one vector move instead of a vector and a remainder) in
 * rows 0 <= r < the number returned. The extra floats land on the slots
 * after it, which are written later (the next window row, or the next
 * row's first); they stop before the last row, whose extras would leave
 * the rows, and before the first row whose copy would read past the
 * sample's x (or xp). */
static int64_t im2row_wide_rows(const Conv *c, int64_t wide, int64_t hp, int64_t wp)
{
    for (int64_t r = 0; r < c->cols; r++) {
        int64_t i = r / c->ow, j = r % c->ow;
        int64_t last_read = ((c->c - 1) * hp + i * c->sh + c->kh - 1) * wp + j * c->sw + wide - 1;
        if (r == c->cols - 1 || last_read >= c->c * hp * wp)
            return r;
    }
    return c->cols;
}

/* The transpose of im2col: one row per output position, holding its
 * window (c,p,q) contiguously. The weight gradient multiplies dy by it
 * untransposed, which OpenBLAS runs faster than dy times im2col's
 * columns transposed (the CNN's conv2: about 75 -> 95 GFLOP/s here). */
static void emit_im2row(Emitter *e, const Conv *c)
{
    const bool padded = c->ph > 0 || c->pw > 0;
    const int64_t hp = c->h + 2 * c->ph, wp = c->w + 2 * c->pw;
    int64_t wide = 1;
    while (wide < c->kw)
        wide *= 2;
    const int64_t nwide = wide > c->kw && wide <= 16 ? im2row_wide_rows(c, wide, padded ? hp : c->h, padded ? wp : c->w) : 0;
    fn(e, "\n/* Unfolds one sample x[%lld,%lld,%lld] into %lld rows of %lld, one row per output\n"
          " * position (i,j): element (c,p,q) is x[c, i*%lld-%lld+p, j*%lld-%lld+q]%s.",
       (long long)c->c, (long long)c->h, (long long)c->w, (long long)c->cols, (long long)c->rows,
       (long long)c->sh, (long long)c->ph, (long long)c->sw, (long long)c->pw,
       padded ? arena_printf(e->g->arena, ", 0 outside x\n * (read from xp[%lld,%lld,%lld], x with a border of zeros, after the rows)",
                             (long long)c->c, (long long)hp, (long long)wp)
              : "");
    if (nwide)
        fn(e, "\n * Rows before %lld copy each window row (%lld floats) as %lld, one vector move: the\n"
              " * extra floats land on slots written after them (the last row, whose extras\n"
              " * would leave the rows, and any row whose copy would read past %s, copy %lld).",
           (long long)nwide, (long long)c->kw, (long long)wide, padded ? "xp" : "x", (long long)c->kw);
    fn(e, " */\n");
    fn(e, "static void im2row_%s(const float *restrict x, float *restrict rows)\n{\n", c->name);
    if (padded)
        emit_pad_copy(e, c, arena_printf(e->g->arena, "rows + %lld", (long long)(c->rows * c->cols)));
    const char *src = padded ? "xp" : "x";
    const long long src_h = padded ? hp : c->h, src_w = padded ? wp : c->w;
    fn(e, "    for (int i = 0; i < %lld; i++)\n"
          "        for (int j = 0; j < %lld; j++) {\n"
          "            float *row = rows + (size_t)(i * %lld + j) * %lld;\n",
       (long long)c->oh, (long long)c->ow, (long long)c->ow, (long long)c->rows);
    const char *in = nwide ? "    " : "";
    /* where window row (c,p) of output position (i,j) starts in the source,
     * less the column: (c * H + i*S + p) * W */
    const char *line = arena_printf(e->g->arena, "(c * %lld + %s) * %lld", src_h,
                                    index_expr(e, "i", (int)c->sh, 0, "p"), src_w);
    if (nwide)
        fn(e, "            if (i * %lld + j < %lld)\n"
              "                for (int c = 0; c < %lld; c++)\n"
              "                    for (int p = 0; p < %lld; p++)\n"
              "                        memcpy(row + (c * %lld + p) * %lld, %s + %s + %s, %lld * sizeof(float));\n"
              "            else\n",
           (long long)c->ow, (long long)nwide, (long long)c->c, (long long)c->kh, (long long)c->kh,
           (long long)c->kw, src, line, c->sw == 1 ? "j" : arena_printf(e->g->arena, "j * %lld", (long long)c->sw),
           (long long)wide);
    fn(e, "%s            for (int c = 0; c < %lld; c++)\n"
          "%s                for (int p = 0; p < %lld; p++)\n"
          "%s                    for (int q = 0; q < %lld; q++)\n"
          "%s                        row[(c * %lld + p) * %lld + q] = %s[%s + %s];\n"
          "        }\n}\n",
       in, (long long)c->c, in, (long long)c->kh, in, (long long)c->kw, in, (long long)c->kh,
       (long long)c->kw, src, line, index_expr(e, "j", (int)c->sw, 0, "q"));
}

void emit_conv2d_dw(Emitter *e, const Node *n)
{
    Conv c = conv_of(e, n);
    /* Windows of 64 elements or more: dy times the windows as rows
     * (im2row), a plain product; smaller ones (a first layer's 3x3 or 5x5
     * on one channel): dy times im2col's columns transposed, which OpenBLAS
     * runs faster at that width (both measured on LeNet-5 and the CNN). */
    const bool by_rows = c.rows >= 64;
    if (by_rows)
        emit_im2row(e, &c);
    const char *per_sample =
        by_rows ? arena_printf(e->g->arena,
                               " *   per sample: dW[%lld, %lld] += dy[%lld, %lld] rows[%lld, %lld], rows the\n"
                               " *   windows of x, one per output position (im2row)\n",
                               (long long)c.f, (long long)c.rows, (long long)c.f, (long long)c.cols,
                               (long long)c.cols, (long long)c.rows)
                : arena_printf(e->g->arena,
                               " *   per sample: dW[%lld, %lld] += dy[%lld, %lld] col[%lld, %lld]^T, col the im2col of x\n",
                               (long long)c.f, (long long)c.rows, (long long)c.f, (long long)c.cols,
                               (long long)c.rows, (long long)c.cols);
    header(e, n, "gradient of the conv2d weight",
           arena_printf(e->g->arena,
                        " *   dW[f,c,p,q] += sum_{s,i,j} dy[s,f,i,j] x[s, c, i*%lld-%lld+p, j*%lld-%lld+q]\n%s",
                        (long long)c.sh, (long long)c.ph, (long long)c.sw, (long long)c.pw, per_sample));
    fn(e, "static void %s(const float *restrict dy, const float *restrict x,\n"
          "    float *restrict dw, float *restrict col, int s0, int s1)\n{\n"
          "    for (int s = s0; s < s1; s++) {\n", fn_name(e, n));
    if (by_rows)
        fn(e, "        im2row_%s(x + (size_t)s * %lld, col);\n"
              "        lm_sgemm(0, 0, %lld, %lld, %lld, 1.0f, dy + (size_t)s * %lld, %lld, col, %lld, 1.0f, dw, %lld);\n",
           c.name, (long long)(c.c * c.h * c.w), (long long)c.f, (long long)c.rows,
           (long long)c.cols, (long long)(c.f * c.cols), (long long)c.cols, (long long)c.rows,
           (long long)c.rows);
    else
        fn(e, "        im2col_%s(x + (size_t)s * %lld, col, %lld);\n"
              "        lm_sgemm(0, 1, %lld, %lld, %lld, 1.0f, dy + (size_t)s * %lld, %lld, col, %lld, 1.0f, dw, %lld);\n",
           c.name, (long long)(c.c * c.h * c.w), (long long)c.cols, (long long)c.f, (long long)c.rows,
           (long long)c.cols, (long long)(c.f * c.cols), (long long)c.cols, (long long)c.cols,
           (long long)c.rows);
    fn(e, "    }\n}\n");
    call(e, n, scratch_arg(e, n));
}

void emit_conv2d_dx(Emitter *e, const Node *n)
{
    Conv c = conv_of(e, n);
    const bool fold = plan_fold_size(n) > 0;
    if (fold)
        emit_col2im_fold(e, &c);
    else
        emit_col2im(e, &c);
    header(e, n, "gradient of the conv2d input",
           arena_printf(e->g->arena,
                        " *   dx[s,c,h,w] = sum of W[f,c,p,q] dy[s,f,i,j] over h = i*%lld-%lld+p, w = j*%lld-%lld+q\n"
                        " *   per sample: col[%lld, %lld] = W[%lld, %lld]^T dy[%lld, %lld], folded back (col2im)\n",
                        (long long)c.sh, (long long)c.ph, (long long)c.sw, (long long)c.pw,
                        (long long)c.rows, (long long)c.cols, (long long)c.f, (long long)c.rows,
                        (long long)c.f, (long long)c.cols));
    fn(e, "static void %s(const float *restrict dy, const float *restrict w,\n"
          "    float *restrict dx, float *restrict col, int s0, int s1)\n{\n", fn_name(e, n));
    fn(e, "    for (int s = s0; s < s1; s++) {\n"
          "        lm_sgemm(1, 0, %lld, %lld, %lld, 1.0f, w, %lld, dy + (size_t)s * %lld, %lld, 0.0f, col, %lld);\n"
          "        col2im_%s(col, %sdx + (size_t)s * %lld, %lld);\n"
          "    }\n}\n",
       (long long)c.rows, (long long)c.cols, (long long)c.f, (long long)c.rows,
       (long long)(c.f * c.cols), (long long)c.cols, (long long)c.cols, c.name,
       fold ? arena_printf(e->g->arena, "col + (size_t)%lld * %lld, ", (long long)c.rows, (long long)c.cols) : "",
       (long long)(c.c * c.h * c.w), (long long)c.cols);
    call(e, n, scratch_arg(e, n));
}

/* ---- pooling ---------------------------------------------------------------- */

typedef struct Pool {
    int64_t c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
    bool tiled; /* windows side by side (windows_tiled) */
} Pool;

static Pool pool_of(const Emitter *e, const Node *n)
{
    const Node *fwd = n->id < e->g->nforward ? n : e->g->nodes.items[n->attr.of_node];
    const Shape *x = &fwd->in[0]->shape, *y = &fwd->out->shape;
    Pool p = {x->dim[1], x->dim[2], x->dim[3], y->dim[2], y->dim[3], fwd->attr.kernel[0],
              fwd->attr.kernel[1], fwd->attr.stride[0], fwd->attr.stride[1], fwd->attr.pad[0],
              fwd->attr.pad[1], windows_tiled(&fwd->attr)};
    return p;
}

/* The loops over one output position's window, with h, w in the input. */
static void window_loops(Emitter *e, const Pool *p, const char *indent)
{
    fn(e, "%sfor (int p = 0; p < %lld; p++)\n"
          "%s    for (int q = 0; q < %lld; q++) {\n"
          "%s        const int h = %s, w = %s;\n",
       indent, (long long)p->kh, indent, (long long)p->kw, indent,
       index_expr(e, "i", (int)p->sh, (int)p->ph, "p"),
       index_expr(e, "j", (int)p->sw, (int)p->pw, "q"));
    /* Without padding every window lies inside x (the output size is
     * (H - K) / S + 1): no test is needed. */
    if (p->ph > 0 || p->pw > 0)
        fn(e, "%s        if (h < 0 || h >= %lld || w < 0 || w >= %lld)\n"
              "%s            continue;\n",
           indent, (long long)p->h, (long long)p->w, indent);
}

/* The loops over samples and channels, opening the channel's block: in
 * and out, where its planes of x and y start. */
static void pool_channels(Emitter *e, const Pool *p)
{
    fn(e, "    for (int s = s0; s < s1; s++)\n"
          "        for (int c = 0; c < %lld; c++) {\n"
          "            const size_t in = ((size_t)s * %lld + c) * %lld;\n"
          "            const size_t out = ((size_t)s * %lld + c) * %lld;\n",
       (long long)p->c, (long long)p->c, (long long)(p->h * p->w), (long long)p->c,
       (long long)(p->oh * p->ow));
}

/* The loops over samples, channels and output positions; `before_rows`,
 * if not NULL, goes inside the channel's loop before its rows. */
static void pool_outer(Emitter *e, const Pool *p, const char *before_rows)
{
    pool_channels(e, p);
    fn(e, "%s"
          "            for (int i = 0; i < %lld; i++)\n"
          "                for (int j = 0; j < %lld; j++) {\n",
       before_rows ? before_rows : "", (long long)p->oh, (long long)p->ow);
}

/* A pooling's backward whose windows overlap or are padded adds to dx:
 * first, the part's samples of dx are cleared. */
static void clear_dx(Emitter *e, const Pool *p)
{
    fn(e, "    memset(dx + (size_t)s0 * %lld, 0, (size_t)(s1 - s0) * %lld * sizeof(float));\n",
       (long long)(p->c * p->h * p->w), (long long)(p->c * p->h * p->w));
}

/* In a tiled pooling's backward, inside the channel's loop: clears the
 * elements of dx that no window covers, the last columns and rows when
 * the size is not a multiple of the window (the windows write the rest). */
static void clear_uncovered(Emitter *e, const Pool *p)
{
    if (p->ow * p->kw < p->w)
        fn(e, "            for (int h = 0; h < %lld; h++)\n"
              "                for (int w = %lld; w < %lld; w++)\n"
              "                    dx[in + h * %lld + w] = 0.0f;\n",
           (long long)(p->oh * p->kh), (long long)(p->ow * p->kw), (long long)p->w, (long long)p->w);
    if (p->oh * p->kh < p->h)
        fn(e, "            memset(dx + in + %lld, 0, %lld * sizeof(float));\n",
           (long long)(p->oh * p->kh * p->w), (long long)((p->h - p->oh * p->kh) * p->w));
}

/* The bias_db node that pooling backward node dx (maxpool_dx or
 * avgpool_act_dx) computes in its own loop, or NULL. The gradient of a
 * bias is the sum of dx over all but the channel axis, summed while the
 * values are at hand instead of in a pass of their own over dx. Where a
 * max pooling's windows are side by side, that is the sum of the
 * windows' g (each passes its g to one element, 0 to the others), a
 * quarter of the elements for 2x2 windows. */
static const Node *fused_bias_db(const Emitter *e, const Node *dx)
{
    if (dx->op != OP_MAXPOOL_DX && dx->op != OP_AVGPOOL_ACT_DX)
        return NULL;
    Pool p = pool_of(e, dx);
    if (!p.tiled)
        return NULL;
    for (int i = dx->id + 1; i < e->g->nodes.len; i++) {
        const Node *n = e->g->nodes.items[i];
        if (n->op == OP_BIAS_DB && n->in[0] == dx->out)
            return n;
    }
    return NULL;
}

/* The comment's line for a bias gradient db that a pooling's backward sums
 * in its loop (fused_bias_db), over what (e.g. "s, i, j of g[s,c,i,j]"). */
static const char *fused_db_text(const Emitter *e, const Node *db, const char *what)
{
    return !db ? ""
               : arena_printf(e->g->arena,
                              " *   and %s, the sum of dx over all but the channel axis:\n"
                              " *   db[c] += sum over %s\n",
                              db->out->name, what);
}

/* The call's arguments after dx: the fused bias gradient db's (part's)
 * buffer, if any, then the samples. */
static const char *fused_db_args(const Emitter *e, const Node *db)
{
    return db ? arena_printf(e->g->arena, "%s + gp, s0, s1", ref(e, db->out)) : "s0, s1";
}

/* At the end of a channel's loop: adds its column sums gs[0..len) to db. */
static void emit_db_sum(Emitter *e, int64_t len)
{
    fn(e, "            float sum = 0.0f;\n"
          "            for (int j = 0; j < %lld; j++)\n"
          "                sum += gs[j];\n"
          "            db[c] += sum;\n", (long long)len);
}

static const char *pool_what(const Emitter *e, const char *op, const Pool *p)
{
    return arena_printf(e->g->arena, "%s %lldx%lld, stride %lld,%lld, pad %lld,%lld", op,
                        (long long)p->kh, (long long)p->kw, (long long)p->sh, (long long)p->sw,
                        (long long)p->ph, (long long)p->pw);
}

void emit_maxpool(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    const bool relu = n->attr.relu, bias = n->nin > 1;
    /* b: a convolution's bias, moved in by rewrite.c */
    const char *formula =
        relu && bias ? " *   y[s,c,i,j] = relu(b[c] + max over the window of x) (padding never wins),\n"
                       " *   = max over the window of relu(x + b[c]): bias and relu on the maximum alone\n"
        : relu ? " *   y[s,c,i,j] = relu(max over the window of x) (padding never wins),\n"
                 " *   = max over the window of relu(x): the relu on the maximum alone\n"
        : bias ? " *   y[s,c,i,j] = b[c] + max over the window of x (padding never wins),\n"
                 " *   = max over the window of (x + b[c]): the bias on the maximum alone\n"
               : " *   y[s,c,i,j] = max over the window of x (padding never wins)\n";
    header(e, n, pool_what(e, relu ? "maxpool, then relu" : "maxpool", &p), formula);
    fn(e, "static void %s(const float *restrict x, %sfloat *restrict y, int s0, int s1)\n{\n", fn_name(e, n),
       bias ? "const float *restrict b, " : "");
    pool_outer(e, &p, NULL);
    fn(e, "                    float best = -INFINITY;\n");
    window_loops(e, &p, "                    ");
    fn(e, "                            if (x[in + h * %lld + w] > best)\n"
          "                                best = x[in + h * %lld + w];\n"
          "                        }\n",
       (long long)p.w, (long long)p.w);
    if (bias)
        fn(e, "                    best += b[c];\n");
    fn(e, "                    y[out + i * %lld + j] = %s;\n"
          "                }\n"
          "        }\n}\n",
       (long long)p.ow, relu ? "best > 0.0f ? best : 0.0f" : "best");
    call(e, n, "s0, s1");
}

/* The first maximum of one window, without a branch (the comparisons of
 * pre-activation data are a coin toss for the branch predictor; gcc made
 * a branch of `arg = v > best ? t : arg`, not of the masks): t is the
 * window's element p*KW+q, and arg the first t holding its maximum. */
static void window_argmax(Emitter *e, const Pool *p, const char *indent, const char *plus)
{
    /* With padding, arg stays -1 when no element inside x beats -inf; plus
     * is " + b[c]" when a convolution's bias was moved in (rewrite.c). */
    fn(e, "%sfloat best = -INFINITY;\n"
          "%sint arg = %d;\n", indent, indent, p->ph > 0 || p->pw > 0 ? -1 : 0);
    window_loops(e, p, indent);
    fn(e, "%s        const float v = x[in + h * %lld + w]%s;\n"
          "%s        const int above = -(v > best); /* all ones, or 0: an equal one later is not the first */\n"
          "%s        arg = (arg & ~above) | ((p * %lld + q) & above);\n"
          "%s        best = v > best ? v : best;\n"
          "%s    }\n",
       indent, (long long)p->w, plus, indent, indent, (long long)p->kw, indent, indent);
}

void emit_maxpool_dx(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    /* Windows side by side (stride = kernel, no padding) cover each input
     * element at most once: every window writes its elements, dy at the
     * first maximum and 0 elsewhere, and only the elements no window
     * covers (the last rows and columns when the size is not a multiple
     * of the window) are cleared; no clearing pass, no accumulation. */
    const bool tiled = p.tiled;
    /* With a relu fused in (rewrite.c), a window passes dy on only where
     * its maximum is positive (relu' of the maximum). dy is read either
     * way: a load under the condition would be a branch, and the sign of
     * a maximum is a coin toss for the predictor. With a convolution's
     * bias moved in (the third input), the maxima are of x + b, as in
     * the layers as written: the same first maximum even where adding b
     * rounds two elements of a window to one value. */
    const bool relu = n->attr.relu, bias = n->nin > 2;
    const char *g_text = relu ? "best > 0.0f ? d : 0.0f" : "d", *plus = bias ? " + b[c]" : "";
    const Node *db = fused_bias_db(e, n);
    header(e, n, relu ? "gradient of maxpool, then relu" : "gradient of maxpool",
           arena_printf(e->g->arena, "%s%s%s%s",
                        tiled ? " *   dx[s,c,h,w] = g[s,c,i,j] if x[s,c,h,w] is the first maximum of window (i,j), else 0\n"
                                " *   (the windows do not overlap)\n"
                              : " *   dx[s,c,h,w] = sum of g[s,c,i,j] over the windows whose first maximum is x[s,c,h,w]\n",
                        relu ? " *   with g = dy where the window's maximum is > 0 (relu'), else 0\n"
                             : " *   with g = dy\n",
                        bias ? " *   and the maxima of x + b[c], b the convolution's bias (added in the pooling)\n" : "",
                        fused_db_text(e, db, "s, i, j of g[s,c,i,j]")));
    fn(e, "static void %s(const float *restrict dy, const float *restrict x,\n"
          "    %sfloat *restrict dx, %sint s0, int s1)\n{\n", fn_name(e, n),
       bias ? "const float *restrict b, " : "", db ? "float *restrict db, " : "");
    if (!tiled)
        clear_dx(e, &p);
    /* The channel's sums of g by column, gs[j] += g: a sum across j would
     * be a chain the compiler may not vectorise (float addition is not
     * associative), one per j is not. */
    pool_outer(e, &p, db ? arena_printf(e->g->arena, "            float gs[%lld] = {0.0f};\n", (long long)p.ow)
                         : NULL);
    if (tiled) {
        /* The maximum first, then each element's share: 1 for the first
         * element equal to it, 0 for the others; comparisons turned into
         * 0/1 factors, so the compiler has no branch to mispredict. (A
         * non-finite dy would also reach the other elements, as inf * 0 =
         * NaN; a select instead of the product measured slower, and such a
         * gradient has already ruined the step.) */
        fn(e, "                    float best = -INFINITY;\n");
        window_loops(e, &p, "                    ");
        fn(e, "                            const float v = x[in + h * %lld + w]%s;\n"
              "                            best = v > best ? v : best;\n"
              "                        }\n"
              "                    const float d = dy[out + i * %lld + j];\n"
              "                    const float g = %s;\n"
              "%s"
              "                    float left = 1.0f; /* until the first maximum */\n",
           (long long)p.w, plus, (long long)p.ow, g_text, db ? "                    gs[j] += g;\n" : "");
        window_loops(e, &p, "                    ");
        fn(e, "                            const float v = x[in + h * %lld + w]%s;\n"
              "                            const float hit = left * (float)(v == best);\n"
              "                            dx[in + h * %lld + w] = g * hit;\n"
              "                            left -= hit;\n"
              "                        }\n"
              "                }\n",
           (long long)p.w, plus, (long long)p.w);
        clear_uncovered(e, &p);
        if (db)
            emit_db_sum(e, p.ow);
        fn(e, "        }\n}\n");
    } else {
        window_argmax(e, &p, "                    ", plus);
        fn(e, "                    const float d = dy[out + i * %lld + j];\n"
              "                    const float g = %s;\n", (long long)p.ow, g_text);
        fn(e, "                    %sdx[in + (i * %lld - %lld + arg / %lld) * %lld + j * %lld - %lld + arg %% %lld] += g;\n"
              "                }\n"
              "        }\n}\n",
           p.ph > 0 || p.pw > 0 ? "if (arg >= 0)\n                        " : "",
           (long long)p.sh, (long long)p.ph, (long long)p.kw, (long long)p.w, (long long)p.sw,
           (long long)p.pw, (long long)p.kw);
    }
    call(e, n, fused_db_args(e, db));
}

/* ---- a convolution through its max pooling (grad_conv_maxpool) ------------ */

/* The convolution's geometry (its forward node is the of_node), and the
 * pooling's windows over its output y (the node's attributes, no
 * padding): their size and stride, and how many (POH x POW, dy's). */
typedef struct ConvPool {
    Conv c;
    int64_t poh, pow, pkh, pkw, psh, psw;
    int64_t area;   /* elements of a window; the route's "none" */
    int64_t hp, wp; /* x with its border of zeros */
    int64_t win;    /* floats of one window of x, or of one filter */
} ConvPool;

static ConvPool conv_pool_of(const Emitter *e, const Node *n)
{
    const Shape *dy = &n->in[0]->shape;
    ConvPool cp = {conv_of(e, e->g->nodes.items[n->attr.of_node]), dy->dim[2], dy->dim[3],
                   n->attr.kernel[0], n->attr.kernel[1], n->attr.stride[0], n->attr.stride[1],
                   0, 0, 0, 0};
    cp.area = cp.pkh * cp.pkw;
    cp.hp = cp.c.h + 2 * cp.c.ph;
    cp.wp = cp.c.w + 2 * cp.c.pw;
    cp.win = cp.c.kh * cp.c.kw * cp.c.c;
    return cp;
}

/* The index of element (c, h, w) of x in its channels-last copy with the
 * border of zeros, [HP][WP][C]. */
static const char *channels_last(const Emitter *e, const ConvPool *cp, const char *h, const char *w)
{
    const char *hb = cp->c.ph ? arena_printf(e->g->arena, "(%s + %lld)", h, (long long)cp->c.ph) : h;
    const char *wb = cp->c.pw ? arena_printf(e->g->arena, "%s + %lld", w, (long long)cp->c.pw) : w;
    return arena_printf(e->g->arena, "(%s * %lld + %s) * %lld + c", hb, (long long)cp->wp, wb,
                        (long long)cp->c.c);
}

/* The loops over the filters' elements (f, c, p, q), with `stmt` inside:
 * pt is the index in PyTorch's layout [F][C][KH][KW], cl in the
 * channels-last one [F][KH][KW][C]. */
static void filter_loops(Emitter *e, const Conv *c, const char *stmt)
{
    fn(e, "    for (int f = 0; f < %lld; f++)\n"
          "        for (int c = 0; c < %lld; c++)\n"
          "            for (int p = 0; p < %lld; p++)\n"
          "                for (int q = 0; q < %lld; q++) {\n"
          "                    const int pt = ((f * %lld + c) * %lld + p) * %lld + q;\n"
          "                    const int cl = ((f * %lld + p) * %lld + q) * %lld + c;\n"
          "                    %s\n"
          "                }\n",
       (long long)c->f, (long long)c->c, (long long)c->kh, (long long)c->kw, (long long)c->c,
       (long long)c->kh, (long long)c->kw, (long long)c->kh, (long long)c->kw, (long long)c->c, stmt);
}

/* The element (oi,oj) of y that window (i,j)'s element k is. */
static void emit_route_position(Emitter *e, const ConvPool *cp, const char *indent, const char *k)
{
    fn(e, "%sconst int oi = %s, oj = %s;\n", indent,
       index_expr(e, "i", (int)cp->psh, 0, arena_printf(e->g->arena, "%s / %lld", k, (long long)cp->pkw)),
       index_expr(e, "j", (int)cp->psw, 0, arena_printf(e->g->arena, "%s %% %lld", k, (long long)cp->pkw)));
}

/* Where the window at y's element (oi,oj) starts in a channels-last copy
 * of x (or dx) with its border: ((oi*SH) * WP + oj*SW) * C. */
static const char *conv_pool_at(const Emitter *e, const ConvPool *cp)
{
    return arena_printf(e->g->arena, "(%s * %lld + %s) * %lld", index_expr(e, "oi", (int)cp->c.sh, 0, NULL),
                        (long long)cp->wp, index_expr(e, "oj", (int)cp->c.sw, 0, NULL),
                        (long long)cp->c.c);
}

/* The comment's lines on how much the route leaves to compute. */
static const char *conv_pool_text(const Emitter *e, const ConvPool *cp, const char *of,
                                  const char *operand)
{
    return arena_printf(e->g->arena,
                        " *   (oi,oj) the element of the convolution's output that r[s,f,i,j] names.\n"
                        " *   Each window passes its gradient to one of its %lld elements (or none): this\n"
                        " *   sums at most %lld windows per filter where conv2d_%s would multiply by\n"
                        " *   all %lld elements of a dy that is mostly 0. A gradient of 0 is skipped (an\n"
                        " *   inf in %s stays out of the sums, where 0 * inf would be NaN).\n",
                        (long long)cp->area, (long long)(cp->poh * cp->pow), of,
                        (long long)(cp->c.oh * cp->c.ow), operand);
}

void emit_maxpool_route(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    const long long area = (long long)(p.kh * p.kw);
    header(e, n, "where the gradient of maxpool goes",
           arena_printf(e->g->arena,
                        " *   r[s,c,i,j] = p*%lld+q, the first maximum of x[s,c, i*%lld+p, j*%lld+q] + b[c]%s\n"
                        " *   (a float holding a small whole number: the work area holds floats)\n",
                        (long long)p.kw, (long long)p.sh, (long long)p.sw,
                        n->attr.relu ? arena_printf(e->g->arena,
                                                    ",\n *   or %lld (none) where that maximum is <= 0: the relu passes no gradient",
                                                    area)
                                     : ""));
    fn(e, "static void %s(const float *restrict x, const float *restrict b, float *restrict r,\n"
          "    int s0, int s1)\n{\n", fn_name(e, n));
    pool_outer(e, &p, NULL);
    window_argmax(e, &p, "                    ", " + b[c]");
    if (n->attr.relu)
        fn(e, "                    const int none = -(best <= 0.0f); /* all ones where the relu passes nothing */\n"
              "                    r[out + i * %lld + j] = (float)((arg & ~none) | (%lld & none));\n",
           (long long)p.ow, area);
    else
        fn(e, "                    r[out + i * %lld + j] = (float)arg;\n", (long long)p.ow);
    fn(e, "                }\n"
          "        }\n}\n");
    call(e, n, "s0, s1");
}

void emit_maxpool_db(Emitter *e, const Node *n)
{
    const ConvPool cp = conv_pool_of(e, n);
    const int64_t ch = cp.c.f, inner = cp.poh * cp.pow;
    header(e, n, "gradient of the bias",
           arena_printf(e->g->arena,
                        " *   db[f] += sum over s, i, j of dy[s,f,i,j] where r[s,f,i,j] < %lld (not none)\n"
                        " *   (the bias is added in the max pooling: a window passes dy on, or nothing)\n",
                        (long long)cp.area));
    fn(e, "static void %s(const float *restrict dy, const float *restrict r, float *restrict db,\n"
          "    int s0, int s1)\n{\n"
          "    for (int s = s0; s < s1; s++)\n"
          "        for (int f = 0; f < %lld; f++) {\n"
          "            const size_t at = ((size_t)s * %lld + f) * %lld;\n"
          "            float sum = 0.0f;\n"
          "            for (int k = 0; k < %lld; k++)\n"
          "                sum += r[at + k] < %lld.0f ? dy[at + k] : 0.0f;\n"
          "            db[f] += sum;\n"
          "        }\n}\n",
       fn_name(e, n), (long long)ch, (long long)ch, (long long)inner, (long long)inner,
       (long long)cp.area);
    call(e, n, "s0, s1");
}

void emit_maxpool_conv2d_dw(Emitter *e, const Node *n)
{
    const ConvPool cp = conv_pool_of(e, n);
    const Conv *c = &cp.c;
    const int64_t windows = cp.poh * cp.pow, cap = windows < 1024 ? windows : 1024;
    const int64_t xs = cp.hp * cp.wp * c->c, row = c->kw * c->c;
    header(e, n, "gradient of the conv2d weight, through the max pooling",
           arena_printf(e->g->arena,
                        " *   dW[f,c,p,q] += sum over s and the windows (i,j) that pass dy on of\n"
                        " *                  dy[s,f,i,j] x[s, c, oi*%lld-%lld+p, oj*%lld-%lld+q],\n%s"
                        " *   Per sample, x is copied channels last, xt[h][w][c]%s, so that a\n"
                        " *   window row is %lld contiguous floats; the sums go to dwt[f][p][q][c] (per\n"
                        " *   filter, a weighted sum of windows: lm_sgather_sum), added to dW at the end.\n",
                        (long long)c->sh, (long long)c->ph, (long long)c->sw, (long long)c->pw,
                        conv_pool_text(e, &cp, "dw", "x"),
                        c->ph || c->pw ? " with a border of zeros (the padding)" : "", (long long)row));
    fn(e, "static void %s(const float *restrict dy, const float *restrict r,\n"
          "    const float *restrict x, float *restrict dw, float *restrict work, int s0, int s1)\n{\n"
          "    float *restrict xt = work;         /* [%lld][%lld][%lld] */\n"
          "    float *restrict dwt = work + %lld; /* [%lld][%lld][%lld][%lld] */\n"
          "    int at[%lld]; /* where the window of x that each gradient meets starts in xt */\n"
          "    float g[%lld];\n"
          "    memset(work, 0, (size_t)%lld * sizeof(float)); /* xt's border, dwt */\n"
          "    for (int s = s0; s < s1; s++) {\n"
          "        const float *xs = x + (size_t)s * %lld;\n"
          "        for (int c = 0; c < %lld; c++)\n"
          "            for (int h = 0; h < %lld; h++)\n"
          "                for (int w = 0; w < %lld; w++)\n"
          "                    xt[%s] = xs[(c * %lld + h) * %lld + w];\n"
          "        for (int f = 0; f < %lld; f++) {\n"
          "            const size_t at_f = ((size_t)s * %lld + f) * %lld;\n"
          "            int n = 0;\n"
          "            for (int i = 0; i < %lld; i++)\n"
          "                for (int j = 0; j < %lld; j++) {\n"
          "                    const int k = (int)r[at_f + i * %lld + j];\n",
       fn_name(e, n), (long long)cp.hp, (long long)cp.wp, (long long)c->c, (long long)xs,
       (long long)c->f, (long long)c->kh, (long long)c->kw, (long long)c->c, (long long)cap,
       (long long)cap, (long long)plan_scratch_size(e->g, n), (long long)(c->c * c->h * c->w),
       (long long)c->c, (long long)c->h, (long long)c->w, channels_last(e, &cp, "h", "w"),
       (long long)c->h, (long long)c->w, (long long)c->f, (long long)c->f, (long long)windows,
       (long long)cp.poh, (long long)cp.pow, (long long)cp.pow);
    emit_route_position(e, &cp, "                    ", "k");
    const char *sum = arena_printf(e->g->arena, "lm_sgather_sum(%lld, %lld, n, g, at, xt, %lld, dwt + (size_t)f * %lld, %lld);",
                                   (long long)c->kh, (long long)row, (long long)(cp.wp * c->c),
                                   (long long)cp.win, (long long)row);
    fn(e, "                    at[n] = %s;\n"
          "                    g[n] = dy[at_f + i * %lld + j];\n"
          "                    n += k < %lld && g[n] != 0.0f; /* else it adds nothing */\n",
       conv_pool_at(e, &cp), (long long)cp.pow, (long long)cp.area);
    if (cap < windows)
        fn(e, "                    if (n == %lld) {\n"
              "                        %s\n"
              "                        n = 0;\n"
              "                    }\n", (long long)cap, sum);
    fn(e, "                }\n"
          "            %s\n"
          "        }\n"
          "    }\n", sum);
    filter_loops(e, c, "dw[pt] += dwt[cl];");
    fn(e, "}\n");
    call(e, n, scratch_arg(e, n));
}

void emit_maxpool_conv2d_dx(Emitter *e, const Node *n)
{
    const ConvPool cp = conv_pool_of(e, n);
    const Conv *c = &cp.c;
    const int64_t xs = cp.hp * cp.wp * c->c, row = c->kw * c->c;
    header(e, n, "gradient of the conv2d input, through the max pooling",
           arena_printf(e->g->arena,
                        " *   dx[s,c,h,w] = sum of dy[s,f,i,j] W[f,c,p,q] over the windows (i,j) that pass\n"
                        " *                 dy on and the filters f, with h = oi*%lld-%lld+p, w = oj*%lld-%lld+q,\n%s"
                        " *   Per window, the filters are grouped by the element their gradient goes to:\n"
                        " *   that element's window of dx gets the sum of their dy W[f] (lm_sgather_sum),\n"
                        " *   on dxt[h][w][c], dx channels last%s, from wt[f][p][q][c], W channels last.\n",
                        (long long)c->sh, (long long)c->ph, (long long)c->sw, (long long)c->pw,
                        conv_pool_text(e, &cp, "dx", "W"),
                        c->ph || c->pw ? " with a border (the padding's share, dropped)" : ""));
    fn(e, "static void %s(const float *restrict dy, const float *restrict r,\n"
          "    const float *restrict w, float *restrict dx, float *restrict work, int s0, int s1)\n{\n"
          "    float *restrict wt = work;         /* [%lld][%lld][%lld][%lld] */\n"
          "    float *restrict dxt = work + %lld; /* [%lld][%lld][%lld] */\n"
          "    /* per element of a window (and none, the last), the filters whose gradient goes there */\n"
          "    int at[%lld][%lld], count[%lld];\n"
          "    float g[%lld][%lld];\n",
       fn_name(e, n), (long long)c->f, (long long)c->kh, (long long)c->kw, (long long)c->c,
       (long long)(c->f * cp.win), (long long)cp.hp, (long long)cp.wp, (long long)c->c,
       (long long)(cp.area + 1), (long long)c->f, (long long)(cp.area + 1), (long long)(cp.area + 1),
       (long long)c->f);
    filter_loops(e, c, "wt[cl] = w[pt];");
    fn(e, "    for (int s = s0; s < s1; s++) {\n"
          "        memset(dxt, 0, (size_t)%lld * sizeof(float));\n"
          "        for (int i = 0; i < %lld; i++)\n"
          "            for (int j = 0; j < %lld; j++) {\n"
          "                memset(count, 0, sizeof count);\n"
          "                for (int f = 0; f < %lld; f++) {\n"
          "                    const size_t ij = ((size_t)s * %lld + f) * %lld + i * %lld + j;\n"
          "                    const int k = (int)r[ij];\n"
          "                    at[k][count[k]] = f * %lld;\n"
          "                    g[k][count[k]] = dy[ij];\n"
          "                    count[k] += dy[ij] != 0.0f; /* else it adds nothing */\n"
          "                }\n"
          "                for (int k = 0; k < %lld; k++)\n"
          "                    if (count[k] > 0) {\n",
       (long long)xs, (long long)cp.poh, (long long)cp.pow, (long long)c->f, (long long)c->f,
       (long long)(cp.poh * cp.pow), (long long)cp.pow, (long long)cp.win, (long long)cp.area);
    emit_route_position(e, &cp, "                        ", "k");
    fn(e, "                        lm_sgather_sum(%lld, %lld, count[k], g[k], at[k], wt, %lld, dxt + %s, %lld);\n"
          "                    }\n"
          "            }\n"
          "        float *dxs = dx + (size_t)s * %lld;\n"
          "        for (int c = 0; c < %lld; c++)\n"
          "            for (int h = 0; h < %lld; h++)\n"
          "                for (int v = 0; v < %lld; v++)\n"
          "                    dxs[(c * %lld + h) * %lld + v] = dxt[%s];\n"
          "    }\n}\n",
       (long long)c->kh, (long long)row, (long long)row, conv_pool_at(e, &cp),
       (long long)(cp.wp * c->c), (long long)(c->c * c->h * c->w), (long long)c->c, (long long)c->h,
       (long long)c->w, (long long)c->h, (long long)c->w, channels_last(e, &cp, "h", "v"));
    call(e, n, scratch_arg(e, n));
}

void emit_avgpool(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    header(e, n, pool_what(e, "avgpool", &p),
           arena_printf(e->g->arena,
                        " *   y[s,c,i,j] = (1/%lld) sum over the window of x, padding counting as 0\n"
                        " *   (PyTorch's AvgPool2d default, count_include_pad=True)\n",
                        (long long)(p.kh * p.kw)));
    fn(e, "static void %s(const float *restrict x, float *restrict y, int s0, int s1)\n{\n", fn_name(e, n));
    pool_outer(e, &p, NULL);
    fn(e, "                    float sum = 0.0f;\n");
    window_loops(e, &p, "                    ");
    fn(e, "                            sum += x[in + h * %lld + w];\n"
          "                        }\n"
          "                    y[out + i * %lld + j] = sum * (1.0f / %lld);\n"
          "                }\n"
          "        }\n}\n",
       (long long)p.w, (long long)p.ow, (long long)(p.kh * p.kw));
    call(e, n, "s0, s1");
}

void emit_avgpool_dx(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    /* Windows side by side (stride = kernel, no padding) cover each
     * element at most once: each window writes its share to its elements,
     * and only the elements no window covers are cleared; no clearing
     * pass over dx, no accumulation. */
    const bool tiled = p.tiled;
    header(e, n, "gradient of avgpool",
           tiled ? arena_printf(e->g->arena,
                                " *   dx[s,c,h,w] = (1/%lld) dy[s,c,i,j], (i,j) the window that contains (h,w)\n"
                                " *   (the windows do not overlap; 0 where none does)\n",
                                (long long)(p.kh * p.kw))
                 : arena_printf(e->g->arena,
                                " *   dx[s,c,h,w] = (1/%lld) sum of dy over the windows that contain (h,w)\n",
                                (long long)(p.kh * p.kw)));
    fn(e, "static void %s(const float *restrict dy, float *restrict dx, int s0, int s1)\n{\n", fn_name(e, n));
    if (!tiled)
        clear_dx(e, &p);
    pool_outer(e, &p, NULL);
    fn(e, "                    const float g = dy[out + i * %lld + j] * (1.0f / %lld);\n",
       (long long)p.ow, (long long)(p.kh * p.kw));
    window_loops(e, &p, "                    ");
    fn(e, "                            dx[in + h * %lld + w] %s= g;\n"
          "                        }\n"
          "                }\n",
       (long long)p.w, tiled ? "" : "+");
    if (tiled)
        clear_uncovered(e, &p);
    fn(e, "        }\n}\n");
    call(e, n, "s0, s1");
}

/* ---- views and dropout ------------------------------------------------------ */

void emit_view(Emitter *e, const Node *n)
{
    buf_printf(e->call, "    /* %s: %s is %s seen as %s: the same memory, nothing to do */\n",
               ((const Layer *)e->g->layers.items[n->layer])->name, n->out->name,
               n->in[0]->name, dims(e, n->out));
}

/* The mask is drawn from a counter-based generator: element k of sample s
 * at optimizer step t keeps its value when uniform(seed, stream, counter) >=
 * p, so backward draws the same mask again without storing it. */
/* Dropout draws from stream 2^31 + its node's number in the IR as written
 * (Node.seq: rewrites that remove nodes do not change it): far from the
 * streams 0, 1, ... that initialise the parameters (one per tensor). */
#define DROPOUT_STREAM (1LL << 31)

static const char *dropout_mask(const Emitter *e, const Node *fwd)
{
    return arena_printf(e->g->arena,
                        " *   keep = lm_rand_uniform(seed, %lld, (step * %lld + s) * %lld + k) >= %g\n",
                        DROPOUT_STREAM + fwd->seq, (long long)e->g->train.batch, (long long)per_sample(fwd->out),
                        fwd->attr.p);
}

void emit_dropout(Emitter *e, const Node *n)
{
    header(e, n, arena_printf(e->g->arena, "dropout, p = %g", n->attr.p),
           arena_printf(e->g->arena, " *   training: y = keep ? x / (1 - p) : 0, with\n%s"
                                     " *   otherwise: y = x\n", dropout_mask(e, n)));
    int64_t k = per_sample(n->out);
    fn(e, "static void %s(const float *restrict x, float *restrict y, int s0, int s1,\n"
          "    int training, uint64_t seed, int64_t step)\n{\n", fn_name(e, n));
    fn(e, "    if (!training) {\n"
          "        memcpy(y + (size_t)s0 * %lld, x + (size_t)s0 * %lld, (size_t)(s1 - s0) * %lld * sizeof(float));\n"
          "        return;\n"
          "    }\n", (long long)k, (long long)k, (long long)k);
    fn(e, "    for (int s = s0; s < s1; s++)\n"
          "        for (int k = 0; k < %lld; k++) {\n"
          "            uint64_t counter = ((uint64_t)step * %lld + (uint64_t)s) * %lld + (uint64_t)k;\n"
          "            size_t i = (size_t)s * %lld + k;\n"
          "            y[i] = lm_rand_uniform(seed, %lldu, counter) >= %s ? x[i] * %s : 0.0f;\n"
          "        }\n}\n",
       (long long)k, (long long)e->g->train.batch, (long long)k, (long long)k, DROPOUT_STREAM + n->seq,
       flit(e, n->attr.p), flit(e, 1.0 / (1.0 - n->attr.p)));
    call(e, n, "s0, s1, training, m->seed, m->step");
}

void emit_dropout_dx(Emitter *e, const Node *n)
{
    const Node *fwd = e->g->nodes.items[n->attr.of_node];
    header(e, n, "gradient of dropout",
           arena_printf(e->g->arena, " *   dx = keep ? dy / (1 - p) : 0, the forward pass's mask drawn again:\n%s",
                        dropout_mask(e, fwd)));
    int64_t k = per_sample(n->out);
    fn(e, "static void %s(const float *restrict dy, float *restrict dx, int s0, int s1,\n"
          "    uint64_t seed, int64_t step)\n{\n", fn_name(e, n));
    fn(e, "    for (int s = s0; s < s1; s++)\n"
          "        for (int k = 0; k < %lld; k++) {\n"
          "            uint64_t counter = ((uint64_t)step * %lld + (uint64_t)s) * %lld + (uint64_t)k;\n"
          "            size_t i = (size_t)s * %lld + k;\n"
          "            dx[i] = lm_rand_uniform(seed, %lldu, counter) >= %s ? dy[i] * %s : 0.0f;\n"
          "        }\n}\n",
       (long long)k, (long long)e->g->train.batch, (long long)k, (long long)k, DROPOUT_STREAM + fwd->seq,
       flit(e, fwd->attr.p), flit(e, 1.0 / (1.0 - fwd->attr.p)));
    call(e, n, "s0, s1, m->seed, m->step");
}

/* ---- activations ------------------------------------------------------------ */

typedef struct ActText {
    const char *formula;  /* y = f(x), for the comment */
    const char *expr;     /* C for y from x, elementwise */
    const char *dformula; /* dx = ..., for the comment */
    const char *dexpr;    /* C for dx from the C expressions dy and v (y or x, see grad.c) */
} ActText;

/* dy and v: the C expressions dexpr reads; dyname: what dformula calls dy. */
static ActText act_text(const Emitter *e, Op op, double alpha, const char *dy, const char *v,
                        const char *dyname)
{
    Arena *a = e->g->arena;
    switch (op) {
    case OP_STEP:
        return (ActText){"y = x > 0 ? 1 : 0  (Heaviside step)", "x[i] > 0.0f ? 1.0f : 0.0f",
                         "dx = 0  (the step is flat almost everywhere)",
                         arena_printf(a, "0.0f * %s * %s", dy, v)};
    case OP_SIGMOID:
        return (ActText){"y = 1 / (1 + exp(-x))", "sigmoid_approx(x[i])",
                         arena_printf(a, "dx = %s * y * (1 - y)", dyname),
                         arena_printf(a, "%s * %s * (1.0f - %s)", dy, v, v)};
    case OP_TANH:
        return (ActText){"y = tanh(x)", "tanh_approx(x[i])", arena_printf(a, "dx = %s * (1 - y^2)", dyname),
                         arena_printf(a, "%s * (1.0f - %s * %s)", dy, v, v)};
    case OP_RELU:
        return (ActText){"y = max(x, 0)", "x[i] > 0.0f ? x[i] : 0.0f",
                         arena_printf(a, "dx = x > 0 ? %s : 0", dyname),
                         arena_printf(a, "%s > 0.0f ? %s : 0.0f", v, dy)};
    case OP_LEAKY_RELU:
        return (ActText){arena_printf(a, "y = x > 0 ? x : %g x", alpha),
                         arena_printf(a, "x[i] > 0.0f ? x[i] : %s * x[i]", flit(e, alpha)),
                         arena_printf(a, "dx = x > 0 ? %s : %g %s", dyname, alpha, dyname),
                         arena_printf(a, "%s > 0.0f ? %s : %s * %s", v, dy, flit(e, alpha), dy)};
    case OP_ELU:
        return (ActText){arena_printf(a, "y = x > 0 ? x : %g (exp(x) - 1)", alpha),
                         arena_printf(a, "x[i] > 0.0f ? x[i] : %s * expm1f(x[i])", flit(e, alpha)),
                         arena_printf(a, "dx = x > 0 ? %s : %s %g exp(x)", dyname, dyname, alpha),
                         arena_printf(a, "%s > 0.0f ? %s : %s * %s * expf(%s)", v, dy, dy, flit(e, alpha), v)};
    default:
        die("internal: %s is not elementwise", op_name(op));
    }
}

void emit_act(Emitter *e, const Node *n)
{
    e->need_tanh |= n->op == OP_TANH;
    e->need_sigmoid |= n->op == OP_SIGMOID;
    ActText t = act_text(e, n->op, n->attr.alpha, "dy[i]", "v[i]", "dy");
    header(e, n, op_name(n->op), arena_printf(e->g->arena, " *   %s, elementwise\n", t.formula));
    fn(e, "static void %s(const float *restrict x, float *restrict y, int s0, int s1)\n{\n"
          "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++)\n"
          "        y[i] = %s;\n}\n",
       fn_name(e, n), (long long)per_sample(n->out), (long long)per_sample(n->out), t.expr);
    call(e, n, "s0, s1");
}

void emit_softmax(Emitter *e, const Node *n)
{
    int64_t k = per_sample(n->out);
    header(e, n, "softmax",
           " *   y[s,k] = exp(x[s,k] - m) / sum_j exp(x[s,j] - m), m = max_j x[s,j]\n");
    fn(e, "static void %s(const float *restrict x, float *restrict y, int s0, int s1)\n{\n", fn_name(e, n));
    fn(e, "    for (int s = s0; s < s1; s++) {\n"
          "        const float *xs = x + (size_t)s * %lld;\n"
          "        float *ys = y + (size_t)s * %lld;\n"
          "        float m = xs[0], sum = 0.0f;\n"
          "        for (int k = 1; k < %lld; k++)\n"
          "            m = xs[k] > m ? xs[k] : m;\n"
          "        for (int k = 0; k < %lld; k++)\n"
          "            sum += ys[k] = expf(xs[k] - m);\n"
          "        for (int k = 0; k < %lld; k++)\n"
          "            ys[k] /= sum;\n"
          "    }\n}\n",
       (long long)k, (long long)k, (long long)k, (long long)k, (long long)k);
    call(e, n, "s0, s1");
}

void emit_act_dx(Emitter *e, const Node *n)
{
    int64_t k = per_sample(n->out);
    if (n->attr.of == OP_SOFTMAX) {
        header(e, n, "gradient of softmax",
               " *   dx[s,k] = y[s,k] (dy[s,k] - sum_j dy[s,j] y[s,j])\n");
        fn(e, "static void %s(const float *restrict dy, const float *restrict y,\n"
              "    float *restrict dx, int s0, int s1)\n{\n", fn_name(e, n));
        fn(e, "    for (int s = s0; s < s1; s++) {\n"
              "        const size_t o = (size_t)s * %lld;\n"
              "        float dot = 0.0f;\n"
              "        for (int k = 0; k < %lld; k++)\n"
              "            dot += dy[o + k] * y[o + k];\n"
              "        for (int k = 0; k < %lld; k++)\n"
              "            dx[o + k] = y[o + k] * (dy[o + k] - dot);\n"
              "    }\n}\n",
           (long long)k, (long long)k, (long long)k);
        call(e, n, "s0, s1");
        return;
    }
    ActText t = act_text(e, n->attr.of, n->attr.alpha, "dy[i]", "v[i]", "dy");
    header(e, n, arena_printf(e->g->arena, "gradient of %s", op_name(n->attr.of)),
           arena_printf(e->g->arena, " *   %s, elementwise\n", t.dformula));
    fn(e, "static void %s(const float *restrict dy, const float *restrict v,\n"
          "    float *restrict dx, int s0, int s1)\n{\n"
          "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++)\n"
          "        dx[i] = %s;\n}\n",
       fn_name(e, n), (long long)k, (long long)k, t.dexpr);
    call(e, n, "s0, s1");
}

/* An average pooling's gradient and the gradient of the activation
 * before it, in one loop (grad.c fuses them where the windows lie side by
 * side): g, the gradient of the activation's output, is made for one row
 * of windows at a time and never stored. */
void emit_avgpool_act_dx(Emitter *e, const Node *n)
{
    Pool p = pool_of(e, n);
    const Node *pool = e->g->nodes.items[n->attr.of_node], *act = pool->in[0]->def;
    const Node *db = fused_bias_db(e, n);
    const int64_t k = p.kh * p.kw, wide = p.ow * p.kw;
    ActText t = act_text(e, n->attr.of, n->attr.alpha, "g[w]", "v[at + w]", "g");
    const Layer *act_layer = e->g->layers.items[act->layer];
    header(e, n, arena_printf(e->g->arena, "gradient of avgpool, then of %s's %s", act_layer->name,
                              op_name(n->attr.of)),
           arena_printf(e->g->arena,
                        " *   g[s,c,h,w] = (1/%lld) dy[s,c,i,j], (i,j) the window that contains (h,w)\n"
                        " *   (the windows do not overlap; 0 where none does): the gradient of %s,\n"
                        " *   never stored, then %s's: %s, elementwise\n%s",
                        (long long)k, act->out->name, op_name(n->attr.of), t.dformula,
                        fused_db_text(e, db, "s, h, w of dx[s,c,h,w]")));
    fn(e, "static void %s(const float *restrict dy, const float *restrict v,\n"
          "    float *restrict dx, %sint s0, int s1)\n{\n", fn_name(e, n), db ? "float *restrict db, " : "");
    pool_channels(e, &p);
    /* A row of windows covers KH rows of the plane, one after the other in
     * memory: g holds each window's share for all of them, KW times side
     * by side in each row (and 0 past the last window), and one loop over
     * the block makes the activation's dx. The block's length, not the
     * plane's narrow width, is what the compiler vectorises. gs: the
     * channel's sums of dx by position in the block (as in maxpool_dx).
     * Where KH rows would be more than 1024 floats (4 KiB of stack for g,
     * as much for gs), g is one row, used for each of the KH in turn. */
    const bool whole = p.kh * p.w <= 1024;
    const int64_t block = whole ? p.kh * p.w : p.w;
    const char *in_rows = whole ? "    " : ""; /* g's loops, inside the loop over its KH rows */
    if (db)
        fn(e, "            float gs[%lld] = {0.0f};\n", (long long)block);
    fn(e, "            for (int i = 0; i < %lld; i++) {\n"
          "                float g[%lld];\n", (long long)p.oh, (long long)block);
    if (whole)
        fn(e, "                for (int p = 0; p < %lld; p++) {\n", (long long)p.kh);
    fn(e, "%s                for (int j = 0; j < %lld; j++)\n"
          "%s                    for (int q = 0; q < %lld; q++)\n"
          "%s                        g[%sj * %lld + q] = dy[out + i * %lld + j] * (1.0f / %lld);\n",
       in_rows, (long long)p.ow, in_rows, (long long)p.kw, in_rows,
       whole ? arena_printf(e->g->arena, "p * %lld + ", (long long)p.w) : "", (long long)p.kw,
       (long long)p.ow, (long long)k);
    if (wide < p.w)
        fn(e, "%s                for (int w = %lld; w < %lld; w++)\n"
              "%s                    g[%sw] = 0.0f;\n",
           in_rows, (long long)wide, (long long)p.w, in_rows,
           whole ? arena_printf(e->g->arena, "p * %lld + ", (long long)p.w) : "");
    const char *in_kh = whole ? "" : "    "; /* the block's loop, inside the loop over the KH rows */
    if (whole)
        fn(e, "                }\n"
              "                const size_t at = in + (size_t)i * %lld;\n", (long long)block);
    else
        fn(e, "                for (int p = 0; p < %lld; p++) {\n"
              "                    const size_t at = in + (size_t)(i * %lld + p) * %lld;\n",
           (long long)p.kh, (long long)p.kh, (long long)p.w);
    fn(e, "%s                for (int w = 0; w < %lld; w++) {\n", in_kh, (long long)block);
    if (db)
        fn(e, "%s                    const float d = %s;\n"
              "%s                    dx[at + w] = d;\n"
              "%s                    gs[w] += d;\n", in_kh, t.dexpr, in_kh, in_kh);
    else
        fn(e, "%s                    dx[at + w] = %s;\n", in_kh, t.dexpr);
    fn(e, "%s                }\n"
          "%s"
          "            }\n", in_kh, whole ? "" : "                }\n");
    /* exact zeros where no window reaches (the columns past the last
     * window were computed from g = 0 above, and are written again) */
    clear_uncovered(e, &p);
    if (db)
        emit_db_sum(e, block);
    fn(e, "        }\n}\n");
    call(e, n, fused_db_args(e, db));
}

/* ---- losses ----------------------------------------------------------------- */

void emit_loss(Emitter *e, const Node *n)
{
    int64_t k = per_sample(n->in[0]);
    const char *target_type = n->in[1]->dtype == DT_I32 ? "int32_t" : "float";
    switch (n->op) {
    case OP_SOFTMAX_CE:
        header(e, n, "softmax cross-entropy, the mean over the batch",
               " *   loss = (1/n) sum_s [ log sum_k exp(z[s,k]) - z[s, label[s]] ]\n"
               " *   computed stably as m + log sum_k exp(z[s,k] - m), m = max_k z[s,k];\n"
               " *   a label outside [0, K) makes the loss NaN\n");
        break;
    case OP_SIGMOID_BCE:
        header(e, n, "binary cross-entropy on sigmoid(z), the mean over all elements",
               " *   loss = mean of max(z, 0) - z t + log(1 + exp(-|z|))\n"
               " *   (= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)), without overflow)\n");
        break;
    case OP_MSE:
        header(e, n, "mean squared error, the mean over all elements",
               " *   loss = mean of (y - t)^2\n");
        break;
    case OP_PERCEPTRON:
        header(e, n, "the perceptron criterion, the mean over the batch",
               " *   loss = (1/n) sum_s max(0, -y[s] z[s]), y = 2 label - 1 in {-1, +1}\n");
        break;
    default:
        die("internal: %s is not a loss", op_name(n->op));
    }
    fn(e, "static void %s(const float *restrict z, const %s *restrict target,\n"
          "    float *restrict loss, int s0, int s1, int n)\n{\n", fn_name(e, n), target_type);
    fn(e, "    double sum = 0.0;\n");
    switch (n->op) {
    case OP_SOFTMAX_CE:
        fn(e, "    for (int s = s0; s < s1; s++) {\n"
              "        const float *zs = z + (size_t)s * %lld;\n"
              "        float m = zs[0];\n"
              "        double e = 0.0;\n"
              "        for (int k = 1; k < %lld; k++)\n"
              "            m = zs[k] > m ? zs[k] : m;\n"
              "        for (int k = 0; k < %lld; k++)\n"
              "            e += exp((double)(zs[k] - m));\n"
              "        if (target[s] < 0 || target[s] >= %lld) {\n"
              "            *loss = NAN;\n"
              "            return;\n"
              "        }\n"
              "        sum += (double)m + log(e) - (double)zs[target[s]];\n"
              "    }\n"
              "    *loss = (float)(sum / n);\n}\n",
           (long long)k, (long long)k, (long long)k, (long long)k);
        break;
    case OP_SIGMOID_BCE:
        fn(e, "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++) {\n"
              "        double x = z[i];\n"
              "        sum += (x > 0 ? x : 0) - x * target[i] + log1p(exp(-fabs(x)));\n"
              "    }\n"
              "    *loss = (float)(sum / ((double)n * %lld));\n}\n",
           (long long)k, (long long)k, (long long)k);
        break;
    case OP_MSE:
        fn(e, "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++) {\n"
              "        double d = (double)z[i] - (double)target[i];\n"
              "        sum += d * d;\n"
              "    }\n"
              "    *loss = (float)(sum / ((double)n * %lld));\n}\n",
           (long long)k, (long long)k, (long long)k);
        break;
    default: /* perceptron */
        fn(e, "    for (int s = s0; s < s1; s++) {\n"
              "        double y = target[s] ? 1.0 : -1.0, m = -y * z[s];\n"
              "        sum += m > 0 ? m : 0;\n"
              "    }\n"
              "    *loss = (float)(sum / n);\n}\n");
        break;
    }
    call(e, n, "s0, s1, n");
}

void emit_loss_dx(Emitter *e, const Node *n)
{
    int64_t k = per_sample(n->out);
    const char *target_type = n->in[1]->dtype == DT_I32 ? "int32_t" : "float";
    switch (n->attr.of) {
    case OP_SOFTMAX_CE:
        header(e, n, "gradient of softmax cross-entropy",
               " *   dz[s,k] = (softmax(z[s])[k] - [k == label[s]]) / n\n");
        break;
    case OP_SIGMOID_BCE:
        header(e, n, "gradient of sigmoid binary cross-entropy",
               arena_printf(e->g->arena, " *   dz = (sigmoid(z) - t) / (n * %lld)\n", (long long)k));
        break;
    case OP_MSE:
        header(e, n, "gradient of the mean squared error",
               arena_printf(e->g->arena, " *   dy = 2 (y - t) / (n * %lld)\n", (long long)k));
        break;
    case OP_PERCEPTRON:
        header(e, n, "gradient of the perceptron criterion",
               " *   dz[s] = -y[s] / n when the step misclassifies s (step(z) != label), else 0;\n"
               " *   under SGD with lr 1 and batch 1 this is Rosenblatt's rule\n"
               " *   w <- w + (label - step(z)) x\n");
        break;
    default:
        die("internal: no loss gradient for %s", op_name(n->attr.of));
    }
    fn(e, "static void %s(const float *restrict z, const %s *restrict target,\n"
          "    float *restrict dz, int s0, int s1, int n)\n{\n", fn_name(e, n), target_type);
    switch (n->attr.of) {
    case OP_SOFTMAX_CE:
        fn(e, "    for (int s = s0; s < s1; s++) {\n"
              "        const float *zs = z + (size_t)s * %lld;\n"
              "        float *ds = dz + (size_t)s * %lld;\n"
              "        float m = zs[0], sum = 0.0f;\n"
              "        for (int k = 1; k < %lld; k++)\n"
              "            m = zs[k] > m ? zs[k] : m;\n"
              "        for (int k = 0; k < %lld; k++)\n"
              "            sum += ds[k] = expf(zs[k] - m);\n"
              "        for (int k = 0; k < %lld; k++)\n"
              "            ds[k] = (ds[k] / sum - (k == target[s])) / (float)n;\n"
              "    }\n}\n",
           (long long)k, (long long)k, (long long)k, (long long)k, (long long)k);
        break;
    case OP_SIGMOID_BCE:
        fn(e, "    const float scale = 1.0f / ((float)n * %lld);\n"
              "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++) {\n"
              "        float p = z[i] >= 0.0f ? 1.0f / (1.0f + expf(-z[i])) : expf(z[i]) / (1.0f + expf(z[i]));\n"
              "        dz[i] = (p - target[i]) * scale;\n"
              "    }\n}\n",
           (long long)k, (long long)k, (long long)k);
        break;
    case OP_MSE:
        fn(e, "    const float scale = 2.0f / ((float)n * %lld);\n"
              "    for (size_t i = (size_t)s0 * %lld; i < (size_t)s1 * %lld; i++)\n"
              "        dz[i] = (z[i] - target[i]) * scale;\n}\n",
           (long long)k, (long long)k, (long long)k);
        break;
    default:
        fn(e, "    for (int s = s0; s < s1; s++) {\n"
              "        int predicted = z[s] > 0.0f;\n"
              "        dz[s] = predicted == (target[s] != 0) ? 0.0f : (target[s] ? -1.0f : 1.0f) / (float)n;\n"
              "    }\n}\n");
        break;
    }
    call(e, n, "s0, s1, n");
}

/* ---- the whole file ----------------------------------------------------------- */

static const Tensor *loss_target(const Graph *g)
{
    return g->loss_node ? g->loss_node->in[1] : NULL;
}

/* exp, tanh and the logistic function as straight-line float code that a
 * compiler vectorises (the C library's are calls, one element at a time).
 * All are accurate to a few units in the last place: relative error
 * below 3e-7 against double, with and without fused multiply-adds, tanh
 * and the logistic function for every float (where the exact result is
 * below FLT_MIN, within FLT_MIN of it), exp on [-87, 88], where exp is a
 * normal float and outside which it clamps (tests/codegen/math_check.c). */
static void emit_math(const Emitter *e, Buf *c)
{
    if (!e->need_tanh && !e->need_sigmoid)
        return;
    buf_puts(c, "/* a * b + c in one rounding (fmaf, C99) where the compiler says the\n"
                " * machine does it fast (gcc with -march=native on an FMA machine): gcc\n"
                " * in ISO C mode (-std=c99) does not fuse a product and a sum by itself,\n"
                " * and the polynomials below are mostly such pairs (tanh: 35% faster\n"
                " * here). Clang fuses a * b + c itself where the target has FMA. */\n"
                "static inline float fma_fast(float a, float b, float c)\n{\n"
                "#ifdef FP_FAST_FMAF\n"
                "    return fmaf(a, b, c);\n"
                "#else\n"
                "    return a * b + c;\n"
                "#endif\n}\n\n");
    buf_puts(c, "/* 2^n, for the integer n that t = v + 1.5 * 2^23 holds in its low bits (the\n"
                " * addition rounds v to an integer there): n written into a float's exponent\n"
                " * bits, in unsigned arithmetic (it wraps, defined, even for a NaN v). */\n"
                "static inline float pow2_rounded(float t)\n{\n"
                "    uint32_t bits;\n"
                "    memcpy(&bits, &t, sizeof bits);\n"
                "    bits = (bits - 0x4B400000u + 127u) << 23;\n"
                "    float scale;\n"
                "    memcpy(&scale, &bits, sizeof scale);\n"
                "    return scale;\n}\n\n");
    if (e->need_sigmoid)
        buf_puts(c, "/* exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]:\n"
                " * exp(r) by its Taylor series to r^6 (the next term is below 2^-24, Horner's\n"
                " * rule), 2^n from pow2_rounded. ln 2 is split in a high part with trailing\n"
                " * zero bits and a low part, so n ln 2 is exact. */\n"
                "static inline float exp_approx(float x)\n{\n"
                "    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;\n"
                "    const float t = fma_fast(x, 1.44269504f, 12582912.0f);\n"
                "    const float n = t - 12582912.0f;\n"
                "    const float r = fma_fast(-n, 1.42860677e-6f, fma_fast(-n, 0.693145752f, x));\n"
                "    float p = fma_fast(r, 1.38888889e-3f, 8.33333333e-3f);\n"
                "    p = fma_fast(r, p, 4.16666667e-2f);\n"
                "    p = fma_fast(r, p, 1.66666667e-1f);\n"
                "    p = fma_fast(r, p, 0.5f);\n"
                "    p = fma_fast(r, p, 1.0f);\n"
                "    p = fma_fast(r, p, 1.0f);\n"
                "    return p * pow2_rounded(t);\n}\n\n");
    if (e->need_tanh)
        buf_puts(c, "/* tanh(x) = sign(x) e / (e + 2) with e = exp(a) - 1, a = 2|x| (clamped at 18,\n"
                    " * where tanh is 1 in float): e = 2^n (1 + p) - 1, n = round(a / ln 2),\n"
                    " * r = a - n ln 2 (ln 2 in a high part with trailing zero bits and a low\n"
                    " * part, so n ln 2 is exact), p = exp(r) - 1 by its Taylor series to r^7\n"
                    " * (Horner's rule), 2^n from pow2_rounded. Near 0 (n = 0) e is p itself,\n"
                    " * so nothing cancels; one division does the rest. */\n"
                    "static inline float tanh_approx(float x)\n{\n"
                    "    float a = 2.0f * fabsf(x);\n"
                    "    a = a > 18.0f ? 18.0f : a;\n"
                    "    const float t = fma_fast(a, 1.44269504f, 12582912.0f);\n"
                    "    const float n = t - 12582912.0f;\n"
                    "    const float r = fma_fast(-n, 1.42860677e-6f, fma_fast(-n, 0.693145752f, a));\n"
                    "    float q = fma_fast(r, 1.98412698e-4f, 1.38888889e-3f);\n"
                    "    q = fma_fast(r, q, 8.33333333e-3f);\n"
                    "    q = fma_fast(r, q, 4.16666667e-2f);\n"
                    "    q = fma_fast(r, q, 1.66666667e-1f);\n"
                    "    q = fma_fast(r, q, 0.5f);\n"
                    "    q = fma_fast(r, q, 1.0f);\n"
                    "    const float p = r * q;\n"
                    "    const float scale = pow2_rounded(t);\n"
                    "    const float e = fma_fast(scale, p, scale - 1.0f);\n"
                    "    const float y = e / (e + 2.0f);\n"
                    "    return x < 0.0f ? -y : y;\n}\n\n");
    if (e->need_sigmoid)
        buf_puts(c, "/* The logistic function 1 / (1 + exp(-x)); exp_approx's clamp keeps it\n"
                    " * finite for every x. */\n"
                    "static inline float sigmoid_approx(float x)\n{\n"
                    "    return 1.0f / (1.0f + exp_approx(-x));\n}\n\n");
}

static void emit_layout(Emitter *e, Buf *c)
{
    const Plan *p = e->p;
    buf_printf(c, "/*\n * Memory: one array of %lld floats, laid out at compile time (laminac\n"
                  " * --emit=plan prints this table with each buffer's lifetime). Regions of\n"
                  " * the work area whose lifetimes do not overlap share memory.\n",
               (long long)p->total);
    if (p->threads > 1)
        buf_printf(c, " *\n * The batch runs in %d parts (laminac --threads), each with a work area of\n"
                      " * its own, PART_FLOATS after the one before: buffers marked 'part' are\n"
                      " * the area of the part in scope (part, whose samples are s0 <= s < s1).\n"
                      " * Like every other buffer they are indexed by the batch's sample number:\n"
                      " * the macro points s0 samples before the part's first row, which stays\n"
                      " * inside mem, since s0 is at most part * %lld (the rows a part holds).\n */\n"
                      "#define PART_FLOATS ((ptrdiff_t)%lld)\n",
                   p->threads, (long long)p->part_rows, (long long)p->part_floats);
    else
        buf_puts(c, " */\n");
    for (int i = 0; i < p->bufs.len; i++) {
        const Buffer *b = p->bufs.items[i];
        const char *name;
        const char *shape = "";
        if (b->t) {
            name = e->macro[b->t->id];
            shape = b->t->role == ROLE_LOSS ? "the mean loss, a share per part of the batch"
                    : b->t->role == ROLE_PARAM || b->t->role == ROLE_PGRAD
                        ? dims(e, b->t)
                        : arena_printf(e->g->arena, "[n%s%s", strcmp(dims(e, b->t), "[]") ? "," : "",
                                       dims(e, b->t) + 1);
        } else if (b->node) {
            name = e->scratch[b->node->id];
            shape = "one sample's im2col columns or channels-last copies";
        } else {
            char *s = arena_strdup(e->g->arena, b->name);
            for (char *q = s; *q; q++)
                if (*q == '.')
                    *q = '_';
            name = upper(e, s);
            shape = "one per parameter";
        }
        const char *base = p->static_params && b->kind == BUF_PARAM ? "weights" : "mem";
        if (b->in_part && b->sample)
            buf_printf(c, "#define %-24s (mem + (%lld + PART_FLOATS * part - %lld * (ptrdiff_t)s0)) /* %-7s %s, part */\n",
                       name, (long long)b->offset, (long long)b->sample, bufkind_name(b->kind), shape);
        else if (b->in_part)
            buf_printf(c, "#define %-24s (mem + (%lld + PART_FLOATS * part)) /* %-7s %s, part */\n", name,
                       (long long)b->offset, bufkind_name(b->kind), shape);
        else
            buf_printf(c, "#define %-24s (%s + %lld) /* %-7s %s */\n", name, base, (long long)b->offset,
                       bufkind_name(b->kind), shape);
    }
    for (int i = 0; i < e->g->tensors.len; i++) {
        const Tensor *t = e->g->tensors.items[i];
        if (t->def && (t->def->op == OP_FLATTEN || t->def->op == OP_RESHAPE_DX))
            buf_printf(c, "/* %s is %s seen as %s */\n", t->name, t->def->in[0]->name,
                       dims(e, t));
    }
    buf_puts(c, "\n");
}

static void emit_param_table(Emitter *e, Buf *c)
{
    const Graph *g = e->g;
    buf_printf(c, "const %s_param %s_param_table[%s_NUM_TENSORS] = {\n", e->prefix, e->prefix, e->PREFIX);
    for (int i = 0; i < g->params.len; i++) {
        const Tensor *t = g->params.items[i];
        const Buffer *b = e->p->of_tensor[t->id];
        buf_printf(c, "    {\"%s\", %d, {", t->name, t->shape.rank);
        for (int k = 0; k < LM_MAX_RANK; k++)
            buf_printf(c, "%s%lld", k ? ", " : "", (long long)(k < t->shape.rank ? t->shape.dim[k] : 0));
        buf_printf(c, "}, %lld, %lld},\n", (long long)b->offset, (long long)b->size);
    }
    buf_puts(c, "};\n\n");
}

/* The initialiser of each parameter, as PyTorch's torch.nn.init names it. */
static void emit_init(Emitter *e, Buf *c)
{
    const Graph *g = e->g;
    buf_printf(c, "\n/* Parameters drawn from the distributions PyTorch uses (its generator's\n"
                  " * exact values are not reproduced: the stream is lamina's own). */\n"
                  "static void init_params(float *mem, uint64_t seed)\n{\n"
                  "    (void)mem;\n    (void)seed;\n");
    for (int i = 0; i < g->params.len; i++) {
        const Tensor *t = g->params.items[i];
        const char *ref_ = e->macro[t->id];
        int64_t count = shape_elems(&t->shape);
        bool bias = strstr(t->name, ".bias") != NULL;
        double fi = (double)t->fan_in, fo = (double)t->fan_out;
        switch (t->init) {
        case INIT_DEFAULT:
            buf_printf(c, "    /* %s: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in %lld (torch's default) */\n"
                          "    lm_fill_uniform(%s, %lld, -%s, %s, seed, %d);\n",
                       t->name, (long long)t->fan_in, ref_, (long long)count, flit(e, 1 / sqrt(fi)),
                       flit(e, 1 / sqrt(fi)), i);
            break;
        case INIT_ZEROS:
            buf_printf(c, "    /* %s: zeros (already) */\n", t->name);
            break;
        default:
            if (bias) {
                buf_printf(c, "    /* %s: zeros (already) */\n", t->name);
                break;
            }
            if (t->init == INIT_XAVIER_UNIFORM)
                buf_printf(c, "    /* %s: xavier_uniform, U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */\n"
                              "    lm_fill_uniform(%s, %lld, -%s, %s, seed, %d);\n",
                           t->name, ref_, (long long)count, flit(e, sqrt(6 / (fi + fo))),
                           flit(e, sqrt(6 / (fi + fo))), i);
            else if (t->init == INIT_XAVIER_NORMAL)
                buf_printf(c, "    /* %s: xavier_normal, N(0, 2 / (fan_in + fan_out)) */\n"
                              "    lm_fill_normal(%s, %lld, 0.0f, %s, seed, %d);\n",
                           t->name, ref_, (long long)count, flit(e, sqrt(2 / (fi + fo))), i);
            else if (t->init == INIT_HE_UNIFORM)
                buf_printf(c, "    /* %s: kaiming_uniform (relu), U(-a, a), a = sqrt(6 / fan_in) */\n"
                              "    lm_fill_uniform(%s, %lld, -%s, %s, seed, %d);\n",
                           t->name, ref_, (long long)count, flit(e, sqrt(6 / fi)), flit(e, sqrt(6 / fi)), i);
            else
                buf_printf(c, "    /* %s: kaiming_normal (relu), N(0, 2 / fan_in) */\n"
                              "    lm_fill_normal(%s, %lld, 0.0f, %s, seed, %d);\n",
                           t->name, ref_, (long long)count, flit(e, sqrt(2 / fi)), i);
        }
    }
    buf_puts(c, "}\n\n");
}

/* Where the model's parameter gradients start in the instance's array. */
static long long grads_offset(const Emitter *e)
{
    return (long long)((const Buffer *)e->p->of_tensor[((Tensor *)e->g->params.items[0])->grad->id])->offset;
}

/* The statements that add the gradients of parts 1.. of a --threads build
 * to variable `var`, holding part 0's gradient of parameter i, leaving var
 * as it is for the parts not in use: one line a part, written out. The
 * loop over i is then one that gcc -O3 vectorises; with an inner loop
 * over the parts it does not under -fopenmp, even for a constant count
 * (gcc 12: "number of iterations cannot be computed"), and the update ran
 * one float at a time, 15-18% of LeNet-5's two-thread step. */
static const char *parts_sum(const Emitter *e, const char *var, int indent)
{
    Buf b = {0};
    for (int part = 1; part < e->p->threads; part++)
        buf_printf(&b, "%*s%s = parts > %d ? %s + g[%lld + i] : %s;\n", indent, "", var, part, var,
                   (long long)(part * e->p->grad_stride), var);
    const char *s = arena_printf(e->g->arena, "%s", b.s);
    buf_free(&b);
    return s;
}

static void emit_optimizer(Emitter *e, Buf *c)
{
    const TrainCfg *t = &e->g->train;
    long long np = (long long)e->p->nparams;
    /* Built for threads (laminac --threads), each thread updates a slice;
     * train_step has it sum the parts' gradients on the way (parts > 1),
     * instead of a pass of their own before (sum_grads). */
    const bool threads = e->p->threads > 1;
    const char *par = threads
                          ? "#ifdef _OPENMP\n#pragma omp parallel for num_threads(m->threads) schedule(static) if (m->threads > 1)\n#endif\n"
                          : "";
    const char *sig = arena_printf(e->g->arena, "static void optimizer_step(struct %s *m%s)\n{\n    float *mem = m->mem;\n",
                                   e->prefix, threads ? ", int parts" : "");
    const char *parts_note = "\n * With parts > 1 (train_step), g is first the sum of the parts' gradients,\n"
                             " * part 0 + part 1 + ..., stored as the model's.";
    if (t->opt == OPT_SGD) {
        /* d = g (+ weight_decay p), g summed over the parts first if need be */
        const char *wd = t->weight_decay > 0 ? arena_printf(e->g->arena, " + %s * p[i]", flit(e, t->weight_decay)) : "";
        const char *load =
            !threads ? arena_printf(e->g->arena, "        float d = g[i]%s;\n", wd)
                     : arena_printf(e->g->arena,
                                    "        float d = g[i];\n"
                                    "%s"
                                    "        g[i] = d; /* the model's gradient, as %s_grads shows it */\n%s",
                                    parts_sum(e, "d", 8), e->prefix,
                                    *wd ? arena_printf(e->g->arena, "        d = d%s;\n", wd) : "");
        buf_printf(c, "/*\n * SGD as torch.optim.SGD: for every parameter p with gradient g,\n"
                      " *   d = g + weight_decay p\n");
        if (t->momentum > 0)
            buf_printf(c, " *   buf = momentum buf + d        (buf starts at 0, so step 1 sets buf = d)\n"
                          " *   d = %s\n", t->nesterov ? "d + momentum buf   (Nesterov)" : "buf");
        buf_printf(c, " *   p = p - lr d\n * with momentum %g, weight_decay %g.%s\n */\n", t->momentum,
                   t->weight_decay, threads ? parts_note : "");
        buf_puts(c, sig);
        buf_printf(c, "    float *restrict p = mem, *restrict g = mem + %lld;\n", grads_offset(e));
        if (t->momentum > 0)
            buf_printf(c, "    float *restrict buf = MOMENTUM;\n");
        buf_printf(c, "    const float lr = m->lr;\n"
                      "%s"
                      "    for (size_t i = 0; i < %lld; i++) {\n"
                      "%s", par, np, load);
        if (t->momentum > 0) {
            buf_printf(c, "        buf[i] = %s * buf[i] + d;\n", flit(e, t->momentum));
            if (t->nesterov)
                buf_printf(c, "        d = d + %s * buf[i];\n", flit(e, t->momentum));
            else
                buf_printf(c, "        d = buf[i];\n");
        }
        buf_printf(c, "        p[i] -= lr * d;\n    }\n    m->step++;\n}\n\n");
    } else {
        /* The loop is the runtime's lm_adam_update, built without errno:
         * here, sqrtf's errno path would keep gcc and clang from
         * vectorising it (runtime/optim.c). In parts, chunks of the
         * parameters small enough to stay in the first-level cache: the
         * parts' gradients summed, then updated. */
        buf_printf(c, "/*\n * Adam as torch.optim.Adam: for every parameter p with gradient g, at step t,\n"
                      " *   g = g + weight_decay p\n"
                      " *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2\n"
                      " *   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)\n"
                      " * with beta1 %g, beta2 %g, eps %g, weight_decay %g: the runtime's\n"
                      " * lm_adam_update, whose loop is vectorised (sqrtf, here, would not be).%s\n */\n",
                   t->beta1, t->beta2, t->eps, t->weight_decay,
                   threads ? arena_printf(e->g->arena, "%s A chunk at a time.", parts_note) : "");
        buf_puts(c, sig);
        buf_printf(c, "    const double t = (double)(m->step + 1);\n"
                      "    const lm_adam c = {.beta1 = %s, .one_minus_beta1 = %s, .beta2 = %s, .one_minus_beta2 = %s,\n"
                      "                       .eps = %s, .weight_decay = %s,\n"
                      "                       .step_size = (float)(m->lr / (1.0 - pow(%.17g, t))),\n"
                      "                       .bc2_sqrt = (float)sqrt(1.0 - pow(%.17g, t))};\n",
                   flit(e, t->beta1), flit(e, 1 - t->beta1), flit(e, t->beta2), flit(e, 1 - t->beta2),
                   flit(e, t->eps), flit(e, t->weight_decay), t->beta1, t->beta2);
        if (!threads) {
            buf_printf(c, "    lm_adam_update(%lld, mem, mem + %lld, ADAM_M, ADAM_V, &c);\n", np, grads_offset(e));
        } else {
            const long long chunk = 4096, nchunks = (np + chunk - 1) / chunk;
            buf_printf(c, "    float *restrict g = mem + %lld;\n"
                          "%s"
                          "    for (int chunk = 0; chunk < %lld; chunk++) {\n"
                          "        const size_t i0 = (size_t)chunk * %lld, n = %lld - i0 < %lld ? %lld - i0 : %lld;\n"
                          "        if (parts > 1)\n"
                          "            for (size_t i = i0; i < i0 + n; i++) {\n"
                          "                float d = g[i];\n"
                          "%s"
                          "                g[i] = d;\n"
                          "            }\n"
                          "        lm_adam_update(n, mem + i0, g + i0, ADAM_M + i0, ADAM_V + i0, &c);\n"
                          "    }\n",
                       grads_offset(e), par, nchunks, chunk, np, chunk, np, chunk, parts_sum(e, "d", 16));
        }
        buf_puts(c, "    m->step++;\n}\n\n");
    }
}

/* The checkpoint: every parameter by name, and the optimizer state as
 * "<param>.momentum_buffer" or "<param>.exp_avg" / "<param>.exp_avg_sq"
 * (PyTorch's names in an optimizer's state). */
static int opt_slots(const Emitter *e, const char **suffix, const char **macro)
{
    if (!e->p->training)
        return 0;
    if (e->p->momentum) {
        suffix[0] = "momentum_buffer";
        macro[0] = "MOMENTUM";
        return 1;
    }
    if (e->p->adam_m) {
        suffix[0] = "exp_avg";
        macro[0] = "ADAM_M";
        suffix[1] = "exp_avg_sq";
        macro[1] = "ADAM_V";
        return 2;
    }
    return 0;
}

/* --embed-weights --inference-only: no checkpoint files, so no file I/O
 * at all; save and load say why they cannot. */
static void emit_no_checkpoint(Emitter *e, Buf *c)
{
    const char *P = e->prefix;
    /* Compiled-in weights: no checkpoint files, so no file I/O at all. */
    buf_printf(c, "int %s_save_meta(const struct %s *m, const char *path, const char *const *kv, int nkv,\n"
                  "    char *err, size_t errlen)\n{\n"
                  "    (void)m;\n    (void)kv;\n    (void)nkv;\n"
                  "    snprintf(err, errlen, \"%%s: not saved: this model's weights are compiled in \"\n"
                  "             \"(laminac --embed-weights); save the checkpoint they came from\", path);\n"
                  "    return -1;\n}\n\n"
                  "int %s_save(const struct %s *m, const char *path, char *err, size_t errlen)\n{\n"
                  "    return %s_save_meta(m, path, NULL, 0, err, errlen);\n}\n\n",
               P, P, P, P, P);
    buf_printf(c, "int %s_load(struct %s *m, const char *path, char *err, size_t errlen)\n{\n"
                  "    (void)m;\n"
                  "    snprintf(err, errlen, \"%%s: not loaded: this model's weights are compiled in \"\n"
                  "             \"(laminac --embed-weights)\", path);\n"
                  "    return -1;\n}\n\n", P, P);
}

static void emit_checkpoint(Emitter *e, Buf *c)
{
    if (e->p->static_params) {
        emit_no_checkpoint(e, c);
        return;
    }
    const char *suffix[2], *macro[2];
    int nslots = opt_slots(e, suffix, macro);
    int np = e->g->params.len;
    const char *P = e->prefix, *U = e->PREFIX;
    /* The names of the optimizer's tensors, as a table. */
    if (nslots) {
        buf_printf(c, "static const char *const opt_names[%d][%s_NUM_TENSORS] = {\n", nslots, U);
        for (int s = 0; s < nslots; s++) {
            buf_puts(c, "    {");
            for (int i = 0; i < np; i++)
                buf_printf(c, "%s\"%s.%s\"", i ? ", " : "", ((Tensor *)e->g->params.items[i])->name,
                           suffix[s]);
            buf_puts(c, "},\n");
        }
        buf_puts(c, "};\n\n");
    }
    buf_printf(c, "/* The tensors of a checkpoint, pointing into m: parameters, then (with_opt)\n"
                  " * the optimizer's state. Returns how many. */\n"
                  "static int checkpoint_tensors(struct %s *m, lm_tensor *t, int with_opt)\n{\n"
                  "    float *mem = m->mem;\n    int k = 0;\n", P);
    if (!nslots)
        buf_puts(c, "    (void)with_opt;\n");
    buf_printf(c, "    for (int i = 0; i < %s_NUM_TENSORS; i++, k++) {\n"
                  "        const %s_param *p = &%s_param_table[i];\n"
                  "        t[k].name = p->name;\n"
                  "        t[k].rank = p->rank;\n"
                  "        memcpy(t[k].shape, p->shape, sizeof t[k].shape);\n"
                  "        t[k].data = mem + p->offset;\n"
                  "    }\n", U, P, P);
    for (int s = 0; s < nslots; s++)
        buf_printf(c, "    for (int i = 0; with_opt && i < %s_NUM_TENSORS; i++, k++) {\n"
                      "        t[k] = t[i];\n"
                      "        t[k].name = opt_names[%d][i];\n"
                      "        t[k].data = %s + %s_param_table[i].offset;\n"
                      "    }\n", U, s, macro[s], P);
    buf_puts(c, "    return k;\n}\n\n");
    int total = np * (1 + nslots);
    buf_printf(c, "int %s_save_meta(const struct %s *m, const char *path, const char *const *kv, int nkv,\n"
                  "    char *err, size_t errlen)\n{\n"
                  "    enum { MAX_META = 32 };\n"
                  "    lm_tensor t[%d];\n"
                  "    char step[32], lr[32];\n"
                  "    snprintf(step, sizeof step, \"%%lld\", (long long)m->step);\n"
                  "    snprintf(lr, sizeof lr, \"%%.9g\", (double)m->lr);\n"
                  "    const char *meta[2 * MAX_META] = {\"model\", \"%s\", \"step\", step, \"lr\", lr,\n"
                  "                                   \"optimizer\", \"%s\"};\n"
                  "    int nmeta = 4;\n"
                  "    for (int i = 0; i < nkv && nmeta < MAX_META; i++, nmeta++) {\n"
                  "        meta[2 * nmeta] = kv[2 * i];\n"
                  "        meta[2 * nmeta + 1] = kv[2 * i + 1];\n"
                  "    }\n"
                  "    int n = checkpoint_tensors((struct %s *)m, t, 1);\n"
                  "    return lm_st_save(path, t, n, meta, nmeta, err, errlen);\n}\n\n"
                  "int %s_save(const struct %s *m, const char *path, char *err, size_t errlen)\n{\n"
                  "    return %s_save_meta(m, path, NULL, 0, err, errlen);\n}\n\n",
               P, P, total, e->g->name,
               !e->p->training ? "none" : e->p->momentum ? "sgd" : e->p->adam_m ? "adam" : "sgd",
               P, P, P, P);
    buf_printf(c, "int %s_load(struct %s *m, const char *path, char *err, size_t errlen)\n{\n"
                  "    lm_tensor t[%d];\n"
                  "    char step[32] = \"\", opt[16] = \"\", lr[32] = \"\";\n"
                  "    lm_st_meta meta[3] = {{\"step\", step, sizeof step, 0}, {\"lr\", lr, sizeof lr, 0},\n"
                  "                          {\"optimizer\", opt, sizeof opt, 0}};\n"
                  "    /* With the optimizer's state when the file has it (a resumable\n"
                  "     * checkpoint), else the parameters alone (e.g. from PyTorch). */\n"
                  "    int with_opt = %d;\n"
                  "    if (with_opt && lm_st_load(path, NULL, 0, meta, 3, LM_ST_ALLOW_EXTRA, err, errlen) == 0)\n"
                  "        with_opt = strcmp(opt, \"%s\") == 0;\n"
                  "    int n = checkpoint_tensors(m, t, with_opt);\n"
                  "    if (lm_st_load(path, t, n, meta, 2, LM_ST_ALLOW_EXTRA, err, errlen) != 0)\n"
                  "        return -1;\n"
                  "    if (with_opt && meta[0].found) /* resuming: the step and the learning rate too */\n"
                  "        m->step = strtoll(step, NULL, 10);\n"
                  "    if (with_opt && meta[1].found)\n"
                  "        m->lr = strtof(lr, NULL);\n"
                  "    return 0;\n}\n\n",
               P, P, total, nslots > 0, e->p->momentum ? "sgd" : "adam");
}

/* --embed-weights: the checkpoint's parameters as a static const array, in
 * C99 hexadecimal floating constants (exact, and shorter than decimal). */
static bool emit_weights(Emitter *e, Buf *c, const char *path)
{
    const Graph *g = e->g;
    float *w = xrealloc(NULL, sizeof(float) * (size_t)(e->p->nparams ? e->p->nparams : 1));
    lm_tensor *t = ARENA_ARRAY(g->arena, lm_tensor, g->params.len + 1);
    for (int i = 0; i < g->params.len; i++) {
        const Tensor *pt = g->params.items[i];
        t[i].name = pt->name;
        t[i].rank = pt->shape.rank;
        for (int k = 0; k < pt->shape.rank; k++)
            t[i].shape[k] = pt->shape.dim[k];
        t[i].data = w + e->p->of_tensor[pt->id]->offset;
    }
    char err[512];
    if (lm_st_load(path, t, g->params.len, NULL, 0, LM_ST_ALLOW_EXTRA, err, sizeof err) != 0) {
        fprintf(stderr, "laminac: --embed-weights: %s\n", err);
        free(w);
        return false;
    }
    for (int64_t i = 0; i < e->p->nparams; i++)
        if (!isfinite(w[i])) {
            fprintf(stderr, "laminac: --embed-weights: %s: parameter %lld is not finite\n", path,
                    (long long)i);
            free(w);
            return false;
        }
    buf_printf(c, "/* The parameters, compiled in from %s (laminac --embed-weights),\n"
                  " * laid out as %s_param_table says. */\n"
                  "static const float weights[%s_NUM_PARAMS] = {\n",
               path, e->prefix, e->PREFIX);
    for (int64_t i = 0; i < e->p->nparams; i++)
        buf_printf(c, "%s%af,%s", i % 6 == 0 ? "    " : "", (double)w[i],
                   i % 6 == 5 || i + 1 == e->p->nparams ? "\n" : " ");
    buf_puts(c, "};\n\n");
    free(w);
    return true;
}

static void emit_header(Emitter *e, const EmitOptions *o, Buf *h)
{
    const Graph *g = e->g;
    const char *P = e->prefix, *U = e->PREFIX;
    const Tensor *tgt = loss_target(g);
    bool labels = tgt && tgt->dtype == DT_I32;
    bool train = e->p->training;
    int64_t in = per_sample(g->input), out = per_sample(g->output);
    buf_printf(h, "/*\n * %s.h — model '%s', generated by laminac %s from %s.\n"
                  " * Do not edit: change the model file and compile it again.\n *\n",
               P, g->name, LAMINA_VERSION, o->source);
    buf_printf(h, " * Input x[n,%s (%lld floats a sample); output %s[n,%s.\n",
               dims(e, g->input) + 1, (long long)in, g->output->name, dims(e, g->output) + 1);
    if (train)
        buf_printf(h, " * Training: loss %s, %s.\n", op_name(g->loss_node->op),
                   g->train.opt == OPT_SGD ? "SGD" : "Adam");
    buf_printf(h, " * Every call takes n samples, 1 <= n <= %s_BATCH. Instances share\n"
                  " * nothing: any number may be used at once, one thread each.\n */\n",
               U);
    buf_printf(h, "/*\n * Memory of one instance: %s_size() = %lld bytes, all of it allocated\n"
                  " * by create (or given to init), none after:\n",
               P, (long long)(4 * e->p->total + PLAN_HEADER_BYTES));
    for (int k = 0; k < BUF_COUNT; k++)
        if (e->p->by_kind[k])
            buf_printf(h, " *   %-22s %12lld floats%s\n", bufkind_title((BufKind)k), (long long)e->p->by_kind[k],
                       k >= BUF_ACT ? " (in the work area)" : "");
    buf_printf(h, " *   %-22s %12lld floats, shared by liveness\n */\n", "work area",
               (long long)e->p->work);
    buf_printf(h, "#ifndef %s_H\n#define %s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", U, U);
    buf_printf(h, "#define %s_BATCH %lld /* the largest n of any call */\n", U, (long long)g->train.batch);
    buf_printf(h, "#define %s_IN_SIZE %lld /* floats of one input sample */\n", U, (long long)in);
    buf_printf(h, "#define %s_OUT_SIZE %lld /* floats of one output sample */\n", U, (long long)out);
    buf_printf(h, "#define %s_NUM_PARAMS %lld /* floats of all parameters */\n", U, (long long)e->p->nparams);
    buf_printf(h, "#define %s_NUM_TENSORS %d /* parameter tensors */\n", U, g->params.len);
    buf_printf(h, "#define %s_MEM_FLOATS %lld /* the instance's float array */\n", U, (long long)e->p->total);
    buf_printf(h, "#define %s_SIZE %lld /* bytes of an instance: %s_size(), for static memory */\n", U,
               (long long)(4 * e->p->total + PLAN_HEADER_BYTES), P);
    buf_printf(h, "#define %s_TRAINING %d /* 0: compiled with --inference-only */\n", U, train);
    buf_printf(h, "#define %s_THREADS %d /* the most parts a batch is split in (laminac --threads) */\n",
               U, e->p->threads);
    if (tgt) {
        buf_printf(h, "#define %s_LABELS %d /* 1: targets are class labels; 0: floats */\n", U, labels);
        buf_printf(h, "#define %s_TARGET_SIZE %lld /* targets per sample */\n", U,
                   labels ? 1LL : (long long)per_sample(tgt));
        buf_printf(h, "#define %s_TARGET_IS_INPUT %d /* 1: target NULL means x itself */\n", U,
                   tgt->role == ROLE_INPUT);
        if (labels)
            buf_printf(h, "#define %s_NUM_CLASSES %lld\n", U,
                       g->loss_node->op == OP_PERCEPTRON ? 2LL : (long long)per_sample(g->loss_node->in[0]));
    }
    const TrainCfg *t = &g->train;
    buf_printf(h, "/* The model's train block. */\n"
                  "#define %s_EPOCHS %lld\n#define %s_LR %s\n#define %s_SEED %lluu\n"
                  "#define %s_SCALE %s /* input = raw * scale + shift */\n#define %s_SHIFT %s\n\n",
               U, (long long)t->epochs, U, flit(e, t->lr), U, (unsigned long long)t->seed, U,
               flit(e, t->scale), U, flit(e, t->shift));
    buf_printf(h, "typedef struct %s %s;\n", P, P);
    if (tgt)
        buf_printf(h, "typedef %s %s_target; /* %s */\n", labels ? "int32_t" : "float", P,
                   labels ? "a class index per sample" : "TARGET_SIZE floats per sample");
    buf_printf(h, "\n/* A parameter tensor: its checkpoint name, PyTorch's shape, and where it\n"
                  " * lies in %s_params(m). */\n"
                  "typedef struct %s_param {\n    const char *name;\n    int rank;\n"
                  "    int64_t shape[4];\n    size_t offset, count;\n} %s_param;\n"
                  "extern const %s_param %s_param_table[%s_NUM_TENSORS];\n\n", P, P, P, P, P, U);
    buf_printf(h, "/* Memory: an instance is %s_size() bytes, in memory the caller owns\n"
                  " * (init) or from malloc (create). init and create draw the parameters\n"
                  " * from seed; create returns NULL when out of memory. */\n"
                  "size_t %s_size(void);\n%s *%s_init(void *mem, uint64_t seed);\n"
                  "%s *%s_create(uint64_t seed);\nvoid %s_destroy(%s *m);\n\n",
               P, P, P, P, P, P, P, P);
    buf_printf(h, "/* Threads: every pass splits the batch in %s_THREADS parts (laminac\n"
                  " * --threads; a call of fewer samples, one part a sample), each with\n"
                  " * memory of its own; this many threads (1 to %s_THREADS, 1 at first)\n"
                  " * run them in parallel when this file is compiled with OpenMP\n"
                  " * (-fopenmp). The results are the same bit for bit with any thread\n"
                  " * count, and without OpenMP. Returns the count set. With more than\n"
                  " * one, let the BLAS use one thread (lm_set_threads(1)). */\n"
                  "int %s_set_threads(%s *m, int threads);\n\n", U, U, P, P);
    buf_printf(h, "/* Inference: y[n * %s_OUT_SIZE] = model(x[n * %s_IN_SIZE]), dropout off.\n"
                  " * y may be NULL; %s_output(m) then holds the last result. */\n"
                  "void %s_forward(%s *m, const float *x, int n, float *y);\n"
                  "const float *%s_output(const %s *m);\n"
                  "/* After forward: a layer's output, [n * size] (size set to its floats a\n"
                  " * sample), for the output layer and the layers kept with laminac --keep;\n"
                  " * NULL (size 0) for any other name. */\n"
                  "const float *%s_activation(const %s *m, const char *layer, int *size);\n\n",
               U, U, P, P, P, P, P, P, P);
    if (train) {
        buf_printf(h, "/* Training. train_step = zero_grad + forward_train + backward + update;\n"
                      " * it returns the mean loss of the batch (NaN if n is out of range or a\n"
                      " * label is not a class). The pieces are there for custom loops:\n"
                      " * backward accumulates into the gradients (+=) like PyTorch. */\n"
                      "float %s_train_step(%s *m, const float *x, const %s_target *target, int n);\n"
                      "float %s_forward_train(%s *m, const float *x, const %s_target *target, int n);\n"
                      "void %s_backward(%s *m, const float *x, const %s_target *target, int n);\n"
                      "void %s_zero_grad(%s *m);\nvoid %s_update(%s *m);\n\n",
                   P, P, P, P, P, P, P, P, P, P, P, P, P);
    }
    if (tgt)
        buf_printf(h, "/* The loss of a batch with dropout off, outputs into y (may be NULL). */\n"
                      "float %s_evaluate(%s *m, const float *x, const %s_target *target, int n, float *y);\n\n",
                   P, P, P);
    if (g->input->grad)
        buf_printf(h, "/* After backward: d loss / d x, [n * %s_IN_SIZE] (compiled with --input-grad). */\n"
                      "const float *%s_input_grad(const %s *m);\n\n", U, P, P);
    buf_printf(h, "/* Parameters (and gradients) as one float array each, laid out as\n"
                  " * %s_param_table says. grads is NULL with --inference-only. */\n"
                  "float *%s_params(%s *m);\nfloat *%s_grads(%s *m);\n"
                  "void %s_set_lr(%s *m, float lr);\nfloat %s_get_lr(const %s *m);\n"
                  "int64_t %s_get_step(const %s *m); /* optimizer steps taken */\n\n",
               P, P, P, P, P, P, P, P, P, P, P);
    buf_printf(h, "/* Checkpoints, as safetensors files: tensors named as in the model\n"
                  " * (\"c1.weight\"), PyTorch's layouts, plus the optimizer's state. save\n"
                  " * replaces path whole or not at all; load checks every name, dtype and\n"
                  " * shape first and changes nothing on error. Both return 0, or -1 with a\n"
                  " * message in err. */\n"
                  "int %s_save(const %s *m, const char *path, char *err, size_t errlen);\n"
                  "int %s_load(%s *m, const char *path, char *err, size_t errlen);\n"
                  "/* save with extra metadata: kv holds nkv key, value pairs of strings\n"
                  " * (\"epoch\", \"3\", ...), read back with lm_st_load (lamina_rt.h). */\n"
                  "int %s_save_meta(const %s *m, const char *path, const char *const *kv, int nkv,\n"
                  "    char *err, size_t errlen);\n\n#endif\n",
               P, P, P, P, P, P);
}

bool emit_c(const Graph *g, const Plan *p, const EmitOptions *o, const char *dir)
{
    Emitter e;
    memset(&e, 0, sizeof e);
    e.g = g;
    e.p = p;
    e.prefix = o->prefix ? o->prefix : g->name;
    e.PREFIX = upper(&e, e.prefix);
    name_macros(&e);
    const char *P = e.prefix, *U = e.PREFIX;
    bool train = p->training;
    const Tensor *tgt = loss_target(g);

    /* The node functions and the calls of each pass. */
    int nsched = train ? g->nodes.len : g->nforward;
    for (int i = 0; i < nsched; i++) {
        const Node *n = g->nodes.items[i];
        if (!train && op_info[n->op].kind == OPK_LOSS && !tgt)
            continue;
        e.call = i < g->nforward ? &e.fwd : &e.bwd;
        if (op_info[n->op].kind == OPK_LOSS) {
            Buf *keep = e.call;
            Buf loss = {0};
            e.call = &loss;
            op_info[n->op].emit(&e, n);
            e.call = keep;
            buf_printf(&e.fwd, "    if (target)\n    %s", loss.s);
            buf_free(&loss);
            continue;
        }
        op_info[n->op].emit(&e, n);
    }

    Buf h = {0}, c = {0};
    emit_header(&e, o, &h);

    buf_printf(&c, "/*\n * %s.c — model '%s', generated by laminac %s from %s.\n"
                   " * Do not edit: change the model file and compile it again.\n *\n"
                   " * Read it top down: the memory layout, the parameter table, one function\n"
                   " * per operation (forward, then backward, each with its formula), the\n"
                   " * optimizer, and the API, whose passes are straight lists of calls.\n */\n",
               P, g->name, LAMINA_VERSION, o->source);
    buf_printf(&c, "#include \"%s.h\"\n\n#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
                   "#include <string.h>\n\n#include \"lamina_rt.h\"\n\n", P);
    buf_printf(&c, "struct %s {\n"
                   "    float lr;            /* learning rate, settable at run time */\n"
                   "    int threads;         /* threads running the parts of a batch: 1..%s_THREADS */\n"
                   "    int64_t step;        /* optimizer steps taken (numbers dropout masks) */\n"
                   "    uint64_t seed;       /* of the parameters and the dropout masks */\n"
                   "    char pad_[%d];       /* the floats start %d bytes in */\n"
                   "    float mem[%s_MEM_FLOATS];\n};\n\n",
               P, U, PLAN_HEADER_BYTES - 24, PLAN_HEADER_BYTES, U);
    if (o->embed_weights && !emit_weights(&e, &c, o->embed_weights)) {
        buf_free(&h);
        buf_free(&c);
        return false;
    }
    emit_layout(&e, &c);
    emit_param_table(&e, &c);
    emit_math(&e, &c);
    buf_puts(&c, "/* ---- forward ---------------------------------------------------------- */\n");
    buf_puts(&c, e.fn.s ? e.fn.s : "");
    if (!o->embed_weights)
        emit_init(&e, &c);
    if (train)
        emit_optimizer(&e, &c);
    buf_puts(&c, "\n/* ---- the passes --------------------------------------------------------- */\n\n");
    const char *tt = tgt ? arena_printf(g->arena, "const %s_target *target", P) : "const void *target";
    /* The passes run on parts of the batch: part p of P (NAME_THREADS, or n
     * if fewer) takes samples n*p/P <= s < n*(p+1)/P. Parts share no memory
     * they write (each has its work area, its parameter gradients and its
     * loss slot), so m->threads threads run them in parallel where the code
     * is compiled with OpenMP, and one after the other otherwise, with the
     * same results bit for bit. */
    buf_printf(&c, "/* The forward pass of one part of the batch: each layer in order, and the\n"
                   " * loss when target is given. */\n"
                   "static void forward_part(struct %s *m, const float *x, %s, int s0, int s1,\n"
                   "    int n, int part, int training)\n{\n"
                   "    float *mem = m->mem;\n    (void)training;\n    (void)n;\n    (void)part;\n%s%s}\n\n",
               P, tt, tgt ? "" : "    (void)target;\n", e.fwd.s ? e.fwd.s : "");
    buf_printf(&c, "/* The forward pass of the batch, part by part; returns the mean loss\n"
                   " * (the sum of the parts' shares) when target is given. */\n"
                   "static float run_forward(struct %s *m, const float *x, %s, int n, int training)\n{\n"
                   "    const int parts = %s_THREADS < n ? %s_THREADS : n; /* no empty parts */\n"
                   "#ifdef _OPENMP\n#pragma omp parallel for num_threads(m->threads) schedule(static, 1) if (parts > 1)\n#endif\n"
                   "    for (int part = 0; part < parts; part++)\n"
                   "        forward_part(m, x, target, n * part / parts, n * (part + 1) / parts, n, part, training);\n",
               P, tt, U, U);
    if (tgt)
        buf_printf(&c, "    const float *mem = m->mem;\n    double loss = 0.0;\n"
                       "    for (int part = 0; part < parts; part++)\n"
                       "        loss += LOSS[part];\n"
                       "    return (float)loss;\n}\n\n");
    else
        buf_puts(&c, "    (void)target;\n    return 0.0f;\n}\n\n");
    buf_printf(&c, "size_t %s_size(void)\n{\n    return sizeof(struct %s);\n}\n\n", P, P);
    buf_printf(&c, "struct %s *%s_init(void *mem, uint64_t seed)\n{\n    struct %s *m = mem;\n"
                   "    memset(m, 0, sizeof *m);\n    m->lr = %s_LR;\n    m->threads = 1;\n    m->seed = seed;\n%s"
                   "    return m;\n}\n\n",
               P, P, P, U,
               p->static_params ? "    /* the parameters are the compiled-in weights[] */\n"
               : o->embed_weights ? arena_printf(g->arena, "    memcpy(m->mem, weights, %s_NUM_PARAMS * sizeof(float));\n", U)
                                  : "    init_params(m->mem, seed);\n");
    buf_printf(&c, "struct %s *%s_create(uint64_t seed)\n{\n    void *mem = malloc(sizeof(struct %s));\n"
                   "    return mem ? %s_init(mem, seed) : NULL;\n}\n\n"
                   "void %s_destroy(struct %s *m)\n{\n    free(m);\n}\n\n",
               P, P, P, P, P, P);
    buf_printf(&c, "int %s_set_threads(struct %s *m, int threads)\n{\n"
                   "    m->threads = threads < 1 ? 1 : threads > %s_THREADS ? %s_THREADS : threads;\n"
                   "    return m->threads;\n}\n\n", P, P, U, U);
    buf_printf(&c, "void %s_forward(struct %s *m, const float *x, int n, float *y)\n{\n"
                   "    float *mem = m->mem;\n"
                   "    if (n < 1 || n > %s_BATCH)\n        return;\n"
                   "    run_forward(m, x, NULL, n, 0);\n"
                   "    if (y)\n        memcpy(y, %s, (size_t)n * %s_OUT_SIZE * sizeof(float));\n}\n\n",
               P, P, U, ref(&e, g->output), U);
    buf_printf(&c, "const float *%s_output(const struct %s *m)\n{\n    const float *mem = m->mem;\n"
                   "    return %s;\n}\n\n", P, P, ref(&e, g->output));
    buf_printf(&c, "const float *%s_activation(const struct %s *m, const char *layer, int *size)\n{\n"
                   "    const float *mem = m->mem;\n", P, P);
    for (int i = 0; i < g->tensors.len; i++) {
        const Tensor *t = g->tensors.items[i];
        if (t->keep || t == g->output)
            buf_printf(&c, "    if (strcmp(layer, \"%s\") == 0) {\n"
                           "        *size = %lld;\n        return %s;\n    }\n",
                       ((const Layer *)g->layers.items[t->layer])->name, (long long)per_sample(t),
                       ref(&e, t));
    }
    buf_puts(&c, "    (void)mem;\n    *size = 0;\n    return NULL;\n}\n\n");
    if (tgt) {
        const char *resolve = tgt->role == ROLE_INPUT ? "    if (!target)\n        target = x;\n" : "";
        buf_printf(&c, "float %s_evaluate(struct %s *m, const float *x, %s, int n, float *y)\n{\n"
                       "    float *mem = m->mem;\n"
                       "    if (n < 1 || n > %s_BATCH)\n        return NAN;\n%s"
                       "    float loss = run_forward(m, x, target, n, 0);\n"
                       "    if (y)\n        memcpy(y, %s, (size_t)n * %s_OUT_SIZE * sizeof(float));\n"
                       "    return loss;\n}\n\n",
                   P, P, tt, U, resolve, ref(&e, g->output), U);
    }
    if (train) {
        const char *resolve = tgt->role == ROLE_INPUT ? "    if (!target)\n        target = x;\n" : "";
        const long long goff = grads_offset(&e);
        buf_printf(&c, "float %s_forward_train(struct %s *m, const float *x, %s, int n)\n{\n"
                       "    if (n < 1 || n > %s_BATCH)\n        return NAN;\n%s"
                       "    return run_forward(m, x, target, n, 1);\n}\n\n",
                   P, P, tt, U, resolve);
        const bool threads = p->threads > 1;
        buf_printf(&c, "/* The backward pass of one part: the forward layers' gradients in\n"
                       " * reverse order. Part 0 adds its parameter gradients to the model's; the\n"
                       " * others, to their own buffers (gp floats further on), summed after.\n"
                       " * fresh: part 0's start from 0 too (train_step), each part clearing its\n"
                       " * own in parallel. */\n"
                       "static void backward_part(struct %s *m, const float *x, %s, int s0, int s1,\n"
                       "    int n, int part, int fresh)\n{\n"
                       "    float *mem = m->mem;\n"
                       "    const size_t gp = (size_t)part * %lld;\n"
                       "    (void)x;\n    (void)n;\n    (void)target;\n"
                       "    if (part > 0 || fresh)\n        memset(mem + %lld + gp, 0, %s_NUM_PARAMS * sizeof(float));\n%s}\n\n",
                   P, tt, (long long)p->grad_stride, goff, U, e.bwd.s ? e.bwd.s : "");
        buf_printf(&c, "/* The backward pass over the batch, in parts; returns their number. */\n"
                       "static int run_backward(struct %s *m, const float *x, %s, int n, int fresh)\n{\n"
                       "    const int parts = %s_THREADS < n ? %s_THREADS : n; /* no empty parts */\n"
                       "#ifdef _OPENMP\n#pragma omp parallel for num_threads(m->threads) schedule(static, 1) if (parts > 1)\n#endif\n"
                       "    for (int part = 0; part < parts; part++)\n"
                       "        backward_part(m, x, target, n * part / parts, n * (part + 1) / parts, n, part, fresh);\n"
                       "    return parts;\n}\n\n",
                   P, tt, U, U);
        if (threads)
            buf_printf(&c, "/* The parts' parameter gradients, summed into the model's in a fixed\n"
                           " * order (part 0 + part 1 + ...), each thread a slice of the parameters. */\n"
                           "static void sum_grads(struct %s *m, int parts)\n{\n"
                           "    float *restrict g = m->mem + %lld;\n"
                           "#ifdef _OPENMP\n#pragma omp parallel for num_threads(m->threads) schedule(static)\n#endif\n"
                           "    for (size_t i = 0; i < %s_NUM_PARAMS; i++) {\n"
                           "        float sum = g[i];\n"
                           "%s"
                           "        g[i] = sum;\n"
                           "    }\n}\n\n",
                       P, goff, U, parts_sum(&e, "sum", 8));
        buf_printf(&c, "void %s_backward(struct %s *m, const float *x, %s, int n)\n{\n"
                       "    if (n < 1 || n > %s_BATCH)\n        return;\n%s"
                       "    %srun_backward(m, x, target, n, 0);\n%s}\n\n",
                   P, P, tt, U, resolve, threads ? "const int parts = " : "",
                   threads ? "    if (parts > 1)\n        sum_grads(m, parts);\n" : "");
        buf_printf(&c, "void %s_zero_grad(struct %s *m)\n{\n"
                       "    memset(m->mem + %lld, 0, %s_NUM_PARAMS * sizeof(float));\n}\n\n"
                       "void %s_update(struct %s *m)\n{\n    optimizer_step(m%s);\n}\n\n",
                   P, P, goff, U, P, P, threads ? ", 1" : "");
        /* One pass less than the pieces: the gradients start from 0 in
         * backward's parts, and (with threads) the optimizer sums the parts. */
        buf_printf(&c, "float %s_train_step(struct %s *m, const float *x, %s, int n)\n{\n"
                       "    if (n < 1 || n > %s_BATCH)\n        return NAN;\n%s"
                       "    float loss = run_forward(m, x, target, n, 1);\n"
                       "    if (!isfinite(loss)) { /* a label out of range, or divergence: no update */\n"
                       "        %s_zero_grad(m);\n"
                       "        return loss;\n"
                       "    }\n"
                       "    %srun_backward(m, x, target, n, 1);\n"
                       "    optimizer_step(m%s);\n"
                       "    return loss;\n}\n\n",
                   P, P, tt, U, resolve, P, threads ? "const int parts = " : "", threads ? ", parts" : "");
        buf_printf(&c, "float *%s_grads(struct %s *m)\n{\n    return m->mem + %lld;\n}\n\n", P, P, goff);
    } else {
        buf_printf(&c, "float *%s_grads(struct %s *m)\n{\n    (void)m;\n    return NULL;\n}\n\n", P, P);
    }
    if (g->input->grad)
        buf_printf(&c, "const float *%s_input_grad(const struct %s *m)\n{\n    const float *mem = m->mem;\n"
                       "    return %s;\n}\n\n", P, P, ref(&e, g->input->grad));
    buf_printf(&c, p->static_params ? "float *%s_params(struct %s *m)\n{\n    (void)m;\n    return NULL;\n}\n\n"
                                    : "float *%s_params(struct %s *m)\n{\n    return m->mem;\n}\n\n",
               P, P);
    buf_printf(&c, ""
                   "void %s_set_lr(struct %s *m, float lr)\n{\n    m->lr = lr;\n}\n\n"
                   "float %s_get_lr(const struct %s *m)\n{\n    return m->lr;\n}\n\n"
                   "int64_t %s_get_step(const struct %s *m)\n{\n    return m->step;\n}\n\n",
               P, P, P, P, P, P);
    emit_checkpoint(&e, &c);

    mkdir(dir, 0777); /* an existing directory is fine; fopen reports the rest */
    bool ok = write_text_file(arena_printf(g->arena, "%s/%s.h", dir, P), &h) &&
              write_text_file(arena_printf(g->arena, "%s/%s.c", dir, P), &c);
    buf_free(&h);
    buf_free(&c);
    buf_free(&e.fn);
    buf_free(&e.fwd);
    buf_free(&e.bwd);
    return ok;
}
