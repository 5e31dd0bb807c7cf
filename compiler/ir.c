/*
 * ir.c — the graph: tensors and the nodes that compute them.
 *
 * Construction only. Nodes are appended in a topological order (each
 * node's inputs exist before it), which every later pass relies on; shape
 * rules live in ops.c, meaning in lower.c and grad.c.
 */
#include "lamina.h"

#include <string.h>

Graph *graph_new(Arena *a)
{
    Graph *g = ARENA_NEW(a, Graph);
    g->arena = a;
    return g;
}

Tensor *graph_tensor(Graph *g, const char *name, Role role, Shape s, Loc at)
{
    Tensor *t = ARENA_NEW(g->arena, Tensor);
    t->id = g->tensors.len;
    t->name = name;
    t->role = role;
    t->dtype = DT_F32;
    t->shape = s;
    t->loc = at;
    t->layer = g->layers.len - 1;
    vec_push(g->arena, &g->tensors, t);
    if (role == ROLE_PARAM)
        vec_push(g->arena, &g->params, t);
    return t;
}

Node *graph_node(Graph *g, Op op, Tensor **in, int nin, Attrs attr, Loc at)
{
    Node *n = ARENA_NEW(g->arena, Node);
    n->id = g->nodes.len;
    n->seq = n->id;
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    n->attr = attr;
    n->loc = at;
    n->layer = g->layers.len - 1;
    vec_push(g->arena, &g->nodes, n);
    return n;
}

Shape shape_of(int rank, const int64_t *dims)
{
    Shape s;
    memset(&s, 0, sizeof s);
    s.rank = rank;
    for (int i = 0; i < rank; i++)
        s.dim[i] = dims[i];
    return s;
}

/* Is t read by forward node `by` only, and not wanted after the pass (the
 * output, a layer kept with --keep)? */
bool tensor_only_read_by(const Graph *g, const Tensor *t, const Node *by)
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

bool windows_tiled(const Attrs *a)
{
    return a->stride[0] == a->kernel[0] && a->stride[1] == a->kernel[1] && !a->pad[0] && !a->pad[1];
}

void node_note(Graph *g, Node *n, const char *fmt, ...)
{
    if (n->nnotes == LM_MAX_NOTES)
        die("internal error: more than %d notes on node %d", LM_MAX_NOTES, n->id);
    va_list ap;
    va_start(ap, fmt);
    n->note[n->nnotes++] = arena_vprintf(g->arena, fmt, ap);
    va_end(ap);
}

int64_t shape_elems(const Shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->dim[i];
    return n;
}

char *shape_str(const Shape *s, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < s->rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)s->dim[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
    return buf;
}
