/*
 * ast.c — the builders that grammar actions call.
 *
 * Each builder makes one AST node in the parser's arena and returns it.
 * They check nothing about meaning (that is lower.c's job); they only
 * keep locations and shapes of the syntax.
 */
#include "lamina.h"

#include <string.h>

static Value *value(ParseCtx *cx, ValueKind kind, Loc at)
{
    Value *v = ARENA_NEW(cx->arena, Value);
    v->kind = kind;
    v->loc = at;
    return v;
}

Value *ast_int(ParseCtx *cx, Loc at, int64_t i)
{
    Value *v = value(cx, VAL_INT, at);
    v->i = i;
    v->f = (double)i;
    return v;
}

Value *ast_float(ParseCtx *cx, Loc at, double f)
{
    Value *v = value(cx, VAL_FLOAT, at);
    v->f = f;
    return v;
}

Value *ast_word(ParseCtx *cx, Loc at, const char *s)
{
    Value *v = value(cx, VAL_WORD, at);
    v->s = s;
    return v;
}

Value *ast_list(ParseCtx *cx, Loc at, PtrVec *items)
{
    Value *v = value(cx, VAL_LIST, at);
    v->items = (Value **)items->items;
    v->nitems = items->len;
    return v;
}

/* `-` number: the span grows to cover the sign. */
Value *ast_negate(ParseCtx *cx, Loc minus, Value *v)
{
    (void)cx;
    v->i = -v->i;
    v->f = -v->f;
    if (v->loc.line == minus.line) {
        v->loc.end_col = v->loc.end_col;
        v->loc.col = minus.col;
    }
    return v;
}

PtrVec *ast_vec(ParseCtx *cx)
{
    return ARENA_NEW(cx->arena, PtrVec);
}

void ast_push(ParseCtx *cx, PtrVec *v, void *p)
{
    vec_push(cx->arena, v, p);
}

Arg *ast_arg(ParseCtx *cx, const char *key, Loc key_loc, Value *v)
{
    Arg *a = ARENA_NEW(cx->arena, Arg);
    a->key = key;
    a->key_loc = key ? key_loc : v->loc;
    a->value = v;
    return a;
}

/* Arrays of structs are copied out of the pointer vectors so that later
 * passes index them directly. */
static Arg *args_array(ParseCtx *cx, PtrVec *args, int *n)
{
    *n = args ? args->len : 0;
    Arg *out = ARENA_ARRAY(cx->arena, Arg, *n ? *n : 1);
    for (int i = 0; i < *n; i++)
        out[i] = *(Arg *)args->items[i];
    return out;
}

Call *ast_call(ParseCtx *cx, const char *word, Loc at, bool has_args, Loc args_at,
               PtrVec *args)
{
    Call *c = ARENA_NEW(cx->arena, Call);
    c->word = word;
    c->loc = at;
    c->has_args = has_args;
    c->args_loc = args_at;
    c->args = args_array(cx, args, &c->nargs);
    return c;
}

Stmt *ast_stmt(ParseCtx *cx)
{
    return ARENA_NEW(cx->arena, Stmt);
}

Stmt *ast_stmt_name(ParseCtx *cx, Stmt *s, const char *name, Loc at)
{
    (void)cx;
    s->name = name;
    s->name_loc = at;
    return s;
}

Stmt *ast_stmt_call(ParseCtx *cx, Stmt *s, Loc args_at, PtrVec *args, PtrVec *acts)
{
    s->head.has_args = true;
    s->head.args_loc = args_at;
    s->head.args = args_array(cx, args, &s->head.nargs);
    s->nacts = acts->len;
    s->acts = ARENA_ARRAY(cx->arena, Call, s->nacts ? s->nacts : 1);
    for (int i = 0; i < s->nacts; i++)
        s->acts[i] = *(Call *)acts->items[i];
    return s;
}

Stmt *ast_stmt_shape(ParseCtx *cx, Stmt *s, Value *shape)
{
    (void)cx;
    s->shape = shape;
    return s;
}

Stmt *ast_stmt_head(ParseCtx *cx, Stmt *s, const char *head, Loc at)
{
    (void)cx;
    s->loc = at;
    s->head.word = head;
    s->head.loc = at;
    return s;
}

Stmt *ast_stmt_value(ParseCtx *cx, const char *head, Loc at, Value *v)
{
    Stmt *s = ast_stmt_head(cx, ast_stmt(cx), head, at);
    s->value = v;
    return s;
}

Block *ast_block(ParseCtx *cx, Loc at, const char *kind, const char *name, Loc name_at,
                 PtrVec *stmts)
{
    Block *b = ARENA_NEW(cx->arena, Block);
    b->kind = kind;
    b->loc = at;
    b->name = name;
    b->name_loc = name_at;
    b->stmts = (Stmt **)stmts->items;
    b->nstmts = stmts->len;
    return b;
}

void ast_add_block(ParseCtx *cx, Block *b)
{
    vec_push(cx->arena, &cx->blocks, b);
}
