/*
 * plan.c — the memory plan: where every float of an instance lives.
 *
 * The compiler knows every shape, so it lays out all memory up front:
 *
 *   [ parameters | gradients | optimizer state | work ]
 *
 * Parameters, gradients and optimizer state are permanent and packed in
 * the parameter order (the checkpoint's order). The work area holds
 * activations, their gradients and per-node scratch (im2col columns);
 * each lives from the node that writes it to the last node that reads it,
 * in schedule order (forward, then backward), and buffers whose lifetimes
 * do not overlap share memory. In training most activations live until
 * backward reads them; with --inference-only the schedule is the forward
 * pass alone and the activations mostly reuse each other's memory. With
 * --threads N > 1 each of the N parts of a batch has a work area of its
 * own, laid out the same way (see split_in_parts).
 * Views (flatten, and its gradient) take their source's buffer.
 *
 * The emitter and --summary read sizes from here; nothing else decides
 * where memory is.
 */
#include "lamina.h"

#include <stdlib.h>
#include <string.h>

static int64_t round_up(int64_t n)
{
    return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

/* What the summary and the generated header call the buffers of kind k. */
const char *bufkind_title(BufKind k)
{
    static const char *const titles[BUF_COUNT] = {
        "parameters", "gradients", "optimizer state", "activations", "activation gradients",
        "scratch (one sample)"};
    return titles[k];
}

const char *bufkind_name(BufKind k)
{
    static const char *const names[BUF_COUNT] = {"param", "grad", "opt", "act", "dact",
                                                 "scratch"};
    return names[k];
}

int64_t plan_fold_size(const Node *n)
{
    if (n->op != OP_CONV2D_DX || n->attr.stride[0] != 1 || n->attr.stride[1] != 1)
        return 0;
    const Shape *dy = &n->in[0]->shape;
    const int64_t oh = dy->dim[2], ow = dy->dim[3], kh = n->attr.kernel[0], kw = n->attr.kernel[1];
    /* Not for 1x1 windows (nothing overlaps), nor where the fold would not
     * reach past the padding (a convolution cropped to a few rows or
     * columns, rewrite.c); a row of dx is summed in a local array of
     * OW + KW - 1 floats. */
    if ((kh == 1 && kw == 1) || oh + kh - 1 <= n->attr.pad[0] || ow + kw - 1 <= n->attr.pad[1] ||
        ow + kw - 1 > 1024)
        return 0;
    return kw * (oh + kh - 1) * ow;
}

int64_t plan_scratch_size(const Graph *g, const Node *n)
{
    /* A convolution through its max pooling (grad.c): one sample of x
     * channels last with its border of zeros, and W (or its gradient)
     * with the channels last. */
    if (n->op == OP_MAXPOOL_CONV2D_DW || n->op == OP_MAXPOOL_CONV2D_DX) {
        const Node *conv = g->nodes.items[n->attr.of_node];
        const Shape *x = &conv->in[0]->shape;
        return x->dim[1] * (x->dim[2] + 2 * conv->attr.pad[0]) * (x->dim[3] + 2 * conv->attr.pad[1]) +
               shape_elems(&conv->in[1]->shape);
    }
    /* A convolution's columns for one sample, [C*KH*KW, OH*OW]. */
    const Tensor *x, *y;
    switch (n->op) {
    case OP_CONV2D:
        x = n->in[0], y = n->out;
        break;
    case OP_CONV2D_DW:
        x = n->in[1], y = n->in[0];
        break;
    case OP_CONV2D_DX:
        x = n->out, y = n->in[0];
        break;
    default:
        return 0;
    }
    int64_t rows = x->shape.dim[1] * n->attr.kernel[0] * n->attr.kernel[1];
    int64_t cols = rows * y->shape.dim[2] * y->shape.dim[3];
    /* With padding, im2col also holds one sample's zero-bordered copy. */
    bool padded = n->attr.pad[0] > 0 || n->attr.pad[1] > 0;
    if (padded && n->op != OP_CONV2D_DX)
        cols += x->shape.dim[1] * (x->shape.dim[2] + 2 * n->attr.pad[0]) * (x->shape.dim[3] + 2 * n->attr.pad[1]);
    return cols + plan_fold_size(n);
}

/* Is t a view of another tensor? Returns the tensor it views, or NULL. */
static Tensor *view_of(const Tensor *t)
{
    if (t->def && (t->def->op == OP_FLATTEN || t->def->op == OP_RESHAPE_DX))
        return t->def->in[0];
    return NULL;
}

static Buffer *new_buffer(Graph *g, Plan *p, const char *name, BufKind kind, int64_t size)
{
    Buffer *b = ARENA_NEW(g->arena, Buffer);
    b->name = name;
    b->kind = kind;
    b->size = size;
    vec_push(g->arena, &p->bufs, b);
    return b;
}

static int by_size_desc(const void *a, const void *b)
{
    const Buffer *x = *(Buffer *const *)a, *y = *(Buffer *const *)b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->first - y->first; /* stable: the same plan on every run */
}

/* First fit by decreasing size: each buffer goes to the lowest offset
 * where it overlaps no placed buffer that is live at the same time. */
static int64_t place(Buffer **bufs, int n)
{
    qsort(bufs, (size_t)n, sizeof *bufs, by_size_desc);
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        Buffer *b = bufs[i];
        int64_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                const Buffer *o = bufs[j];
                bool live = b->first <= o->last && o->first <= b->last;
                bool hit = off < o->offset + round_up(o->size) && o->offset < off + round_up(b->size);
                if (live && hit) {
                    off = o->offset + round_up(o->size);
                    moved = true;
                }
            }
        }
        b->offset = off;
        if (off + round_up(b->size) > top)
            top = off + round_up(b->size);
    }
    return top;
}

/* With the batch in parts (--threads), each part runs a whole pass over its
 * samples without waiting for the others, so two buffers that liveness
 * lets share memory could be live at once in two parts. Each part gets an
 * area of its own instead, laid out by liveness like the one-part plan and
 * holding part_rows samples of each buffer that only the passes read
 * (activations, their gradients, scratch): the parts write nothing in
 * common, and each part's memory is as compact as a small batch's. What is
 * read as a whole batch after a pass (the output, the input's gradient,
 * kept layers) and the loss slots stay in a region before the areas, where
 * nothing shares memory. Offsets come out relative to the work area; a
 * buffer in the areas gets part 0's. */
static void split_in_parts(Graph *g, Plan *p, PtrVec *work)
{
    int nsched = p->training ? g->nodes.len : g->nforward;
    int64_t batch = g->train.batch;
    p->part_rows = (batch + p->threads - 1) / p->threads;
    PtrVec mine = {0}, ours = {0};
    /* read whole: the output, the input's gradient, kept layers; a view (a
     * kept flatten) marks its source's buffer */
    for (int k = 0; k < g->tensors.len; k++) {
        const Tensor *u = g->tensors.items[k];
        if ((u == g->output || u->keep || (p->training && u == g->input->grad)) && p->of_tensor[u->id])
            p->of_tensor[u->id]->read_whole = true;
    }
    for (int i = 0; i < work->len; i++) {
        Buffer *b = work->items[i];
        const Tensor *t = b->t;
        bool by_sample = t && t->role != ROLE_LOSS && t->shape.rank > 0 && t->shape.dim[0] == batch;
        if (t && (!by_sample || b->read_whole)) {
            b->first = 0; /* shared by the parts: lives throughout */
            b->last = nsched;
            vec_push(g->arena, &ours, b);
        } else {
            b->in_part = true;
            if (t) {
                b->sample = b->size / batch;
                b->size = b->sample * p->part_rows;
            }
            vec_push(g->arena, &mine, b);
        }
    }
    int64_t top = round_up(place((Buffer **)ours.items, ours.len));
    p->part_floats = round_up(place((Buffer **)mine.items, mine.len));
    for (int i = 0; i < mine.len; i++)
        ((Buffer *)mine.items[i])->offset += top;
    p->work = top + p->threads * p->part_floats;
}

Plan *plan_build(Graph *g, bool training, bool static_params, int threads)
{
    Plan *p = ARENA_NEW(g->arena, Plan);
    p->training = training && g->has_grad;
    p->static_params = static_params && !p->training;
    p->threads = threads < 1 ? 1 : threads > g->train.batch ? (int)g->train.batch : threads;
    p->of_tensor = ARENA_ARRAY(g->arena, Buffer *, g->tensors.len + 1);
    p->scratch_of = ARENA_ARRAY(g->arena, Buffer *, g->nodes.len + 1);
    int nsched = p->training ? g->nodes.len : g->nforward;

    /* Permanent: parameters, gradients, optimizer state. */
    int64_t off = 0;
    for (int i = 0; i < g->params.len; i++) {
        Tensor *t = g->params.items[i];
        Buffer *b = new_buffer(g, p, t->name, BUF_PARAM, shape_elems(&t->shape));
        b->t = t;
        b->offset = off;
        b->last = nsched;
        off += b->size;
        p->of_tensor[t->id] = b;
    }
    p->nparams = off;
    off = p->static_params ? 0 : round_up(off); /* static: offsets into the constants */
    if (p->training) {
        for (int i = 0; i < g->params.len; i++) {
            Tensor *t = g->params.items[i];
            Buffer *pb = p->of_tensor[t->id];
            Buffer *b = new_buffer(g, p, t->grad->name, BUF_GRAD, pb->size);
            b->t = t->grad;
            b->offset = off + pb->offset;
            b->last = nsched;
            p->of_tensor[t->grad->id] = b;
        }
        off += round_up(p->nparams);
        /* Parts 1.. of a batch (threads) add their gradients here first. */
        p->grad_stride = round_up(p->nparams);
        if (p->threads > 1) {
            Buffer *b = new_buffer(g, p, "grad.parts", BUF_GRAD, (p->threads - 1) * p->grad_stride);
            b->offset = off;
            b->last = nsched;
            off += b->size;
        }
        const TrainCfg *c = &g->train;
        if (c->opt == OPT_SGD && c->momentum > 0) {
            p->momentum = new_buffer(g, p, "momentum", BUF_OPT, p->nparams);
            p->momentum->offset = off;
            off += round_up(p->nparams);
        } else if (c->opt == OPT_ADAM) {
            p->adam_m = new_buffer(g, p, "adam.m", BUF_OPT, p->nparams);
            p->adam_m->offset = off;
            off += round_up(p->nparams);
            p->adam_v = new_buffer(g, p, "adam.v", BUF_OPT, p->nparams);
            p->adam_v->offset = off;
            off += round_up(p->nparams);
        }
    }
    int64_t work_base = off;

    /* Work: one buffer per computed tensor that is not a view, plus scratch. */
    PtrVec work = {0};
    for (int i = 0; i < nsched; i++) {
        Node *n = g->nodes.items[i];
        Tensor *t = n->out;
        Tensor *src = view_of(t);
        if (t->role == ROLE_PGRAD) {
            /* lives with the parameters */
        } else if (src) {
            p->of_tensor[t->id] = p->of_tensor[src->id];
        } else {
            /* The loss has a slot per part of the batch. */
            int64_t size = shape_elems(&t->shape) * (t->role == ROLE_LOSS ? p->threads : 1);
            Buffer *b = new_buffer(g, p, t->name, t->role == ROLE_GRAD ? BUF_DACT : BUF_ACT, size);
            b->t = t;
            b->first = b->last = i;
            p->of_tensor[t->id] = b;
            vec_push(g->arena, &work, b);
        }
        int64_t s = plan_scratch_size(g, n);
        if (s > 0) {
            Buffer *b = new_buffer(g, p, arena_printf(g->arena, "%s.col", t->name), BUF_SCRATCH, s);
            b->node = n;
            b->first = b->last = i;
            p->scratch_of[n->id] = b;
            vec_push(g->arena, &work, b);
        }
    }
    /* Lifetimes: a buffer lives until the last node that reads it (a
     * view's readers count for its source). The model's output lives to
     * the end of forward, where it is copied out. */
    for (int i = 0; i < nsched; i++) {
        Node *n = g->nodes.items[i];
        for (int k = 0; k < n->nin; k++) {
            Buffer *b = p->of_tensor[n->in[k]->id];
            if (b && b->kind != BUF_PARAM && b->kind != BUF_GRAD && b->last < i)
                b->last = i;
        }
    }
    if (p->training && g->input->grad) { /* read by the caller after backward */
        Buffer *b = p->of_tensor[g->input->grad->id];
        b->last = nsched;
    }
    /* Layers asked for by name (--keep) live to the end of forward too, so
     * that NAME_activation can read them after a forward pass. */
    for (int i = 0; i < g->tensors.len; i++) {
        Tensor *t = g->tensors.items[i];
        Buffer *b = p->of_tensor[t->id];
        if (t->keep && b && b->kind == BUF_ACT && b->last < g->nforward)
            b->last = g->nforward;
    }
    if (g->output && p->of_tensor[g->output->id]) {
        Buffer *b = p->of_tensor[g->output->id];
        if (b->last < g->nforward)
            b->last = g->nforward;
    }
    if (p->threads > 1)
        split_in_parts(g, p, &work);
    else
        p->work = place((Buffer **)work.items, work.len);
    for (int i = 0; i < work.len; i++) {
        Buffer *b = work.items[i];
        b->offset += work_base;
    }
    p->total = work_base + p->work;
    for (int i = 0; i < p->bufs.len; i++) {
        const Buffer *b = p->bufs.items[i];
        if (!(p->static_params && b->kind == BUF_PARAM))
            p->by_kind[b->kind] += b->size * (b->in_part ? p->threads : 1);
    }
    return p;
}

void print_plan(FILE *f, const Graph *g, const Plan *p)
{
    fprintf(f, "; memory plan: model %s, %s, batch %lld; offsets and sizes in floats\n", g->name,
            p->training ? "training" : "inference only", (long long)g->train.batch);
    if (p->threads > 1)
        fprintf(f, "; the batch in %d parts of at most %lld samples: a buffer marked 'part' has\n"
                   "; one in each part's area, part 0's at the offset shown, the next %lld floats on\n",
                p->threads, (long long)p->part_rows, (long long)p->part_floats);
    fprintf(f, "; %-28s %-8s %12s %12s  %s\n", "buffer", "kind", "offset", "floats", "live");
    for (int i = 0; i < p->bufs.len; i++) {
        const Buffer *b = p->bufs.items[i];
        fprintf(f, "%-30s %-8s %12lld %12lld", b->name, bufkind_name(b->kind),
                (long long)b->offset, (long long)b->size);
        if (b->kind == BUF_PARAM || b->kind == BUF_GRAD || b->kind == BUF_OPT)
            fputs("  always\n", f);
        else
            fprintf(f, "  %d..%d%s\n", b->first, b->last, b->in_part ? " part" : "");
    }
    fprintf(f, "; total %lld floats = %lld bytes (work area, shared by liveness: %lld floats)\n",
            (long long)p->total, (long long)p->total * 4, (long long)p->work);
}
