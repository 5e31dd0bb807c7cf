/*
 * rewrite.c — exact rewrites of the forward IR, before differentiation.
 *
 * One so far: an activation that is only read by a max pooling moves
 * after it when the two commute exactly,
 *
 *     %a = relu(%x)               %p.pre = maxpool(%x)
 *     %p = maxpool(%a)      ->    %p     = relu(%p.pre)
 *
 * relu is monotone, so max(relu(x)) = relu(max(x)) value for value, and
 * the gradients agree too: where the window's maximum is positive, its
 * first maximum is the same element in x and in relu(x) and relu' is 1
 * there; where it is not, relu' is 0 in both orders. The activation then
 * runs on the pooled tensor (a quarter of the elements for 2x2 windows),
 * and the large pre-pooling activation and its gradient are never stored:
 * for the Keras-style CNN that is two passes over its largest tensor in
 * each direction. tanh and sigmoid are monotone too, but not strictly in
 * float (distinct inputs round to the same output, and a tie would move
 * the gradient to another element), so only relu is moved.
 *
 * The tensors keep their names: %p stays the pooling layer's output, the
 * moved node keeps its source location, and print.c notes the move.
 */
#include "lamina.h"

/* Is t read by node `by` only, and not wanted by anyone after the pass? */
static bool only_read_by(const Graph *g, const Tensor *t, const Node *by)
{
    if (t->keep || t == g->output)
        return false;
    for (int i = 0; i < g->nforward; i++) {
        const Node *n = g->nodes.items[i];
        if (n == by)
            continue;
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] == t)
                return false;
    }
    return true;
}

/* relu(x) then maxpool  ->  maxpool(x) then relu, in place: the two nodes
 * swap ops, the activation's tensor becomes the pooling's "pre" output,
 * and the activation node moves from its layer to the pooling's. */
static void move_relu_after_maxpool(Graph *g, Node *act, Node *pool)
{
    Layer *from = g->layers.items[act->layer], *to = g->layers.items[pool->layer];
    Tensor *x = act->in[0], *mid = act->out, *y = pool->out;
    const Attrs act_attr = act->attr, pool_attr = pool->attr;
    const Loc act_loc = act->loc, pool_loc = pool->loc;

    mid->name = arena_printf(g->arena, "%s.pre", y->name);
    mid->shape = y->shape;
    mid->loc = pool_loc;
    mid->layer = pool->layer;

    act->op = OP_MAXPOOL;
    act->attr = pool_attr;
    act->loc = pool_loc;
    act->layer = pool->layer;
    act->in[0] = x;

    pool->op = OP_RELU;
    pool->attr = act_attr;
    pool->loc = act_loc;
    pool->in[0] = mid;
    pool->note = arena_printf(g->arena, "%s's relu, moved after the max pooling: relu(max x) = max(relu x)",
                              from->name);

    from->nnodes--;
    from->out = x;
    to->first_node--;
    to->nnodes++;
}

void rewrite_forward(Graph *g)
{
    for (int i = 0; i + 1 < g->nforward; i++) {
        Node *act = g->nodes.items[i], *next = g->nodes.items[i + 1];
        if (act->op == OP_RELU && next->op == OP_MAXPOOL && next->in[0] == act->out &&
            act->layer != next->layer && only_read_by(g, act->out, next))
            move_relu_after_maxpool(g, act, next);
    }
}
