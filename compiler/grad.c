/*
 * grad.c — reverse-mode differentiation of the forward IR into IR.
 *
 * Walks the forward nodes from the loss back to the input and appends,
 * for each, the nodes that compute the gradients of its inputs from the
 * gradient of its output (the chain rule, one op at a time). Gradients
 * are only built for tensors that lead to a parameter (and for the input
 * when --input-grad asks for it), so the first layer's input gradient is
 * normally not computed at all. The result is ordinary IR, printed by
 * --emit=ir-grad and planned and emitted like the forward pass.
 *
 * Two pairs are differentiated as one: an activation followed by an
 * average pooling of side-by-side windows (grad_avgpool), so that the
 * gradient between the two is never stored; and a convolution followed
 * by a max pooling (grad_conv_maxpool), whose gradients are then sums
 * over the few elements the pooling passes its gradient to.
 *
 * The language makes chains, so every tensor on the loss path has one
 * consumer and one gradient; a graph with fan-out (skip connections)
 * would add an accumulating node here (the fusion above already checks
 * that the activation has one reader).
 */
#include "lamina.h"

#include <string.h>

/* Does t depend on a parameter (so that the loss's gradient reaches one),
 * or is it the input when its gradient was asked for? */
static bool needs_grad(const Tensor *t)
{
    if (t->role == ROLE_PARAM || (t->role == ROLE_INPUT && t->grad_wanted))
        return true;
    if (!t->def)
        return false;
    for (int i = 0; i < t->def->nin; i++)
        if (needs_grad(t->def->in[i]))
            return true;
    return false;
}

/* The gradient of t: a new tensor shaped like it. */
static Tensor *grad_of(Graph *g, Tensor *t)
{
    if (t->grad)
        die("internal: '%s' has two consumers; fan-out is not differentiated yet", t->name);
    Role role = t->role == ROLE_PARAM ? ROLE_PGRAD : ROLE_GRAD;
    Tensor *d = graph_tensor(g, arena_printf(g->arena, "%s.grad", t->name), role, t->shape,
                             t->loc);
    d->layer = t->layer;
    t->grad = d;
    return d;
}

/* Appends `out = op(ins...)`, out being the gradient of `of`. */
/* Appends `out = op(ins...)`, a backward node of forward node fwd (its
 * layer, its line). */
static void append(Graph *g, Op op, Tensor *out, Tensor **ins, int nin, Attrs a, const Node *fwd)
{
    a.of_node = fwd->id;
    Node *n = graph_node(g, op, ins, nin, a, fwd->loc);
    n->layer = fwd->layer;
    n->out = out;
    out->def = n;
}

static void emit_grad(Graph *g, Op op, Tensor *of, Tensor **ins, int nin, Attrs a,
                      const Node *fwd)
{
    append(g, op, grad_of(g, of), ins, nin, a, fwd);
}

/* y = x W^T + b (dense) or y = W * x + b (conv2d):
 *   dW = dy^T x (dense) or sum over samples of dy * x (conv2d)
 *   db = dy summed over all but the channel axis
 *   dx = dy W (dense) or the transposed convolution of dy with W */
void grad_affine(Graph *g, Node *n)
{
    bool conv = n->op == OP_CONV2D;
    Tensor *dy = n->out->grad, *x = n->in[0], *w = n->in[1];
    Tensor *dw_in[2] = {dy, x}, *db_in[1] = {dy};
    emit_grad(g, conv ? OP_CONV2D_DW : OP_DENSE_DW, w, dw_in, 2, n->attr, n);
    if (n->nin > 2) /* else a max pooling adds the bias (rewrite.c) */
        emit_grad(g, OP_BIAS_DB, n->in[2], db_in, 1, n->attr, n);
    if (needs_grad(x)) {
        Tensor *dx_in[2] = {dy, w};
        emit_grad(g, conv ? OP_CONV2D_DX : OP_DENSE_DX, x, dx_in, 2, n->attr, n);
    }
}

/* The convolution whose output max pooling n reads, when the two are
 * differentiated as one: the convolution's bias moved into the pooling
 * (rewrite.c), its output read by the pooling alone, the pooling without
 * padding. Each window passes its gradient to one element, so the
 * convolution's dW and dx are sums over the windows' maxima (a few of
 * y's elements) rather than products with a dy that is mostly zeros.
 * Only where that pays: the pooling passes on at most half of y, and a
 * window row of the convolution (KW x C floats) fills a vector; and where
 * the input gradient's lists of filters by window element, on the stack,
 * stay within 64 KiB (8 bytes per filter and element, and one more
 * element for "none"). Else, and without fusion (--no-rewrite), NULL. */
static const Node *conv_before_maxpool(const Graph *g, const Node *n)
{
    const Node *conv = n->in[0]->def;
    if (!g->fuse_grad || !conv || conv->op != OP_CONV2D || conv->nin != 2 || n->nin != 2 ||
        n->attr.pad[0] || n->attr.pad[1] || !tensor_only_read_by(g, conv->out, n))
        return NULL;
    const Shape *y = &conv->out->shape, *p = &n->out->shape, *x = &conv->in[0]->shape;
    const int64_t area = (int64_t)n->attr.kernel[0] * n->attr.kernel[1];
    if (2 * p->dim[2] * p->dim[3] > y->dim[2] * y->dim[3] || conv->attr.kernel[1] * x->dim[1] < 16 ||
        (area + 1) * y->dim[1] > 8192)
        return NULL;
    return conv;
}

/* conv2d then max pooling (conv_before_maxpool), y = pool(conv(x) ; b):
 *   r  = where each window passes its gradient: the element holding its
 *        first maximum, or none (relu: where that maximum is <= 0)
 *   db = dy summed over the windows that pass it on
 *   dW = sum over those windows of dy x's window at r
 *   dx = sum over those windows of dy W, placed at r
 * The route is found once for the three. The convolution's output then
 * has no gradient, and grad_build passes over the convolution. */
static void grad_conv_maxpool(Graph *g, Node *n, const Node *conv)
{
    Tensor *dy = n->out->grad, *y = n->in[0], *x = conv->in[0], *b = n->in[1];
    Tensor *r = graph_tensor(g, arena_printf(g->arena, "%s.route", y->name), ROLE_GRAD,
                             n->out->shape, n->loc);
    r->layer = n->layer;
    Tensor *route_in[2] = {y, b};
    append(g, OP_MAXPOOL_ROUTE, r, route_in, 2, n->attr, n);
    Tensor *db_in[2] = {dy, r}, *dw_in[3] = {dy, r, x}, *dx_in[3] = {dy, r, conv->in[1]};
    emit_grad(g, OP_MAXPOOL_DB, b, db_in, 2, n->attr, conv);
    emit_grad(g, OP_MAXPOOL_CONV2D_DW, conv->in[1], dw_in, 3, n->attr, conv);
    if (needs_grad(x))
        emit_grad(g, OP_MAXPOOL_CONV2D_DX, x, dx_in, 3, n->attr, conv);
}

/* dx routes each dy to the window's maximum, found again in x (with a
 * relu fused in, only where that maximum is positive). With a
 * convolution's bias moved in (rewrite.c), y = max(x + b): the maxima are
 * found again in x + b, and db is dx summed over all but the channel
 * axis, as the convolution's own bias gradient would be. */
void grad_maxpool(Graph *g, Node *n)
{
    const bool bias = n->nin > 1;
    Tensor *in[3] = {n->out->grad, n->in[0], bias ? n->in[1] : NULL};
    if (!needs_grad(n->in[0]))
        return;
    const Node *fused = conv_before_maxpool(g, n);
    if (fused) {
        grad_conv_maxpool(g, n, fused);
        return;
    }
    emit_grad(g, OP_MAXPOOL_DX, n->in[0], in, bias ? 3 : 2, n->attr, n);
    if (bias) { /* the convolution's bias: its layer, its line */
        const Node *conv = n->in[0]->def;
        Tensor *db_in[1] = {n->in[0]->grad};
        emit_grad(g, OP_BIAS_DB, n->in[1], db_in, 1, conv->attr, conv);
    }
}

/* What an activation's gradient reads besides dy: its output y where f'
 * is cheaper from y (sigmoid, tanh, softmax), its input x otherwise, so
 * that only one of the two must be kept for backward. */
static Tensor *act_dx_operand(const Node *act)
{
    bool uses_y = act->op == OP_SIGMOID || act->op == OP_TANH || act->op == OP_SOFTMAX;
    return uses_y ? act->out : act->in[0];
}

/* The elementwise activation whose output average pooling n reads, when
 * the two are differentiated in one loop: the pooling's windows side by
 * side (stride = kernel, no padding), so that each element of the
 * activation gets the share of one window, and the pooling the only
 * reader of the activation's output (not kept with --keep either). Else
 * NULL. */
static const Node *act_before_avgpool(const Graph *g, const Node *n)
{
    const Node *act = n->in[0]->def;
    if (!g->fuse_grad || !act || op_info[act->op].kind != OPK_ACT || act->op == OP_SOFTMAX ||
        !needs_grad(act->in[0]) || !tensor_only_read_by(g, act->out, n))
        return NULL;
    return windows_tiled(&n->attr) ? act : NULL;
}

/* dx spreads each dy evenly over its window. An activation before the
 * pooling (act_before_avgpool) is differentiated in the same loop:
 * dx_act = f'(y or x) * dy / (window size) elementwise, without the
 * pooling's dx ever being stored (a tensor as large as the activation,
 * written once and read once). The activation's node then has no output
 * gradient, and grad_build passes over it. */
void grad_avgpool(Graph *g, Node *n)
{
    const Node *act = act_before_avgpool(g, n);
    if (act) {
        Tensor *in[2] = {n->out->grad, act_dx_operand(act)};
        Attrs a = n->attr;
        a.of = act->op;
        a.alpha = act->attr.alpha;
        emit_grad(g, OP_AVGPOOL_ACT_DX, act->in[0], in, 2, a, n);
        return;
    }
    Tensor *in[1] = {n->out->grad};
    if (needs_grad(n->in[0]))
        emit_grad(g, OP_AVGPOOL_DX, n->in[0], in, 1, n->attr, n);
}

/* dx is dy seen in x's shape. */
void grad_flatten(Graph *g, Node *n)
{
    Tensor *in[1] = {n->out->grad};
    if (needs_grad(n->in[0]))
        emit_grad(g, OP_RESHAPE_DX, n->in[0], in, 1, n->attr, n);
}

/* dx = dy * mask / (1 - p), the mask drawn again from the same counter. */
void grad_dropout(Graph *g, Node *n)
{
    Tensor *in[1] = {n->out->grad};
    if (needs_grad(n->in[0]))
        emit_grad(g, OP_DROPOUT_DX, n->in[0], in, 1, n->attr, n);
}

/* dx = dy * f'(x), with f' written in terms of y or x (act_dx_operand). */
void grad_act(Graph *g, Node *n)
{
    if (!needs_grad(n->in[0]))
        return;
    Tensor *in[2] = {n->out->grad, act_dx_operand(n)};
    Attrs a = n->attr;
    a.of = n->op;
    emit_grad(g, OP_ACT_DX, n->in[0], in, 2, a, n);
}

void grad_build(Graph *g, bool fuse)
{
    Node *loss = g->loss_node;
    if (!loss || g->has_grad)
        return;
    g->has_grad = true;
    g->fuse_grad = fuse;
    /* d loss / d logits, the mean over the batch folded in. */
    Tensor *z = loss->in[0];
    if (needs_grad(z)) {
        Tensor *in[2] = {z, loss->in[1]};
        Attrs a = loss->attr;
        a.of = loss->op;
        emit_grad(g, OP_LOSS_DX, z, in, 2, a, loss);
    }
    for (int i = g->nforward - 1; i >= 0; i--) {
        Node *n = g->nodes.items[i];
        if (n != loss && n->out->grad)
            op_info[n->op].grad(g, n);
    }
}
