/*
 * print.c — the graph for people: --emit=ir, --emit=dot, --summary.
 *
 * The IR text is a stable, diff-able form: one line per tensor
 * declaration and per node, each with its shape and the source line:col
 * it came from. Nothing here changes the graph.
 */
#include "lamina.h"

#include <string.h>

static const char *dtype_name(DType t)
{
    return t == DT_I32 ? "i32" : "f32";
}

static char sigil(const Tensor *t)
{
    return t->role == ROLE_PARAM || t->role == ROLE_PGRAD ? '@' : '%';
}

static void print_type(FILE *f, const Tensor *t)
{
    char b[96];
    fprintf(f, "%s%s", dtype_name(t->dtype), shape_str(&t->shape, b, sizeof b));
}

static void print_window(FILE *f, const Attrs *a)
{
    fprintf(f, " kernel=[%d,%d] stride=[%d,%d] pad=[%d,%d]", a->kernel[0], a->kernel[1],
            a->stride[0], a->stride[1], a->pad[0], a->pad[1]);
}

static void print_attrs(FILE *f, const Graph *g, const Node *n)
{
    const Attrs *a = &n->attr;
    switch (n->op) {
    case OP_CONV2D:
    case OP_CONV2D_DX:
    case OP_CONV2D_DW:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_MAXPOOL_DX:
    case OP_AVGPOOL_DX:
    case OP_AVGPOOL_ACT_DX:
        print_window(f, a);
        fprintf(f, "%s", (n->op == OP_MAXPOOL || n->op == OP_MAXPOOL_DX) && a->relu ? " relu" : "");
        break;
    case OP_MAXPOOL_ROUTE: /* the pooling's windows, never padded */
        fprintf(f, " kernel=[%d,%d] stride=[%d,%d]%s", a->kernel[0], a->kernel[1], a->stride[0],
                a->stride[1], a->relu ? " relu" : "");
        break;
    case OP_MAXPOOL_CONV2D_DW: /* the convolution's, then the pooling's windows */
    case OP_MAXPOOL_CONV2D_DX: {
        const Node *conv = g->nodes.items[a->of_node];
        print_window(f, &conv->attr);
        fprintf(f, " pool=[%d,%d] pool_stride=[%d,%d]", a->kernel[0], a->kernel[1], a->stride[0],
                a->stride[1]);
        break;
    }
    case OP_LEAKY_RELU:
    case OP_ELU:
        fprintf(f, " alpha=%g", a->alpha);
        break;
    case OP_DROPOUT:
        fprintf(f, " p=%g", a->p);
        break;
    default:
        break;
    }
    if (n->op == OP_ACT_DX || n->op == OP_LOSS_DX || n->op == OP_AVGPOOL_ACT_DX) {
        fprintf(f, " of=%s", op_name(a->of));
        if (a->of == OP_LEAKY_RELU || a->of == OP_ELU)
            fprintf(f, " alpha=%g", a->alpha);
    }
}

static void print_node(FILE *f, const Graph *g, const Node *n)
{
    fprintf(f, "%c%s = %s(", sigil(n->out), n->out->name, op_name(n->op));
    for (int i = 0; i < n->nin; i++)
        fprintf(f, "%s%c%s", i ? ", " : "", sigil(n->in[i]), n->in[i]->name);
    fputc(')', f);
    print_attrs(f, g, n);
    fputs(" : ", f);
    print_type(f, n->out);
    fprintf(f, "  # %d:%d\n", n->loc.line, n->loc.col);
}

void print_ir(FILE *f, const Graph *g, bool with_grad)
{
    const TrainCfg *t = &g->train;
    fprintf(f, "; lamina IR %s: model %s, batch %lld (dimension 0 of every activation)\n",
            LAMINA_VERSION, g->name, (long long)t->batch);
    if (t->opt == OPT_SGD)
        fprintf(f, "; train: sgd(lr=%g, momentum=%g, nesterov=%s, weight_decay=%g)", t->lr,
                t->momentum, t->nesterov ? "true" : "false", t->weight_decay);
    else
        fprintf(f, "; train: adam(lr=%g, beta1=%g, beta2=%g, eps=%g, weight_decay=%g)", t->lr,
                t->beta1, t->beta2, t->eps, t->weight_decay);
    fprintf(f, " epochs=%lld seed=%llu init=%s scale=%g shift=%g\n", (long long)t->epochs,
            (unsigned long long)t->seed, init_name(t->init), t->scale, t->shift);
    for (int i = 0; i < g->tensors.len; i++) {
        const Tensor *x = g->tensors.items[i];
        const char *what = x->role == ROLE_INPUT    ? "input "
                           : x->role == ROLE_TARGET ? "target"
                           : x->role == ROLE_PARAM  ? "param "
                                                    : NULL;
        if (!what)
            continue;
        fprintf(f, "%s %c%s : ", what, sigil(x), x->name);
        print_type(f, x);
        if (x->role == ROLE_PARAM)
            fprintf(f, " init=%s fan_in=%lld fan_out=%lld", init_name(x->init),
                    (long long)x->fan_in, (long long)x->fan_out);
        fprintf(f, "  # %d:%d\n", x->loc.line, x->loc.col);
    }
    int last_layer = -1;
    int n = with_grad ? g->nodes.len : g->nforward;
    for (int i = 0; i < n; i++) {
        const Node *nd = g->nodes.items[i];
        if (i == g->nforward)
            fputs("\n; backward: gradients of the loss, in reverse\n", f);
        if (i < g->nforward && nd->layer != last_layer) {
            const Layer *ly = g->layers.items[nd->layer];
            fprintf(f, "\n; %s (%s), line %d\n", ly->name, ly->kind, ly->loc.line);
            last_layer = nd->layer;
        }
        for (int k = 0; k < nd->nnotes; k++)
            fprintf(f, "; %s\n", nd->note[k]);
        print_node(f, g, nd);
    }
    fputc('\n', f);
    if (g->output)
        fprintf(f, "output %%%s\n", g->output->name);
    if (g->loss)
        fprintf(f, "loss   %%%s\n", g->loss->name);
}

void print_dot(FILE *f, const Graph *g)
{
    char b[96];
    fprintf(f, "digraph \"%s\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
            g->name);
    for (int i = 0; i < g->tensors.len; i++) {
        const Tensor *t = g->tensors.items[i];
        if (t->role == ROLE_GRAD || t->role == ROLE_PGRAD)
            continue;
        const char *style = t->role == ROLE_PARAM ? ", style=filled, fillcolor=\"#eeeeee\"" : "";
        fprintf(f, "  t%d [shape=ellipse, label=\"%s\\n%s%s\"%s];\n", t->id, t->name,
                dtype_name(t->dtype), shape_str(&t->shape, b, sizeof b), style);
    }
    for (int i = 0; i < g->nforward; i++) {
        const Node *n = g->nodes.items[i];
        fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"#dde8f8\", "
                   "label=\"%s\"];\n", n->id, op_name(n->op));
        for (int k = 0; k < n->nin; k++)
            fprintf(f, "  t%d -> n%d;\n", n->in[k]->id, n->id);
        fprintf(f, "  n%d -> t%d;\n", n->id, n->out->id);
    }
    fputs("}\n", f);
}

/* a + b for counts a, b >= 0, saturating at INT64_MAX (FLOPs of absurd
 * but valid models do not fit). */
static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* 1234567 -> "1,234,567" */
static const char *commas(int64_t v, char *buf, size_t n)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? -v : v));
    size_t k = 0;
    if (v < 0 && k + 1 < n)
        buf[k++] = '-';
    for (int i = 0; i < len && k + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = tmp[i];
    }
    buf[k] = '\0';
    return buf;
}

static const char *bytes_text(int64_t bytes, char *buf, size_t n)
{
    if (bytes < 1024)
        snprintf(buf, n, "%lld B", (long long)bytes);
    else if (bytes < 1024 * 1024)
        snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
    else if (bytes < (int64_t)1024 * 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else
        snprintf(buf, n, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

/* The parameter count of every layer, in one pass over the parameters. */
static int64_t *layer_params(const Graph *g)
{
    int64_t *n = ARENA_ARRAY(g->arena, int64_t, g->layers.len + 1);
    for (int i = 0; i < g->params.len; i++) {
        const Tensor *t = g->params.items[i];
        if (t->layer >= 0 && t->layer < g->layers.len)
            n[t->layer] += shape_elems(&t->shape);
    }
    return n;
}

void print_summary(FILE *f, const Graph *g, const Plan *p)
{
    char b1[96], b2[48], b3[48], b4[48];
    int64_t batch = g->train.batch, total_params = 0, total_flops = 0, act_elems = 0;
    fprintf(f, "Model: %s   (batch %lld)\n", g->name, (long long)batch);
    const char *rule = "-----------------------------------------------------------------------------";
    fprintf(f, "%s\n%-34s %-16s %12s %13s\n%s\n", rule, "Layer (type)", "Output shape", "Params",
            "FLOPs/sample", rule);
    const int64_t *nparams = layer_params(g);
    for (int l = 0; l < g->layers.len; l++) {
        const Layer *ly = g->layers.items[l];
        int64_t params = nparams[l], flops = 0;
        for (int i = ly->first_node; i < ly->first_node + ly->nnodes; i++) {
            const Node *n = g->nodes.items[i];
            flops = add_sat(flops, op_info[n->op].flops(n));
        }
        if (ly->out && ly->out->role == ROLE_LOSS) {
            const Node *n = ly->out->def;
            flops = op_info[n->op].flops(n);
        }
        flops /= batch;
        total_params += params;
        total_flops = add_sat(total_flops, flops);
        char label[80];
        snprintf(label, sizeof label, "%s (%s)", ly->name, ly->kind);
        /* as written: a cropped output (rewrite.c) is marked, and told below */
        Shape s = ly->cropped ? ly->written : ly->out ? ly->out->shape : shape_of(0, NULL);
        if (s.rank > 0) { /* per sample */
            s.rank--;
            memmove(s.dim, s.dim + 1, sizeof(int64_t) * (size_t)s.rank);
        }
        if (ly->out)
            snprintf(b4, sizeof b4, "%s%s", shape_str(&s, b1, sizeof b1), ly->cropped ? "*" : "");
        fprintf(f, "%-34s %-16s %12s %13s\n", label, ly->out ? b4 : "?", commas(params, b2, sizeof b2),
                commas(flops, b3, sizeof b3));
    }
    for (int i = 0; i < g->tensors.len; i++) {
        const Tensor *t = g->tensors.items[i];
        if (t->role == ROLE_ACT || t->role == ROLE_INPUT)
            act_elems += shape_elems(&t->shape);
    }
    fprintf(f, "%s\n", rule);
    for (int l = 0; l < g->layers.len; l++) {
        const Layer *ly = g->layers.items[l];
        if (ly->cropped)
            fprintf(f, "* %s computes %lldx%lld of it, all that the pooling after it reads (--no-rewrite: all)\n",
                    ly->name, (long long)ly->out->shape.dim[2], (long long)ly->out->shape.dim[3]);
    }
    fprintf(f, "Total params:             %s (%s)\n", commas(total_params, b1, sizeof b1),
            bytes_text(4 * total_params, b2, sizeof b2));
    fprintf(f, "Forward FLOPs per sample: %s\n", commas(total_flops, b3, sizeof b3));
    if (g->has_grad) {
        /* The backward nodes (grad.c), as compiled: no input gradient for
         * the first layer unless --input-grad asked for it. */
        int64_t train_flops = 0;
        for (int i = g->nforward; i < g->nodes.len; i++) {
            const Node *n = g->nodes.items[i];
            train_flops = add_sat(train_flops, op_info[n->op].flops(n));
        }
        train_flops = add_sat(total_flops, train_flops / batch);
        fprintf(f, "Training FLOPs per sample: %s (forward and backward, not the optimizer's step)\n",
                commas(train_flops, b3, sizeof b3));
    }
    fprintf(f, "Activations at batch %lld: %s floats (%s)\n", (long long)batch,
            commas(act_elems, b4, sizeof b4), bytes_text(4 * act_elems, b1, sizeof b1));
    if (!p)
        return;
    fprintf(f, "Memory of one %s instance (the generated code's %s_size()):\n",
            p->training ? "training" : "inference", g->name);
    for (int k = 0; k < BUF_COUNT; k++)
        if (p->by_kind[k])
            fprintf(f, "  %-22s %14s floats %12s\n", bufkind_title((BufKind)k), commas(p->by_kind[k], b1, sizeof b1),
                    bytes_text(4 * p->by_kind[k], b2, sizeof b2));
    fprintf(f, "  %-22s %14s floats %12s  (activations, their gradients and scratch share it by liveness)\n",
            "work area", commas(p->work, b1, sizeof b1), bytes_text(4 * p->work, b2, sizeof b2));
    fprintf(f, "  %-22s %14s bytes  %12s\n", "total", commas(4 * p->total + PLAN_HEADER_BYTES, b1, sizeof b1),
            bytes_text(4 * p->total + PLAN_HEADER_BYTES, b2, sizeof b2));
}
