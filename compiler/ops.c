/*
 * ops.c — the op table: for every operation of the IR, its name, arity,
 * kind, shape rule and FLOP count.
 *
 * Rows come from LM_OPS in lamina.h, so the enum, the names and this table
 * cannot drift apart. A shape rule checks what its inputs must be and
 * reports a located error when they are not; it never trusts lower.c to
 * have checked. Shapes in messages are per sample (the batch dimension
 * is left out), as the user wrote them.
 */
#include "lamina.h"

#include <string.h>

/* "[16,5,5]": an activation's shape without its batch dimension. */
static const char *sample(const Shape *s, char *buf, size_t n)
{
    Shape t = *s;
    if (t.rank > 0) {
        t.rank--;
        memmove(t.dim, t.dim + 1, sizeof(int64_t) * (size_t)t.rank);
    }
    return shape_str(&t, buf, n);
}

static bool same_shape(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

static bool shape_dense(const Node *n, Shape *out, Diag *d)
{
    const Shape *x = &n->in[0]->shape, *w = &n->in[1]->shape;
    char b[64];
    if (x->rank != 2) {
        diag_error(d, n->loc, "dense needs a flat input, but its input has shape %s",
                   sample(x, b, sizeof b));
        diag_note(d, (Loc){0, 0, 0}, "add 'flatten;' before this layer");
        return false;
    }
    int64_t dims[2] = {x->dim[0], w->dim[0]};
    *out = shape_of(2, dims);
    return true;
}

/* The output size of a window of k, stride s, padding p over n, or 0 when
 * the window does not fit. */
static int64_t window_out(int64_t n, int k, int s, int p)
{
    int64_t span = n + 2 * (int64_t)p;
    return span < k ? 0 : (span - k) / s + 1;
}

static bool shape_window(const Node *n, const char *what, int64_t channels, Shape *out, Diag *d)
{
    const Shape *x = &n->in[0]->shape;
    const Attrs *a = &n->attr;
    char b[64];
    if (x->rank != 4) {
        diag_error(d, n->loc, "%s needs an input [channels, height, width], but gets %s",
                   op_name(n->op), sample(x, b, sizeof b));
        if (x->rank == 2)
            diag_note(d, (Loc){0, 0, 0}, "a flat input cannot be convolved or pooled; "
                                         "declare the input as [channels, height, width]");
        return false;
    }
    int64_t oh = window_out(x->dim[2], a->kernel[0], a->stride[0], a->pad[0]);
    int64_t ow = window_out(x->dim[3], a->kernel[1], a->stride[1], a->pad[1]);
    if (oh == 0 || ow == 0) {
        char padded[64] = "";
        if (a->pad[0] || a->pad[1]) {
            char by[32];
            if (a->pad[0] == a->pad[1])
                snprintf(by, sizeof by, "%d", a->pad[0]);
            else
                snprintf(by, sizeof by, "[%d,%d]", a->pad[0], a->pad[1]);
            snprintf(padded, sizeof padded, ", padded by %s to %lldx%lld", by,
                     (long long)(x->dim[2] + 2 * (int64_t)a->pad[0]),
                     (long long)(x->dim[3] + 2 * (int64_t)a->pad[1]));
        }
        diag_error(d, n->loc, "%s %s %dx%d does not fit its input %s%s", op_name(n->op), what,
                   a->kernel[0], a->kernel[1], sample(x, b, sizeof b), padded);
        if (n->in[0]->role == ROLE_INPUT && (x->dim[3] == 1 || x->dim[3] == 3) &&
            x->dim[1] > x->dim[3])
            diag_note(d, (Loc){0, 0, 0}, "an input is [channels, height, width]; is this one "
                                         "written [height, width, channels]?");
        return false;
    }
    int64_t dims[4] = {x->dim[0], channels, oh, ow};
    *out = shape_of(4, dims);
    return true;
}

static bool shape_conv2d(const Node *n, Shape *out, Diag *d)
{
    const Shape *x = &n->in[0]->shape, *w = &n->in[1]->shape;
    if (x->rank == 4 && x->dim[1] != w->dim[1]) {
        diag_error(d, n->loc, "conv2d weight expects %lld input channels, but the input has %lld",
                   (long long)w->dim[1], (long long)x->dim[1]);
        return false;
    }
    return shape_window(n, "kernel", w->dim[0], out, d);
}

static bool shape_pool(const Node *n, Shape *out, Diag *d)
{
    const Shape *x = &n->in[0]->shape;
    return shape_window(n, "window", x->rank == 4 ? x->dim[1] : 0, out, d);
}

static bool shape_flatten(const Node *n, Shape *out, Diag *d)
{
    (void)d;
    const Shape *x = &n->in[0]->shape;
    int64_t dims[2] = {x->dim[0], 1};
    for (int i = 1; i < x->rank; i++)
        dims[1] *= x->dim[i];
    *out = shape_of(2, dims);
    return true;
}

static bool shape_same(const Node *n, Shape *out, Diag *d)
{
    (void)d;
    *out = n->in[0]->shape;
    return true;
}

static bool shape_softmax(const Node *n, Shape *out, Diag *d)
{
    char b[64];
    if (n->in[0]->shape.rank != 2) {
        diag_error(d, n->loc, "softmax needs a flat input [features], but gets %s",
                   sample(&n->in[0]->shape, b, sizeof b));
        diag_note(d, (Loc){0, 0, 0}, "add 'flatten;' before it");
        return false;
    }
    *out = n->in[0]->shape;
    return true;
}

static bool scalar(Shape *out)
{
    *out = shape_of(0, NULL);
    return true;
}

static bool shape_softmax_ce(const Node *n, Shape *out, Diag *d)
{
    const Shape *z = &n->in[0]->shape;
    char b[64];
    if (z->rank != 2) {
        diag_error(d, n->loc, "softmax_cross_entropy needs a flat output [classes], but the "
                   "model's output has shape %s", sample(z, b, sizeof b));
        diag_note(d, (Loc){0, 0, 0}, "end the model with 'flatten;' and a dense layer with "
                                     "one unit per class");
        return false;
    }
    if (z->dim[1] < 2) {
        diag_error(d, n->loc, "softmax_cross_entropy needs at least 2 output units (one per "
                   "class), but the model's output has %lld", (long long)z->dim[1]);
        diag_note(d, (Loc){0, 0, 0}, "for one output unit use 'loss sigmoid_bce;'");
        return false;
    }
    return scalar(out);
}

static bool shape_compare(const Node *n, Shape *out, Diag *d)
{
    const Shape *y = &n->in[0]->shape, *t = &n->in[1]->shape;
    char b1[64], b2[64];
    if (!same_shape(y, t)) {
        diag_error(d, n->loc, "%s compares the output %s with the target '%s' %s: the shapes "
                   "differ", op_name(n->op), sample(y, b1, sizeof b1), n->in[1]->name,
                   sample(t, b2, sizeof b2));
        if (shape_elems(y) == shape_elems(t))
            diag_note(d, (Loc){0, 0, 0}, "they have as many elements; declare the input flat "
                                         "(e.g. input x[%lld]) to compare them",
                      (long long)(shape_elems(y) / (y->rank ? y->dim[0] : 1)));
        return false;
    }
    return scalar(out);
}

static bool shape_perceptron(const Node *n, Shape *out, Diag *d)
{
    const Shape *s = &n->in[0]->shape;
    char b[64];
    if (s->rank != 2 || s->dim[1] != 1) {
        diag_error(d, n->loc, "the perceptron loss needs one output unit, but the model's "
                   "output has shape %s", sample(s, b, sizeof b));
        return false;
    }
    return scalar(out);
}

/* FLOPs, counting a multiply-add as 2, a comparison or exp as 1. */
static int64_t flops_elems(const Node *n)
{
    return shape_elems(&n->in[0]->shape);
}

/* a * b for counts a, b >= 0, saturating at INT64_MAX: shapes are bounded
 * (LM_MAX_ELEMS), their FLOP counts need not fit. */
static int64_t mul_sat(int64_t a, int64_t b)
{
    return a != 0 && b > INT64_MAX / a ? INT64_MAX : a * b;
}

static int64_t flops_dense(const Node *n)
{
    const Shape *x = &n->in[0]->shape, *w = &n->in[1]->shape;
    return mul_sat(x->dim[0] * w->dim[0], 2 * w->dim[1] + 1);
}

static int64_t flops_conv2d(const Node *n)
{
    const Shape *w = &n->in[1]->shape, *y = &n->out->shape;
    /* + 1 for the bias, unless rewrite.c moved it into a max pooling */
    return mul_sat(shape_elems(y), 2 * w->dim[1] * w->dim[2] * w->dim[3] + (n->nin > 2));
}

static int64_t flops_pool(const Node *n)
{
    /* + 1 for a convolution's bias moved in (rewrite.c) */
    return mul_sat(shape_elems(&n->out->shape), (int64_t)n->attr.kernel[0] * n->attr.kernel[1] + (n->nin > 1));
}

static int64_t flops_zero(const Node *n)
{
    (void)n;
    return 0;
}

/* Backward ops, from the shapes of what they make or read. The gradient
 * products (dW = dy^T x and dx = dy W for a dense layer, and a
 * convolution's two) take a multiply-add for every term of the forward
 * product: as many FLOPs as it each. */
static int64_t flops_dense_dw(const Node *n) /* dy[N,O], x[N,I] -> dW[O,I] */
{
    return mul_sat(2 * shape_elems(&n->out->shape), n->in[0]->shape.dim[0]);
}

static int64_t flops_dense_dx(const Node *n) /* dy[N,O], W[O,I] -> dx[N,I] */
{
    return mul_sat(2 * shape_elems(&n->out->shape), n->in[1]->shape.dim[0]);
}

static int64_t flops_conv2d_dw(const Node *n) /* dy[N,F,OH,OW], x -> dW[F,C,KH,KW] */
{
    const Shape *dy = &n->in[0]->shape;
    return mul_sat(2 * shape_elems(&n->out->shape), shape_elems(dy) / dy->dim[1]);
}

static int64_t flops_conv2d_dx(const Node *n) /* dy[N,F,OH,OW], W[F,C,KH,KW] -> dx */
{
    const Shape *w = &n->in[1]->shape;
    return mul_sat(2 * shape_elems(&n->in[0]->shape), shape_elems(w) / w->dim[0]);
}

/* A conv2d's gradients through the max pooling after it (grad.c): one
 * window's worth per gradient the pooling passes on, dy[N,F,OHP,OWP], at
 * most (windows that pass 0 are skipped); conv2d_dw and conv2d_dx count
 * one per element of the convolution's output. The weight gradient's
 * count is conv2d_dw's with that dy. (The route, r, counts as the
 * pooling's forward.) */
static int64_t flops_maxpool_conv2d_dx(const Node *n) /* dy, r, W -> dx */
{
    const Shape *w = &n->in[2]->shape;
    return mul_sat(2 * shape_elems(&n->in[0]->shape), shape_elems(w) / w->dim[0]);
}

/* A pooling's gradient: its window per dy, as forward. */
static int64_t flops_pool_dx(const Node *n)
{
    return mul_sat(shape_elems(&n->in[0]->shape), (int64_t)n->attr.kernel[0] * n->attr.kernel[1]);
}

/* An activation's gradient: 2 per element, f' and the product. (The
 * loss's gradient counts as the loss, 4 per element: flops_loss.) */
static int64_t flops_act_dx(const Node *n)
{
    return 2 * flops_elems(n);
}

/* An average pooling's gradient and its activation's, in one loop: the
 * two counts above, the activation's per element of dx. */
static int64_t flops_avgpool_act_dx(const Node *n)
{
    return flops_pool_dx(n) + 2 * shape_elems(&n->out->shape);
}

static int64_t flops_softmax(const Node *n)
{
    return 4 * flops_elems(n);
}

static int64_t flops_loss(const Node *n)
{
    return 4 * flops_elems(n);
}

const OpInfo op_info[OP_COUNT] = {
#define X(id, name, nin, kind, shape, flops, grad, emit) [OP_##id] = {name, nin, kind, shape, flops, grad, emit},
    LM_OPS(X)
#undef X
};

const char *op_name(Op op)
{
    return op >= 0 && op < OP_COUNT ? op_info[op].name : "?";
}
