/*
 * lamina.h — the compiler's one internal header.
 *
 * Sections follow the pipeline: util.c, diag.c, ast.c (built by the
 * grammar), ops.c (the op table), ir.c, lower.c (AST -> checked IR),
 * print.c (--emit=ir/dot, --summary), grad.c, plan.c, emit_c.c, main.c.
 * Nothing here is visible to generated code: that sees only
 * runtime/lamina_rt.h.
 */
#ifndef LAMINA_H
#define LAMINA_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LAMINA_VERSION "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define LM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LM_NORETURN __attribute__((noreturn))
#else
#define LM_PRINTF(f, a)
#define LM_NORETURN
#endif

/* ---- util.c ------------------------------------------------------------ */

/* Every allocation of the compiler comes from one arena, freed at exit. */
typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n); /* zeroed; dies on out-of-memory */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) LM_PRINTF(2, 3);
char *arena_vprintf(Arena *a, const char *fmt, va_list ap);
#define ARENA_NEW(a, T) ((T *)arena_alloc((a), sizeof(T)))
#define ARENA_ARRAY(a, T, n) ((T *)arena_alloc((a), sizeof(T) * (size_t)(n)))

LM_NORETURN void die(const char *fmt, ...) LM_PRINTF(1, 2);
void *xrealloc(void *p, size_t n);

/* A growable array of pointers (kept in the arena once frozen). */
typedef struct PtrVec {
    void **items;
    int len, cap;
} PtrVec;
void vec_push(Arena *a, PtrVec *v, void *p);

/* A growable text buffer; used by the printers and the emitter. */
typedef struct Buf {
    char *s;
    size_t len, cap;
} Buf;
void buf_printf(Buf *b, const char *fmt, ...) LM_PRINTF(2, 3);
void buf_vprintf(Buf *b, const char *fmt, va_list ap);
void buf_puts(Buf *b, const char *s);
void buf_free(Buf *b);
/* Writes b to path; false after a message on stderr naming the file. */
bool write_text_file(const char *path, const Buf *b);

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
int utf8_len(const unsigned char *s, size_t n);

/* Damerau-free Levenshtein distance, for "did you mean" hints. */
int edit_distance(const char *a, const char *b);
/* The closest of names[0..n) to s, or NULL if none is close enough. */
const char *closest_name(const char *s, const char *const *names, int n);

/* ---- diag.c -------------------------------------------------------------- */

/* A source span: 1-based line and column of its first byte, and the column
 * one past its last byte on the same line (end_col == col for a point). */
typedef struct Loc {
    int line, col, end_col;
} Loc;

typedef struct Source {
    const char *path;
    const char *text; /* NUL-terminated copy of the file */
    size_t len;
} Source;

typedef struct Diag {
    const Source *src;
    FILE *out;
    int errors, warnings;
    int max_errors; /* stop reporting (not checking) after this many */
} Diag;

void diag_init(Diag *d, const Source *src, FILE *out);
/* "file:line:col: error: msg", the source line, carets under the span. */
void diag_error(Diag *d, Loc at, const char *fmt, ...) LM_PRINTF(3, 4);
void diag_warning(Diag *d, Loc at, const char *fmt, ...) LM_PRINTF(3, 4);
/* A note attached to the last error or warning; at.line == 0: no location. */
void diag_note(Diag *d, Loc at, const char *fmt, ...) LM_PRINTF(3, 4);
/* Reads a whole file; on failure prints "laminac: cannot read 'p': why". */
bool source_read(Source *src, Arena *a, const char *path);

/* ---- ast.c (built by grammar/parser.y) ---------------------------------- */

typedef enum ValueKind {
    VAL_INT,   /* i (and f = (double)i) */
    VAL_FLOAT, /* f */
    VAL_WORD,  /* s: a bare identifier such as same, valid, true, he */
    VAL_LIST   /* items[0..nitems): [a, b, ...] */
} ValueKind;

typedef struct Value Value;
struct Value {
    ValueKind kind;
    Loc loc;
    int64_t i;
    double f;
    const char *s;
    Value **items;
    int nitems;
    bool bad; /* a number the lexer already reported: checks stay quiet */
};

/* One argument of a call: `6`, `kernel=5`, `pad=same`. key is NULL when
 * the argument is positional. */
typedef struct Arg {
    const char *key;
    Loc key_loc;
    Value *value;
} Arg;

/* `word` or `word(args)`: a layer kind with its arguments, an activation
 * after a layer, an optimizer, an initialiser. */
typedef struct Call {
    const char *word;
    Loc loc;
    bool has_args;
    Loc args_loc; /* the '(' */
    Arg *args;
    int nargs;
} Call;

/* One statement of a block. The grammar is uniform; lower.c gives each
 * statement its meaning:
 *   conv2d c1(6, kernel=5) tanh;  head=conv2d name=c1 args acts=[tanh]
 *   dense(10) softmax;            head=dense  name=NULL
 *   input x[1, 28, 28];           head=input  name=x  shape=[1,28,28]
 *   loss mse;                     head=loss   name=mse
 *   optimizer sgd(lr=0.1);        head=optimizer name=sgd args
 *   batch 64;                     head=batch  value=64                 */
typedef struct Stmt {
    Loc loc; /* of the head word */
    Call head;
    const char *name;
    Loc name_loc;
    Value *shape; /* VAL_LIST or NULL */
    Value *value; /* or NULL */
    Call *acts;
    int nacts;
} Stmt;

/* `model NAME { ... }` or `train { ... }` */
typedef struct Block {
    const char *kind;
    Loc loc;
    const char *name; /* may be NULL */
    Loc name_loc;
    Stmt **stmts;
    int nstmts;
} Block;

typedef struct Program {
    Block **blocks;
    int nblocks;
} Program;

#define LM_MAX_NEST 64

/* The parser's context: passed to every grammar action. */
typedef struct ParseCtx {
    Arena *arena;
    Diag *diag;
    void *scanner;
    PtrVec blocks;
    /* Open brackets, innermost last, for "to close '{'" notes. Nesting is
     * bounded: deeper input ends the parse with an error, and depth -1. */
    int depth;
    Loc last; /* the last token, for errors at the end of the file */
    Loc prev; /* the token before it, for "missing ';'" at a line's end */
    char open_ch[LM_MAX_NEST];
    Loc open_loc[LM_MAX_NEST];
} ParseCtx;

/* Parses src into a Program; syntax errors go to diag. Never NULL. */
Program *parse_program(Arena *a, Diag *d, const Source *src);

/* Builders called from grammar actions. */
Value *ast_int(ParseCtx *cx, Loc at, int64_t i);
Value *ast_float(ParseCtx *cx, Loc at, double f);
Value *ast_word(ParseCtx *cx, Loc at, const char *s);
Value *ast_list(ParseCtx *cx, Loc at, PtrVec *items);
Value *ast_negate(ParseCtx *cx, Loc minus, Value *v);
PtrVec *ast_vec(ParseCtx *cx);
void ast_push(ParseCtx *cx, PtrVec *v, void *p);
Arg *ast_arg(ParseCtx *cx, const char *key, Loc key_loc, Value *v);
Call *ast_call(ParseCtx *cx, const char *word, Loc at, bool has_args, Loc args_at,
               PtrVec *args);
Stmt *ast_stmt(ParseCtx *cx);
Stmt *ast_stmt_name(ParseCtx *cx, Stmt *s, const char *name, Loc at);
Stmt *ast_stmt_call(ParseCtx *cx, Stmt *s, Loc args_at, PtrVec *args, PtrVec *acts);
Stmt *ast_stmt_shape(ParseCtx *cx, Stmt *s, Value *shape);
Stmt *ast_stmt_head(ParseCtx *cx, Stmt *s, const char *head, Loc at);
Stmt *ast_stmt_value(ParseCtx *cx, const char *head, Loc at, Value *v);
Block *ast_block(ParseCtx *cx, Loc at, const char *kind, const char *name, Loc name_at,
                 PtrVec *stmts);
void ast_add_block(ParseCtx *cx, Block *b);


/* ---- ops.c: the op table ------------------------------------------------ */

#define LM_MAX_RANK 4
#define LM_MAX_IN 4
/* The largest tensor the compiler accepts: generated code indexes with
 * int, so every tensor has fewer than 2^31 elements. */
#define LM_MAX_ELEMS ((int64_t)INT32_MAX)

typedef struct Shape {
    int rank;
    int64_t dim[LM_MAX_RANK];
} Shape;

/* Every operation of the IR, forward and backward, one row each:
 *   X(ID, "name", inputs, kind, shape rule, FLOP count, gradient rule, C emitter)
 * The enum, the names and the table in ops.c are all expanded from these
 * rows, so they cannot drift apart; adding an op is adding a row and its
 * functions (shape and FLOPs in ops.c, gradient in grad.c, C in emit_c.c).
 * A shape rule of 0: the op's builder sets the shape (backward ops take it
 * from the tensor they differentiate). A gradient rule of 0: the op is
 * itself part of the backward pass. `inputs` is the count as lowered:
 * rewrite.c can move a conv2d's bias (its third input) into the maxpool
 * that reads it, as that pooling's second input, and then maxpool_dx
 * takes it as a third. */
#define LM_OPS(X)                                                                                      \
    /* forward: layers */                                                                              \
    X(DENSE, "dense", 3, OPK_LAYER, shape_dense, flops_dense, grad_affine, emit_dense)                  \
    X(CONV2D, "conv2d", 3, OPK_LAYER, shape_conv2d, flops_conv2d, grad_affine, emit_conv2d)             \
    X(MAXPOOL, "maxpool", 1, OPK_LAYER, shape_pool, flops_pool, grad_maxpool, emit_maxpool)             \
    X(AVGPOOL, "avgpool", 1, OPK_LAYER, shape_pool, flops_pool, grad_avgpool, emit_avgpool)             \
    X(FLATTEN, "flatten", 1, OPK_LAYER, shape_flatten, flops_zero, grad_flatten, emit_view)             \
    X(DROPOUT, "dropout", 1, OPK_LAYER, shape_same, flops_elems, grad_dropout, emit_dropout)            \
    /* forward: activations, elementwise (softmax: over the last axis) */                             \
    X(STEP, "step", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                            \
    X(SIGMOID, "sigmoid", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                      \
    X(TANH, "tanh", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                            \
    X(RELU, "relu", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                            \
    X(LEAKY_RELU, "leaky_relu", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                \
    X(ELU, "elu", 1, OPK_ACT, shape_same, flops_elems, grad_act, emit_act)                              \
    X(SOFTMAX, "softmax", 1, OPK_ACT, shape_softmax, flops_softmax, grad_act, emit_softmax)             \
    /* forward: losses, the mean over the batch, a scalar */                                           \
    X(SOFTMAX_CE, "softmax_cross_entropy", 2, OPK_LOSS, shape_softmax_ce, flops_loss, 0, emit_loss)     \
    X(SIGMOID_BCE, "sigmoid_bce", 2, OPK_LOSS, shape_compare, flops_loss, 0, emit_loss)                 \
    X(MSE, "mse", 2, OPK_LOSS, shape_compare, flops_loss, 0, emit_loss)                                 \
    X(PERCEPTRON, "perceptron", 2, OPK_LOSS, shape_perceptron, flops_loss, 0, emit_loss)                \
    /* backward; the output of each is a gradient */                                                   \
    X(DENSE_DX, "dense_dx", 2, OPK_GRAD, 0, flops_dense_dx, 0, emit_dense_dx)      /* dy[N,O], W -> dx */   \
    X(DENSE_DW, "dense_dw", 2, OPK_GRAD, 0, flops_dense_dw, 0, emit_dense_dw)      /* dy, x -> dW[O,I] */   \
    X(BIAS_DB, "bias_db", 1, OPK_GRAD, 0, flops_elems, 0, emit_bias_db)            /* dy -> db[O] */        \
    X(CONV2D_DX, "conv2d_dx", 2, OPK_GRAD, 0, flops_conv2d_dx, 0, emit_conv2d_dx)  /* dy, W -> dx */        \
    X(CONV2D_DW, "conv2d_dw", 2, OPK_GRAD, 0, flops_conv2d_dw, 0, emit_conv2d_dw)  /* dy, x -> dW */        \
    X(MAXPOOL_DX, "maxpool_dx", 2, OPK_GRAD, 0, flops_pool_dx, 0, emit_maxpool_dx) /* dy, x[, b] -> dx */   \
    /* a conv2d and the max pooling after it, differentiated as one (grad.c) */                    \
    X(MAXPOOL_ROUTE, "maxpool_route", 2, OPK_GRAD, 0, flops_pool, 0, emit_maxpool_route) /* y, b -> r */ \
    X(MAXPOOL_DB, "maxpool_db", 2, OPK_GRAD, 0, flops_elems, 0, emit_maxpool_db)   /* dy, r -> db */        \
    X(MAXPOOL_CONV2D_DW, "maxpool_conv2d_dw", 3, OPK_GRAD, 0, flops_conv2d_dw, 0,                       \
      emit_maxpool_conv2d_dw)                                     /* dy, r, x -> dW */              \
    X(MAXPOOL_CONV2D_DX, "maxpool_conv2d_dx", 3, OPK_GRAD, 0, flops_maxpool_conv2d_dx, 0,               \
      emit_maxpool_conv2d_dx)                                     /* dy, r, W -> dx */              \
    X(AVGPOOL_DX, "avgpool_dx", 1, OPK_GRAD, 0, flops_pool_dx, 0, emit_avgpool_dx) /* dy -> dx */           \
    X(AVGPOOL_ACT_DX, "avgpool_act_dx", 2, OPK_GRAD, 0, flops_avgpool_act_dx, 0,                       \
      emit_avgpool_act_dx)                                        /* dy, y (or x) -> the act's dx */ \
    X(RESHAPE_DX, "reshape_dx", 1, OPK_GRAD, 0, flops_zero, 0, emit_view)          /* dy -> dx, a view */   \
    X(DROPOUT_DX, "dropout_dx", 1, OPK_GRAD, 0, flops_elems, 0, emit_dropout_dx)   /* dy -> dx */           \
    X(ACT_DX, "act_dx", 2, OPK_GRAD, 0, flops_act_dx, 0, emit_act_dx)              /* dy, y (or x) -> dx */ \
    X(LOSS_DX, "loss_dx", 2, OPK_GRAD, 0, flops_loss, 0, emit_loss_dx)             /* z, target -> dz */

typedef enum OpKind { OPK_LAYER, OPK_ACT, OPK_LOSS, OPK_GRAD } OpKind;

typedef enum Op {
#define X(id, name, nin, kind, shape, flops, grad, emit) OP_##id,
    LM_OPS(X)
#undef X
        OP_COUNT
} Op;

/* Attributes of a node; which fields mean something depends on the op. */
typedef struct Attrs {
    int64_t units;     /* dense: output features; conv2d: filters */
    int kernel[2];     /* conv2d, pools: window height, width */
    int stride[2];     /* conv2d, pools */
    int pad[2];        /* conv2d, pools: zero (avg) / -inf (max) padding */
    double alpha;      /* leaky_relu, elu */
    double p;          /* dropout: probability of zeroing */
    Op of;             /* ACT_DX, LOSS_DX: the forward op differentiated;
                          AVGPOOL_ACT_DX: the activation before the pooling */
    int of_node;       /* backward ops: the forward node they differentiate
                          (MAXPOOL_CONV2D_*: the conv2d; their other
                          attributes are the pooling's) */
    bool relu;         /* maxpool: y = relu(max), a relu fused in (rewrite.c) */
} Attrs;

/* ---- ir.c ---------------------------------------------------------------- */

typedef enum Role {
    ROLE_INPUT,  /* the model's input batch, [N, ...] */
    ROLE_TARGET, /* labels (int32 [N]) or targets (float, like the output) */
    ROLE_PARAM,  /* a trainable parameter, PyTorch's layout */
    ROLE_ACT,    /* an activation computed by forward */
    ROLE_LOSS,   /* the scalar mean loss */
    ROLE_GRAD,   /* a gradient of the loss w.r.t. an activation */
    ROLE_PGRAD   /* a gradient of the loss w.r.t. a parameter */
} Role;

typedef enum DType { DT_F32, DT_I32 } DType;

typedef enum Init {
    INIT_DEFAULT, /* PyTorch's Linear/Conv2d default */
    INIT_XAVIER_UNIFORM,
    INIT_XAVIER_NORMAL,
    INIT_HE_UNIFORM,
    INIT_HE_NORMAL,
    INIT_ZEROS
} Init;

typedef struct Node Node;
typedef struct Tensor Tensor;

#define LM_MAX_NOTES 3

struct Tensor {
    int id;
    const char *name; /* "x", "c1.weight", "c1", "c1.tanh", "d.c1" */
    Role role;
    DType dtype;
    Shape shape; /* activations: dim[0] is the batch */
    Node *def;   /* producing node, or NULL for inputs and parameters */
    Loc loc;     /* the source that made this tensor */
    Init init;   /* parameters */
    int64_t fan_in, fan_out; /* parameters: for initialisers */
    Tensor *grad;            /* once grad.c ran: dLoss/dthis */
    bool grad_wanted;        /* the input, with --input-grad */
    bool keep;               /* a layer output kept to the end of forward (--keep) */
    int layer;               /* index into Graph.layers */
};

struct Node {
    int id;
    int seq; /* its id as first made, which rewrites keep: numbers dropout's stream */
    Op op;
    Tensor *in[LM_MAX_IN];
    int nin;
    Tensor *out;
    Attrs attr;
    Loc loc;
    int layer; /* the source layer (statement) this node belongs to */
    /* What the rewrites (rewrite.c) changed here and why, one line each */
    const char *note[LM_MAX_NOTES];
    int nnotes;
};

/* A source-level layer, for --summary and the emitter's comments. */
typedef struct Layer {
    const char *name; /* c1, or generated: dense_1, relu_2 */
    const char *kind; /* conv2d, dense, ... and its activations: "conv2d+tanh" */
    Loc loc;
    int first_node, nnodes; /* its forward nodes, contiguous */
    Tensor *out;            /* its last output (NULL if its shape failed) */
    Shape written;          /* out's shape as written, where rewrite.c cropped it */
    bool cropped;
} Layer;

typedef enum OptKind { OPT_SGD, OPT_ADAM } OptKind;

typedef struct TrainCfg {
    int64_t batch, epochs;
    uint64_t seed;
    OptKind opt;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    bool nesterov;
    Init init;
    double scale, shift; /* input pixel scaling: x = raw * scale + shift */
} TrainCfg;

typedef struct Graph {
    Arena *arena;
    const char *name;
    Loc loc;
    TrainCfg train;
    PtrVec tensors; /* Tensor*, in creation order */
    PtrVec nodes;   /* Node*, forward then backward, topological */
    PtrVec params;  /* Tensor* with ROLE_PARAM, in layer order */
    PtrVec layers;  /* Layer* */
    Tensor *input, *target, *output, *loss;
    Node *loss_node;
    int nforward; /* nodes[0..nforward) are the forward pass */
    bool has_grad;
    bool fuse_grad;  /* grad_build may fuse (see there) */
    bool input_grad; /* also differentiate with respect to the input */
} Graph;

Graph *graph_new(Arena *a);
Tensor *graph_tensor(Graph *g, const char *name, Role role, Shape s, Loc at);
Node *graph_node(Graph *g, Op op, Tensor **in, int nin, Attrs attr, Loc at);
int64_t shape_elems(const Shape *s);
/* Is t read by forward node `by` only, and not wanted after the pass? */
bool tensor_only_read_by(const Graph *g, const Tensor *t, const Node *by);
/* A pooling's (or convolution's) windows lie side by side: stride =
 * kernel, no padding (grad.c fuses on it, emit_c.c emits for it). */
bool windows_tiled(const Attrs *a);
/* Adds a line to n's notes (at most LM_MAX_NOTES). */
void node_note(Graph *g, Node *n, const char *fmt, ...) LM_PRINTF(3, 4);
Shape shape_of(int rank, const int64_t *dims);
/* "[64,6,28,28]" into buf (at least 64 bytes); returns buf. */
char *shape_str(const Shape *s, char *buf, size_t n);

/* ---- ops.c ---------------------------------------------------------------- */

struct Emitter;
typedef struct OpInfo {
    const char *name;
    int nin;
    OpKind kind;
    /* Infers n->out's shape from n->in[] and n->attr. On a shape error it
     * reports at n->loc through d and returns false. */
    bool (*shape)(const Node *n, Shape *out, Diag *d);
    /* Forward FLOPs at the node's shapes, for --summary. */
    int64_t (*flops)(const Node *n);
    /* Appends the backward nodes of forward node n to g (grad.c). */
    void (*grad)(Graph *g, Node *n);
    /* Writes n's C: a function and its call (emit_c.c). */
    void (*emit)(struct Emitter *e, const Node *n);
} OpInfo;

extern const OpInfo op_info[OP_COUNT];

/* The gradient rules (grad.c) and emitters (emit_c.c) named in the rows. */
void grad_affine(Graph *g, Node *n);
void grad_maxpool(Graph *g, Node *n);
void grad_avgpool(Graph *g, Node *n);
void grad_flatten(Graph *g, Node *n);
void grad_dropout(Graph *g, Node *n);
void grad_act(Graph *g, Node *n);
#define X(id, name, nin, kind, shape, flops, grad, emit) void emit(struct Emitter *e, const Node *n);
LM_OPS(X)
#undef X
const char *op_name(Op op);

/* ---- lower.c: AST -> checked IR ------------------------------------------ */

/* Builds and shape-checks the graph. Returns NULL when errors were
 * reported (all of them: it keeps going after the first). */
/* batch > 0 overrides the train block's batch size (laminac --batch). */
Graph *lower_program(Arena *a, Diag *d, const Program *p, bool need_loss, int64_t batch);
const char *init_name(Init i);

/* ---- print.c -------------------------------------------------------------- */

void print_ir(FILE *f, const Graph *g, bool with_grad);
void print_dot(FILE *f, const Graph *g);
struct Plan;
void print_summary(FILE *f, const Graph *g, const struct Plan *p);

/* ---- plan.c --------------------------------------------------------------- */

typedef enum BufKind {
    BUF_PARAM,   /* parameters, PyTorch's layouts, one after another */
    BUF_GRAD,    /* their gradients, the same layout */
    BUF_OPT,     /* optimizer state: momentum, or Adam's two moments */
    BUF_ACT,     /* activations (forward) */
    BUF_DACT,    /* gradients of activations (backward) */
    BUF_SCRATCH, /* a node's temporary, e.g. im2col columns */
    BUF_COUNT
} BufKind;

/* One region of the instance's memory, in floats from its start. */
typedef struct Buffer {
    const char *name; /* for the plan dump and the emitter's macros */
    BufKind kind;
    Tensor *t;        /* the tensor it holds, or NULL (scratch, opt state) */
    Node *node;       /* scratch: the node that uses it */
    int64_t offset, size;
    int first, last;  /* live from node first to node last (schedule order) */
    bool in_part;     /* --threads: in each part's own area (offset: part 0's) */
    bool read_whole;  /* --threads: holds a tensor read after the pass as a
                       * whole batch (the output, a kept layer, the input's
                       * gradient), so the parts share it (plan.c) */
    int64_t sample;   /* in_part: floats a sample (0: not by sample, scratch) */
} Buffer;

typedef struct Plan {
    bool training;
    bool static_params; /* --embed-weights --inference-only: parameters live in
                         * a static const array, not in the instance */
    int threads;        /* parts a batch is split in (laminac --threads, at most
                         * the batch size); 1: no parts */
    int64_t grad_stride; /* floats from one part's parameter gradients to the next */
    int64_t part_rows;   /* threads > 1: the most samples a part takes */
    int64_t part_floats; /* threads > 1: floats from one part's area to the next */
    PtrVec bufs;                /* Buffer*: parameters first, then the rest */
    Buffer **of_tensor;         /* by tensor id; NULL: the caller's (input, target) */
    Buffer **scratch_of;        /* by node id; NULL if the node needs none */
    Buffer *momentum, *adam_m, *adam_v; /* optimizer state (NULL if none) */
    int64_t nparams;            /* floats */
    int64_t by_kind[BUF_COUNT]; /* floats each kind needs (shared: as laid out) */
    int64_t work;               /* floats of activations + their gradients + scratch */
    int64_t total;              /* floats in all */
} Plan;

enum { PLAN_ALIGN = 16 }; /* floats: 64 bytes, a cache line */
/* Bytes of the generated struct before its float memory (lr, step, seed,
 * padding): emit_c.c lays the struct out to match. */
enum { PLAN_HEADER_BYTES = 64 };

/* static_params: the parameters are compiled in as constants (only
 * without training): the instance holds the work area alone. */
Plan *plan_build(Graph *g, bool training, bool static_params, int threads);
void print_plan(FILE *f, const Graph *g, const Plan *p);
/* The scratch floats a node needs (0: none). */
int64_t plan_scratch_size(const Graph *g, const Node *n);
/* A stride-1 conv2d_dx's planes for its col2im's sums over the kernel's
 * rows (emit_c.c), after the columns in its scratch; 0 for the others. */
int64_t plan_fold_size(const Node *n);
const char *bufkind_title(BufKind k);
const char *bufkind_name(BufKind k);

/* ---- emit_c.c ------------------------------------------------------------- */

typedef struct EmitOptions {
    const char *prefix;     /* symbol prefix; default: the model's name */
    const char *source;     /* the model file, for comments */
    bool inference_only;
    const char *embed_weights; /* a checkpoint to compile in as static const data */
} EmitOptions;

/* Writes dir/<prefix>.h and dir/<prefix>.c. Returns false (with a message
 * on stderr) if a file cannot be written. */
bool emit_c(const Graph *g, const Plan *p, const EmitOptions *o, const char *dir);

/* ---- emit_main.c ---------------------------------------------------------- */

/* Writes dir/<prefix>_main.c: a complete program (train, eval, predict)
 * around the generated model. Returns false after a message on stderr. */
bool emit_main(const Graph *g, const Plan *p, const EmitOptions *o, const char *dir);

/* ---- verify.c --------------------------------------------------------------- */

/* Parses dir/<prefix>.c with libclang and checks it (see verify.c).
 * Prints what it finds; returns false on any problem. Without libclang
 * support built in, says so and returns false. */
bool verify_c(const char *dir, const char *prefix, const char *runtime_include);
/* Was laminac built with libclang (make LIBCLANG=1)? */
bool verify_available(void);

/* ---- rewrite.c ------------------------------------------------------------ */

/* Exact rewrites of the forward nodes (a relu, and a convolution's bias,
 * read only by a max pooling are applied to its maxima). Runs after --keep
 * marked the layers that must stay. */
void rewrite_forward(Graph *g);

/* ---- grad.c --------------------------------------------------------------- */

/* Appends the backward pass to g: reverse-mode differentiation of the
 * forward nodes into IR. Sets every parameter's grad tensor. With fuse,
 * an activation read only by an average pooling of side-by-side windows
 * is differentiated together with it (one avgpool_act_dx node); without,
 * op by op, as --no-rewrite asks. */
void grad_build(Graph *g, bool fuse);

#endif
