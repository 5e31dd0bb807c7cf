/*
 * lower.c — from the AST to a checked IR graph.
 *
 * This pass gives statements their meaning: which words are layers,
 * activations, losses and settings, which attributes each takes, their
 * types, ranges and defaults (the tables below are the language's
 * reference), the names of parameters and tensors, and the shape of every
 * tensor (through the op table's shape rules). Every problem is reported
 * with its location and the pass keeps going, so one run shows them all;
 * once a layer's shape fails, later layers are still checked for
 * everything but shape, so one mistake does not cascade.
 */
#include "lamina.h"

#include <math.h>
#include <string.h>

static const Loc NOWHERE = {0, 0, 0};

/* ---- attribute tables --------------------------------------------------- */

typedef enum AttrType {
    AT_INT,   /* an integer in [min, max] */
    AT_FLOAT, /* a number in [min, max]; max_open: max itself excluded */
    AT_PAIR,  /* an integer or [height, width] */
    AT_PAD,   /* AT_PAIR, or the words same / valid */
    AT_BOOL,  /* true or false */
    AT_INIT,  /* an initialiser name */
    AT_TENSOR /* the name of a tensor of the model */
} AttrType;

typedef struct AttrSpec {
    const char *name;
    AttrType type;
    int pos; /* positional index, or -1: by name only */
    bool required;
    double min, max;
    bool max_open;
    const char *what; /* for "needs 'filters' (the number of ...)" */
} AttrSpec;

enum { MAX_ATTRS = 6 };
#define BIG 1e30
#define NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const AttrSpec dense_attrs[] = {
    {"units", AT_INT, 0, true, 1, 1 << 24, false, "the number of output features"},
    {"init", AT_INIT, -1, false, 0, 0, false, "the weight initialiser"},
};
static const AttrSpec conv2d_attrs[] = {
    {"filters", AT_INT, 0, true, 1, 1 << 16, false, "the number of output channels"},
    {"kernel", AT_PAIR, 1, true, 1, 1 << 16, false, "the kernel size"},
    {"stride", AT_PAIR, -1, false, 1, 1 << 16, false, "the stride"},
    {"pad", AT_PAD, -1, false, 0, 1 << 16, false, "the zero padding"},
    {"init", AT_INIT, -1, false, 0, 0, false, "the weight initialiser"},
};
static const AttrSpec pool_attrs[] = {
    {"size", AT_PAIR, 0, true, 1, 1 << 16, false, "the window size"},
    {"stride", AT_PAIR, -1, false, 1, 1 << 16, false, "the stride"},
    {"pad", AT_PAD, -1, false, 0, 1 << 16, false, "the padding"},
};
static const AttrSpec dropout_attrs[] = {
    {"p", AT_FLOAT, 0, true, 0, 1, true, "the probability of zeroing a unit"},
};
static const AttrSpec leaky_attrs[] = {
    {"alpha", AT_FLOAT, 0, false, 0, 1e6, false, "the slope for negative inputs"},
};
static const AttrSpec elu_attrs[] = {
    {"alpha", AT_FLOAT, 0, false, 0, 1e6, false, "the saturation value for negative inputs"},
};
static const AttrSpec target_attrs[] = {
    {"target", AT_TENSOR, -1, false, 0, 0, false, "the tensor the output is compared with"},
};
static const AttrSpec sgd_attrs[] = {
    {"lr", AT_FLOAT, 0, false, 0, 1e6, false, "the learning rate"},
    {"momentum", AT_FLOAT, -1, false, 0, 1, true, "the momentum"},
    {"nesterov", AT_BOOL, -1, false, 0, 0, false, "Nesterov momentum"},
    {"weight_decay", AT_FLOAT, -1, false, 0, 1e6, false, "the L2 penalty"},
};
static const AttrSpec adam_attrs[] = {
    {"lr", AT_FLOAT, 0, false, 0, 1e6, false, "the learning rate"},
    {"beta1", AT_FLOAT, -1, false, 0, 1, true, "the first moment's decay"},
    {"beta2", AT_FLOAT, -1, false, 0, 1, true, "the second moment's decay"},
    {"eps", AT_FLOAT, -1, false, 0, 1, false, "the denominator's guard"},
    {"weight_decay", AT_FLOAT, -1, false, 0, 1e6, false, "the L2 penalty"},
};

/* The statements of a model block. */
typedef enum LayerKind { L_INPUT, L_DENSE, L_CONV2D, L_MAXPOOL, L_AVGPOOL, L_FLATTEN,
                         L_DROPOUT, L_ACT, L_LOSS } LayerKind;

typedef struct LayerSpec {
    const char *word;
    LayerKind kind;
    Op op;
    const AttrSpec *attrs;
    int nattrs;
} LayerSpec;

static const LayerSpec layer_specs[] = {
    {"input", L_INPUT, OP_COUNT, NULL, 0},
    {"dense", L_DENSE, OP_DENSE, dense_attrs, NARGS(dense_attrs)},
    {"conv2d", L_CONV2D, OP_CONV2D, conv2d_attrs, NARGS(conv2d_attrs)},
    {"maxpool", L_MAXPOOL, OP_MAXPOOL, pool_attrs, NARGS(pool_attrs)},
    {"avgpool", L_AVGPOOL, OP_AVGPOOL, pool_attrs, NARGS(pool_attrs)},
    {"flatten", L_FLATTEN, OP_FLATTEN, NULL, 0},
    {"dropout", L_DROPOUT, OP_DROPOUT, dropout_attrs, NARGS(dropout_attrs)},
    {"step", L_ACT, OP_STEP, NULL, 0},
    {"sigmoid", L_ACT, OP_SIGMOID, NULL, 0},
    {"tanh", L_ACT, OP_TANH, NULL, 0},
    {"relu", L_ACT, OP_RELU, NULL, 0},
    {"leaky_relu", L_ACT, OP_LEAKY_RELU, leaky_attrs, NARGS(leaky_attrs)},
    {"elu", L_ACT, OP_ELU, elu_attrs, NARGS(elu_attrs)},
    {"softmax", L_ACT, OP_SOFTMAX, NULL, 0},
    {"loss", L_LOSS, OP_COUNT, NULL, 0},
};

typedef struct LossSpec {
    const char *word;
    Op op;
    const AttrSpec *attrs;
    int nattrs;
} LossSpec;

static const LossSpec loss_specs[] = {
    {"softmax_cross_entropy", OP_SOFTMAX_CE, NULL, 0},
    {"sigmoid_bce", OP_SIGMOID_BCE, target_attrs, NARGS(target_attrs)},
    {"mse", OP_MSE, target_attrs, NARGS(target_attrs)},
    {"perceptron", OP_PERCEPTRON, NULL, 0},
};

static const char *const init_names[] = {
    [INIT_DEFAULT] = "default",        [INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [INIT_XAVIER_NORMAL] = "xavier_normal", [INIT_HE_UNIFORM] = "he_uniform",
    [INIT_HE_NORMAL] = "he_normal",    [INIT_ZEROS] = "zeros",
};

/* The statements of a train block. */
typedef enum SettingKind { S_BATCH, S_EPOCHS, S_SEED, S_OPTIMIZER, S_INIT, S_SCALE,
                           S_SHIFT, S_COUNT } SettingKind;

static const char *const setting_names[S_COUNT] = {
    "batch", "epochs", "seed", "optimizer", "init", "scale", "shift",
};

const char *init_name(Init i)
{
    return init_names[i];
}

/* ---- the pass's state ---------------------------------------------------- */

typedef struct Lower {
    Arena *arena;
    Diag *d;
    Graph *g;
    Tensor *cur;      /* the running activation, NULL once a shape failed */
    bool shape_ok;    /* no shape error yet: later shape errors are real */
    bool broken;      /* a statement the parser could not read: what is missing
                       * may be in it, so absences are not reported */
    const Stmt *first_stmt, *input_stmt, *loss_stmt;
    int counts[NARGS(layer_specs)]; /* per kind, for generated names */
    Layer **names;                  /* the layers by name (find_named) */
    uint32_t names_cap, names_len;
} Lower;

/* A number as a message shows it: 16777216, 0.5, 1e-08. */
static const char *num_text(Lower *L, double x)
{
    return arena_printf(L->arena, "%.15g", x);
}

/* "2.5", "'same'", "a list of 3": a value as a message shows it. */
static const char *describe(Lower *L, const Value *v)
{
    switch (v->kind) {
    case VAL_INT: return arena_printf(L->arena, "%lld", (long long)v->i);
    case VAL_FLOAT: /* 1e3 is shown as 1000.0: a float, not an integer */
        return v->f == (double)(int64_t)v->f && v->f > -1e15 && v->f < 1e15
                   ? arena_printf(L->arena, "%.1f", v->f)
                   : num_text(L, v->f);
    case VAL_WORD: return arena_printf(L->arena, "'%s'", v->s);
    case VAL_LIST: return arena_printf(L->arena, "a list of %d", v->nitems);
    }
    return "?";
}

static const char *type_text(AttrType t)
{
    switch (t) {
    case AT_INT: return "an integer";
    case AT_FLOAT: return "a number";
    case AT_PAIR: return "an integer or [height, width]";
    case AT_PAD: return "an integer, [height, width], 'same' or 'valid'";
    case AT_BOOL: return "true or false";
    case AT_INIT: return "an initialiser name";
    case AT_TENSOR: return "the name of a tensor";
    }
    return "?";
}

/* "a, b and c" */
static const char *name_list(Lower *L, const char *const *names, int n)
{
    Buf b = {0};
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i == 0 ? "" : i == n - 1 ? " and " : ", ", names[i]);
    const char *s = arena_strdup(L->arena, b.s ? b.s : "");
    buf_free(&b);
    return s;
}

/* Whether a and b differ by two neighbouring letters swapped (tahn, tanh). */
static bool swapped(const char *a, const char *b)
{
    size_t n = strlen(a), i = 0;
    if (n != strlen(b))
        return false;
    while (i < n && a[i] == b[i])
        i++;
    return i + 1 < n && a[i] == b[i + 1] && a[i + 1] == b[i] && !strcmp(a + i + 2, b + i + 2);
}

/* Words other frameworks use for what lamina calls otherwise. */
static const char *const aliases[][2] = {
    {"linear", "dense"},         {"fc", "dense"},           {"conv", "conv2d"},
    {"conv2D", "conv2d"},        {"maxpool2d", "maxpool"},  {"max_pool", "maxpool"},
    {"avgpool2d", "avgpool"},    {"avg_pool", "avgpool"},   {"padding", "pad"},
    {"kernel_size", "kernel"},   {"strides", "stride"},     {"out_channels", "filters"},
    {"out_features", "units"},   {"pool_size", "size"},     {"rate", "p"},
    {"negative_slope", "alpha"}, {"learning_rate", "lr"},   {"cross_entropy", "softmax_cross_entropy"},
    {"bce", "sigmoid_bce"},
};

/* The name closest to word: what another framework calls it, a swap of two
 * letters, or else within the edit distance closest_name allows. */
static const char *closest(const char *word, const char *const *names, int n)
{
    for (int a = 0; a < NARGS(aliases); a++)
        if (!strcmp(word, aliases[a][0]))
            for (int i = 0; i < n; i++)
                if (!strcmp(aliases[a][1], names[i]))
                    return names[i];
    for (int i = 0; i < n; i++)
        if (swapped(word, names[i]))
            return names[i];
    return closest_name(word, names, n);
}

/* "did you mean 'dense'?", or else (if what is given) the list of names. */
static void did_you_mean(Lower *L, const char *word, const char *const *names, int n,
                         const char *what)
{
    const char *best = closest(word, names, n);
    if (best)
        diag_note(L->d, NOWHERE, "did you mean '%s'?", best);
    else if (what)
        diag_note(L->d, NOWHERE, "the %s are %s", what, name_list(L, names, n));
}

/* "kernel of conv2d", or just "batch" for a setting named like its value. */
static const char *attr_of(Lower *L, const AttrSpec *s, const char *owner)
{
    return strcmp(s->name, owner) ? arena_printf(L->arena, "%s of %s", s->name, owner) : owner;
}

static bool in_range(Lower *L, const AttrSpec *s, const Value *v, double x, const char *owner)
{
    if (v->bad)
        return false;
    bool ok = x >= s->min && (s->max_open ? x < s->max : x <= s->max);
    if (ok)
        return true;
    const char *what = attr_of(L, s, owner);
    if (s->max_open)
        diag_error(L->d, v->loc, "%s must be in [%s, %s), not %s", what, num_text(L, s->min),
                   num_text(L, s->max), describe(L, v));
    else if (x < s->min)
        diag_error(L->d, v->loc, "%s must be at least %s, not %s", what, num_text(L, s->min),
                   describe(L, v));
    else
        diag_error(L->d, v->loc, "%s must be at most %s, not %s", what, num_text(L, s->max),
                   describe(L, v));
    return false;
}

static bool check_int(Lower *L, const AttrSpec *s, const Value *v, const char *owner)
{
    return in_range(L, s, v, (double)v->i, owner);
}

/* Checks one value against its attribute's type and range. */
static bool check_value(Lower *L, const AttrSpec *s, const Value *v, const char *owner)
{
    if (v->bad)
        return false;
    switch (s->type) {
    case AT_INT:
        if (v->kind == VAL_INT)
            return check_int(L, s, v, owner);
        break;
    case AT_FLOAT:
        if (v->kind == VAL_INT || v->kind == VAL_FLOAT)
            return in_range(L, s, v, v->f, owner);
        break;
    case AT_PAD:
        if (v->kind == VAL_WORD && (!strcmp(v->s, "same") || !strcmp(v->s, "valid")))
            return true;
        /* fall through */
    case AT_PAIR:
        if (v->kind == VAL_INT)
            return check_int(L, s, v, owner);
        if (v->kind == VAL_LIST && v->nitems == 2 && v->items[0]->kind == VAL_INT &&
            v->items[1]->kind == VAL_INT) {
            bool ok0 = check_int(L, s, v->items[0], owner); /* both reported */
            bool ok1 = check_int(L, s, v->items[1], owner);
            return ok0 && ok1;
        }
        break;
    case AT_BOOL:
        if (v->kind == VAL_WORD && (!strcmp(v->s, "true") || !strcmp(v->s, "false")))
            return true;
        break;
    case AT_INIT:
        if (v->kind == VAL_WORD) {
            for (int i = 0; i < NARGS(init_names); i++)
                if (!strcmp(v->s, init_names[i]))
                    return true;
            diag_error(L->d, v->loc, "unknown initialiser '%s'", v->s);
            did_you_mean(L, v->s, init_names, NARGS(init_names), "initialisers");
            return false;
        }
        break;
    case AT_TENSOR:
        if (v->kind == VAL_WORD)
            return true;
        break;
    }
    if (v->kind == VAL_LIST)
        for (int i = 0; i < v->nitems; i++)
            if (v->items[i]->bad)
                return false;
    diag_error(L->d, v->loc, "%s must be %s, not %s", attr_of(L, s, owner), type_text(s->type),
               describe(L, v));
    return false;
}

static bool is_activation(const char *word)
{
    for (int i = 0; i < NARGS(layer_specs); i++)
        if (layer_specs[i].kind == L_ACT && !strcmp(word, layer_specs[i].word))
            return true;
    return false;
}

static int attr_index(const AttrSpec *spec, int nspec, const char *name)
{
    for (int i = 0; i < nspec; i++)
        if (!strcmp(spec[i].name, name))
            return i;
    die("internal: no attribute '%s'", name);
}

/* Matches a call's arguments to its attribute table: out[i] is the value of
 * attribute i, or NULL. Reports every unknown, duplicate, misplaced,
 * mistyped and missing argument; returns false if there was any. */
static bool bind(Lower *L, const Call *c, const char *owner, const AttrSpec *spec, int nspec,
                 const Value **out)
{
    bool ok = true, named_seen = false, order_said = false;
    const char *names[MAX_ATTRS], *positional[MAX_ATTRS];
    int npos = 0;
    for (int i = 0; i < nspec; i++) {
        out[i] = NULL;
        names[i] = spec[i].name;
        if (spec[i].pos >= 0)
            positional[npos++] = spec[i].name;
    }
    if (nspec == 0 && c->nargs > 0) {
        const Arg *arg = &c->args[0];
        diag_error(L->d, arg->key ? arg->key_loc : arg->value->loc, "%s takes no arguments",
                   owner);
        return false;
    }
    const Arg *first[MAX_ATTRS] = {0};
    bool suggested[MAX_ATTRS] = {0};
    for (int a = 0; a < c->nargs; a++) {
        const Arg *arg = &c->args[a];
        int k = -1;
        if (arg->key) {
            named_seen = true;
            for (int i = 0; i < nspec; i++)
                if (!strcmp(spec[i].name, arg->key))
                    k = i;
            if (k < 0) {
                ok = false;
                diag_error(L->d, arg->key_loc, "%s has no attribute '%s'", owner, arg->key);
                const char *best = closest(arg->key, names, nspec);
                if (!strcmp(arg->key, "activation")) {
                    diag_note(L->d, NOWHERE, "an activation is written after the layer, as in "
                                             "'%s(...) relu;'", owner);
                } else if (best) {
                    diag_note(L->d, NOWHERE, "did you mean '%s'?", best);
                    suggested[attr_index(spec, nspec, best)] = true;
                } else {
                    diag_note(L->d, NOWHERE, "%s takes %s", owner, name_list(L, names, nspec));
                }
                continue;
            }
        } else {
            if (named_seen) {
                ok = false;
                if (!order_said)
                    diag_error(L->d, arg->value->loc,
                               "positional argument after a named one in %s", owner);
                order_said = true;
                continue;
            }
            for (int i = 0; i < nspec; i++)
                if (spec[i].pos == a)
                    k = i;
            if (k < 0) {
                ok = false;
                if (!order_said) {
                    diag_error(L->d, arg->value->loc, "too many positional arguments: %s takes "
                               "%d (%s)", owner, npos, name_list(L, positional, npos));
                    if (arg->value->kind == VAL_WORD && is_activation(arg->value->s))
                        diag_note(L->d, NOWHERE, "an activation is written after the layer, "
                                                 "as in '%s(...) %s;'", owner, arg->value->s);
                    else if (nspec > npos)
                        diag_note(L->d, NOWHERE, "give the others by name, as in %s=...",
                                  spec[npos].name);
                }
                order_said = true;
                continue;
            }
        }
        if (first[k]) {
            diag_error(L->d, arg->key_loc, "%s of %s is given twice", spec[k].name, owner);
            diag_note(L->d, first[k]->key_loc, "first given here");
            ok = false;
            continue;
        }
        first[k] = arg;
        if (check_value(L, &spec[k], arg->value, owner))
            out[k] = arg->value;
        else
            ok = false;
    }
    for (int i = 0; i < nspec; i++)
        if (spec[i].required && !first[i] && !suggested[i] && !order_said) {
            diag_error(L->d, c->loc, "%s needs '%s' (%s)", owner, spec[i].name, spec[i].what);
            ok = false;
        }
    return ok;
}


static const Value *attr(const LayerSpec *ls, const Value **got, const char *name)
{
    return got[attr_index(ls->attrs, ls->nattrs, name)];
}

static void get_pair(const Value *v, int out[2], int dflt0, int dflt1)
{
    if (!v) {
        out[0] = dflt0;
        out[1] = dflt1;
    } else if (v->kind == VAL_LIST) {
        out[0] = (int)v->items[0]->i;
        out[1] = (int)v->items[1]->i;
    } else {
        out[0] = out[1] = (int)v->i;
    }
}

static double get_float(const Value *v, double dflt)
{
    return v ? v->f : dflt;
}

static Init get_init(const Value *v, Init dflt)
{
    if (v)
        for (int i = 0; i < NARGS(init_names); i++)
            if (!strcmp(v->s, init_names[i]))
                return (Init)i;
    return dflt;
}

/* ---- the train block ------------------------------------------------------ */

static void train_defaults(TrainCfg *t)
{
    memset(t, 0, sizeof *t);
    t->batch = 32;
    t->epochs = 10;
    t->seed = 42;
    t->opt = OPT_SGD;
    t->lr = 0.01;
    t->beta1 = 0.9;
    t->beta2 = 0.999;
    t->eps = 1e-8;
    t->init = INIT_DEFAULT;
    t->scale = 1.0 / 255.0;
    t->shift = 0.0;
}

/* Statements that take one number: batch 64; seed 1; scale 0.5; */
static bool setting_number(Lower *L, const Stmt *s, const AttrSpec *spec, double *out)
{
    if (!s->value || s->name || s->head.has_args || s->shape) {
        diag_error(L->d, s->loc, "%s takes one number, as in '%s %s;'", s->head.word,
                   s->head.word, spec->type == AT_INT ? "64" : "0.5");
        return false;
    }
    if (!check_value(L, spec, s->value, s->head.word))
        return false;
    *out = s->value->kind == VAL_INT ? (double)s->value->i : s->value->f;
    return true;
}

static void lower_optimizer(Lower *L, const Stmt *s, TrainCfg *t)
{
    static const char *const names[] = {"sgd", "adam"};
    if (!s->name || s->value || s->shape) {
        diag_error(L->d, s->loc, "optimizer needs a kind, as in 'optimizer sgd(lr=0.01);'");
        return;
    }
    if (s->nacts > 0)
        diag_error(L->d, s->acts[0].loc, "unexpected '%s' after the optimizer's arguments",
                   s->acts[0].word);
    const Value *got[MAX_ATTRS];
    if (!strcmp(s->name, "sgd")) {
        t->opt = OPT_SGD;
        if (!bind(L, &s->head, "sgd", sgd_attrs, NARGS(sgd_attrs), got))
            return;
        t->lr = get_float(got[0], t->lr);
        t->momentum = get_float(got[1], 0);
        t->nesterov = got[2] && !strcmp(got[2]->s, "true");
        t->weight_decay = get_float(got[3], 0);
        if (t->nesterov && t->momentum == 0) {
            diag_error(L->d, got[2]->loc, "nesterov needs a momentum above 0");
            diag_note(L->d, NOWHERE, "as in 'optimizer sgd(lr=0.01, momentum=0.9, nesterov=true);'");
        }
    } else if (!strcmp(s->name, "adam")) {
        t->opt = OPT_ADAM;
        bind(L, &s->head, "adam", adam_attrs, NARGS(adam_attrs), got);
        t->lr = get_float(got[0], 0.001);
        t->beta1 = get_float(got[1], 0.9);
        t->beta2 = get_float(got[2], 0.999);
        t->eps = get_float(got[3], 1e-8);
        t->weight_decay = get_float(got[4], 0);
        if (got[3] && t->eps == 0)
            diag_error(L->d, got[3]->loc, "eps of adam must be above 0");
    } else {
        diag_error(L->d, s->name_loc, "unknown optimizer '%s'", s->name);
        did_you_mean(L, s->name, names, 2, "optimizers");
    }
}

static void lower_train(Lower *L, const Block *b, TrainCfg *t)
{
    const Stmt *seen[S_COUNT] = {0};
    for (int i = 0; i < b->nstmts; i++) {
        const Stmt *s = b->stmts[i];
        int k = -1;
        if (!s->head.word) /* broken: the parser reported it */
            continue;
        for (int j = 0; j < S_COUNT; j++)
            if (!strcmp(s->head.word, setting_names[j]))
                k = j;
        if (k < 0) {
            diag_error(L->d, s->loc, "unknown setting '%s' in the train block", s->head.word);
            did_you_mean(L, s->head.word, setting_names, S_COUNT, "settings");
            continue;
        }
        if (seen[k]) {
            diag_error(L->d, s->loc, "%s is set twice", s->head.word);
            diag_note(L->d, seen[k]->loc, "first set here");
            continue;
        }
        seen[k] = s;
        static const AttrSpec batch = {"batch", AT_INT, 0, false, 1, 65536, false, ""};
        static const AttrSpec epochs = {"epochs", AT_INT, 0, false, 1, 1e6, false, ""};
        static const AttrSpec seed = {"seed", AT_INT, 0, false, 0, 2147483647.0, false, ""};
        static const AttrSpec scale = {"scale", AT_FLOAT, 0, false, -1e6, 1e6, false, ""};
        static const AttrSpec shift = {"shift", AT_FLOAT, 0, false, -1e6, 1e6, false, ""};
        double x;
        switch ((SettingKind)k) {
        case S_BATCH:
            if (setting_number(L, s, &batch, &x))
                t->batch = (int64_t)x;
            break;
        case S_EPOCHS:
            if (setting_number(L, s, &epochs, &x))
                t->epochs = (int64_t)x;
            break;
        case S_SEED:
            if (setting_number(L, s, &seed, &x))
                t->seed = (uint64_t)x;
            break;
        case S_SCALE:
            if (setting_number(L, s, &scale, &x))
                t->scale = x;
            break;
        case S_SHIFT:
            if (setting_number(L, s, &shift, &x))
                t->shift = x;
            break;
        case S_OPTIMIZER:
            lower_optimizer(L, s, t);
            break;
        case S_INIT: {
            static const AttrSpec init = {"init", AT_INIT, 0, false, 0, 0, false, ""};
            if (!s->name || s->head.has_args || s->value || s->shape) {
                diag_error(L->d, s->loc, "init needs an initialiser name, as in 'init he_normal;'");
                break;
            }
            Value v = {.kind = VAL_WORD, .loc = s->name_loc, .s = s->name};
            if (check_value(L, &init, &v, "init"))
                t->init = get_init(&v, t->init);
            break;
        }
        case S_COUNT:
            break;
        }
    }
}

/* ---- the model block ------------------------------------------------------ */

static const char *const c_keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
    "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
    "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
    "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
    "_Complex", "_Imaginary", "bool", "true", "false",
};

/* The graph's own tensors: no layer or input may take these names. */
static const char *const reserved_names[] = {"loss", "labels", "target"};

/* Names become parts of C identifiers in the generated code. */
static bool check_c_name(Lower *L, const char *name, Loc at, const char *what)
{
    for (int i = 0; i < NARGS(c_keywords); i++)
        if (!strcmp(name, c_keywords[i])) {
            diag_error(L->d, at, "%s '%s' is a C keyword", what, name);
            diag_note(L->d, NOWHERE, "names become C identifiers in the generated code");
            return false;
        }
    if (name[0] == '_' && (name[1] == '_' || (name[1] >= 'A' && name[1] <= 'Z'))) {
        diag_error(L->d, at, "%s '%s' is reserved in C", what, name);
        diag_note(L->d, NOWHERE, "C reserves names that start with '__' or with '_' and a "
                                 "capital letter");
        return false;
    }
    if (strlen(name) > 48) {
        diag_error(L->d, at, "%s '%.20s...' is longer than 48 characters", what, name);
        return false;
    }
    return true;
}

/* A name for a layer or the input: a C name, not one of the graph's own. */
static bool check_name(Lower *L, const char *name, Loc at, const char *what)
{
    for (int i = 0; i < NARGS(reserved_names); i++)
        if (!strcmp(name, reserved_names[i])) {
            diag_error(L->d, at, "%s '%s' is reserved", what, name);
            diag_note(L->d, NOWHERE, "the model's own tensors are called loss, labels and "
                                     "target");
            return false;
        }
    return check_c_name(L, name, at, what);
}

static const LayerSpec *find_layer(const char *word)
{
    for (int i = 0; i < NARGS(layer_specs); i++)
        if (!strcmp(word, layer_specs[i].word))
            return &layer_specs[i];
    return NULL;
}

/* The layers by name: open addressing, FNV-1a, so that models with very
 * many layers stay linear. */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static Layer *find_named(Lower *L, const char *name)
{
    if (!L->names_cap)
        return NULL;
    for (uint32_t i = name_hash(name) & (L->names_cap - 1);; i = (i + 1) & (L->names_cap - 1)) {
        if (!L->names[i])
            return NULL;
        if (!strcmp(L->names[i]->name, name))
            return L->names[i];
    }
}

static void add_named(Lower *L, Layer *ly)
{
    if (2 * (L->names_len + 1) > L->names_cap) {
        uint32_t cap = L->names_cap ? 2 * L->names_cap : 64;
        Layer **old = L->names;
        uint32_t old_cap = L->names_cap;
        L->names = ARENA_ARRAY(L->arena, Layer *, cap);
        L->names_cap = cap;
        L->names_len = 0;
        for (uint32_t i = 0; i < old_cap; i++)
            if (old[i])
                add_named(L, old[i]);
    }
    uint32_t i = name_hash(ly->name) & (L->names_cap - 1);
    while (L->names[i])
        i = (i + 1) & (L->names_cap - 1);
    L->names[i] = ly;
    L->names_len++;
}

static Layer *begin_layer(Lower *L, const Stmt *s, const LayerSpec *ls)
{
    int k = (int)(ls - layer_specs);
    L->counts[k]++;
    Layer *ly = ARENA_NEW(L->arena, Layer);
    ly->kind = ls->word;
    ly->loc = s->loc;
    ly->first_node = L->g->nodes.len;
    if (s->name && ls->kind != L_LOSS) {
        ly->name = s->name;
        check_name(L, s->name, s->name_loc, ls->kind == L_INPUT ? "input name" : "layer name");
        Layer *prev = find_named(L, s->name);
        if (prev) {
            diag_error(L->d, s->name_loc, "the name '%s' is used twice", s->name);
            diag_note(L->d, prev->loc, "first used here");
        }
    } else if (ls->kind == L_LOSS) {
        ly->name = "loss";
    } else {
        ly->name = arena_printf(L->arena, "%s_%d", ls->word, L->counts[k]);
        Layer *prev = find_named(L, ly->name);
        if (prev) {
            diag_error(L->d, s->loc, "this unnamed %s would be called '%s', a name already used",
                       ls->word, ly->name);
            diag_note(L->d, prev->loc, "first used here");
            diag_note(L->d, NOWHERE, "name this layer, as in '%s NAME%s'", ls->word,
                      ls->nattrs ? "(...)" : "");
        }
    }
    if (!find_named(L, ly->name))
        add_named(L, ly);
    vec_push(L->arena, &L->g->layers, ly);
    return ly;
}

/* Checks a shape against the element limit, without overflowing. */
static bool elems_ok(Lower *L, const Shape *s, const char *name, Loc at, bool batched)
{
    int64_t n = 1;
    double approx = 1;
    bool over = false; /* beyond int64: only approx is known */
    for (int i = 0; i < s->rank; i++) {
        approx *= (double)s->dim[i];
        if (s->dim[i] != 0 && n > INT64_MAX / s->dim[i])
            over = true;
        else if (!over)
            n *= s->dim[i];
    }
    if (!over && n <= LM_MAX_ELEMS)
        return true;
    char b[96];
    if (over)
        diag_error(L->d, at, "tensor '%s' %s is too large: %.3g elements", name,
                   shape_str(s, b, sizeof b), approx);
    else
        diag_error(L->d, at, "tensor '%s' %s is too large: %lld elements", name,
                   shape_str(s, b, sizeof b), (long long)n);
    diag_note(L->d, NOWHERE, "a tensor may hold at most 2^31-1 = 2147483647 elements%s",
              batched ? arena_printf(L->arena, "; its first dimension is the batch (%lld)",
                                     (long long)L->g->train.batch)
                      : "");
    return false;
}

/* Adds a node computing `name` from ins; on a shape error poisons cur. */
static Tensor *add_node(Lower *L, Op op, Tensor **ins, int nin, Attrs a, Loc at,
                        const char *name)
{
    Node *n = graph_node(L->g, op, ins, nin, a, at);
    Shape s;
    if (!op_info[op].shape(n, &s, L->d) || !elems_ok(L, &s, name, at, true)) {
        L->shape_ok = false;
        L->g->nodes.len--; /* the node is dropped; nothing refers to it */
        return NULL;
    }
    Tensor *t = graph_tensor(L->g, name, op_info[op].kind == OPK_LOSS ? ROLE_LOSS : ROLE_ACT,
                             s, at);
    t->def = n;
    n->out = t;
    return t;
}

static Tensor *add_param(Lower *L, const char *layer, const char *what, Shape s, Loc at,
                         Init init, int64_t fan_in, int64_t fan_out)
{
    const char *name = arena_printf(L->arena, "%s.%s", layer, what);
    Tensor *t = graph_tensor(L->g, name, ROLE_PARAM, s, at);
    t->init = init;
    t->fan_in = fan_in;
    t->fan_out = fan_out;
    return t;
}

/* input NAME[dims]; the model's first statement. */
static void lower_input(Lower *L, const Stmt *s)
{
    if (L->input_stmt) {
        diag_error(L->d, s->loc, "a model has one input");
        diag_note(L->d, L->input_stmt->loc, "the input is declared here");
        return;
    }
    L->input_stmt = s;
    if (s != L->first_stmt && L->first_stmt->head.word) {
        diag_error(L->d, s->loc, "the input must be the model's first statement");
        diag_note(L->d, L->first_stmt->loc, "the model starts here");
    }
    if (!s->name || !s->shape || s->head.has_args || s->value || s->nacts) {
        diag_error(L->d, s->loc, "input needs a name and a per-sample shape, as in "
                                 "'input x[1, 28, 28];'");
        return;
    }
    const Value *v = s->shape;
    if (v->nitems != 1 && v->nitems != 3) {
        diag_error(L->d, v->loc, "an input shape is [features] or [channels, height, width], "
                                 "not %d dimension%s", v->nitems, v->nitems == 1 ? "" : "s");
        return;
    }
    int64_t dims[4] = {L->g->train.batch};
    bool ok = true;
    for (int i = 0; i < v->nitems; i++) {
        const Value *d = v->items[i];
        if (d->bad) {
            ok = false;
        } else if (d->kind != VAL_INT || d->i < 1) {
            diag_error(L->d, d->loc, "an input dimension must be a positive integer, not %s",
                       describe(L, d));
            ok = false;
        }
        dims[i + 1] = d->i;
    }
    Shape sh = shape_of(v->nitems + 1, dims);
    Layer *ly = begin_layer(L, s, &layer_specs[0]);
    if (!ok || !elems_ok(L, &sh, s->name, v->loc, true))
        return;
    L->cur = graph_tensor(L->g, s->name, ROLE_INPUT, sh, s->name_loc);
    L->g->input = L->cur;
    ly->out = L->cur;
}

/* The weights and node of a dense or conv2d layer. */
static Tensor *lower_affine(Lower *L, const Stmt *s, const LayerSpec *ls, const Value **got,
                            Layer *ly, const char *name)
{
    Attrs a;
    memset(&a, 0, sizeof a);
    Init init = get_init(attr(ls, got, "init"), L->g->train.init);
    const Shape *x = &L->cur->shape;
    Tensor *w, *b;
    if (ls->kind == L_DENSE) {
        a.units = attr(ls, got, "units")->i;
        int64_t in = shape_elems(x) / x->dim[0];
        int64_t wd[2] = {a.units, in};
        w = add_param(L, ly->name, "weight", shape_of(2, wd), s->loc, init, in, a.units);
        b = add_param(L, ly->name, "bias", shape_of(1, &a.units), s->loc, init, in, a.units);
    } else {
        a.units = attr(ls, got, "filters")->i;
        get_pair(attr(ls, got, "kernel"), a.kernel, 1, 1);
        get_pair(attr(ls, got, "stride"), a.stride, 1, 1);
        const Value *pad = attr(ls, got, "pad");
        if (pad && pad->kind == VAL_WORD && !strcmp(pad->s, "same")) {
            if (a.stride[0] != 1 || a.stride[1] != 1) {
                diag_error(L->d, pad->loc, "pad=same needs stride 1, but this conv2d has "
                           "stride %d", a.stride[0] != 1 ? a.stride[0] : a.stride[1]);
                diag_note(L->d, NOWHERE, "give the padding as a number, as in pad=%d",
                          (a.kernel[0] - 1) / 2);
                return NULL;
            }
            if (a.kernel[0] % 2 == 0 || a.kernel[1] % 2 == 0) {
                diag_error(L->d, pad->loc, "pad=same needs an odd kernel, but this one is %dx%d",
                           a.kernel[0], a.kernel[1]);
                diag_note(L->d, NOWHERE, "an even kernel has no centre to keep in place; "
                          "give the padding as a number, as in pad=%d", (a.kernel[0] - 1) / 2);
                return NULL;
            }
            a.pad[0] = a.kernel[0] / 2;
            a.pad[1] = a.kernel[1] / 2;
        } else if (!pad || pad->kind != VAL_WORD) { /* valid: no padding */
            get_pair(pad, a.pad, 0, 0);
        }
        int64_t c = x->rank == 4 ? x->dim[1] : 1;
        int64_t fan_in = c * a.kernel[0] * a.kernel[1], fan_out = a.units * a.kernel[0] * a.kernel[1];
        int64_t wd[4] = {a.units, c, a.kernel[0], a.kernel[1]};
        w = add_param(L, ly->name, "weight", shape_of(4, wd), s->loc, init, fan_in, fan_out);
        b = add_param(L, ly->name, "bias", shape_of(1, &a.units), s->loc, init, fan_in, fan_out);
    }
    /* The input's shape first (dense needs a flat input, a kernel must
     * fit), then the size of the weights that shape implies. */
    Tensor *ins[3] = {L->cur, w, b};
    Tensor *y = add_node(L, ls->op, ins, 3, a, s->loc, name);
    if (y && !elems_ok(L, &w->shape, w->name, s->loc, false)) {
        L->shape_ok = false;
        return NULL;
    }
    return y;
}

static Tensor *lower_pool(Lower *L, const Stmt *s, const LayerSpec *ls, const Value **got,
                          const char *name)
{
    Attrs a;
    memset(&a, 0, sizeof a);
    get_pair(attr(ls, got, "size"), a.kernel, 1, 1);
    get_pair(attr(ls, got, "stride"), a.stride, a.kernel[0], a.kernel[1]);
    const Value *pad = attr(ls, got, "pad");
    if (pad && pad->kind == VAL_WORD) {
        if (!strcmp(pad->s, "same")) {
            diag_error(L->d, pad->loc, "%s does not support pad=same", ls->word);
            diag_note(L->d, NOWHERE, "give the padding as a number, as in pad=%d",
                      (a.kernel[0] - 1) / 2);
            return NULL;
        }
    } else {
        get_pair(pad, a.pad, 0, 0);
    }
    for (int i = 0; i < 2; i++)
        if (2 * a.pad[i] > a.kernel[i]) {
            diag_error(L->d, pad->loc, "%s padding must be at most half the window, %d for a "
                       "window of %d, not %d", ls->word, a.kernel[i] / 2, a.kernel[i], a.pad[i]);
            diag_note(L->d, NOWHERE, "a window over nothing but padding would have no input");
            return NULL;
        }
    Tensor *ins[1] = {L->cur};
    return add_node(L, ls->op, ins, 1, a, s->loc, name);
}

/* An activation (a layer of its own or a word after a layer) on cur. */
static Tensor *lower_act(Lower *L, const Call *c, const LayerSpec *ls, const char *name)
{
    const Value *got[MAX_ATTRS];
    if (!bind(L, c, ls->word, ls->attrs, ls->nattrs, got))
        return NULL;
    if (!L->cur)
        return NULL;
    Attrs a;
    memset(&a, 0, sizeof a);
    if (ls->op == OP_LEAKY_RELU)
        a.alpha = get_float(got[0], 0.01);
    else if (ls->op == OP_ELU)
        a.alpha = get_float(got[0], 1.0);
    if (ls->op == OP_SOFTMAX && L->cur->def && L->cur->def->op == OP_SOFTMAX)
        diag_warning(L->d, c->loc, "softmax is applied twice in a row");
    Tensor *ins[1] = {L->cur};
    return add_node(L, ls->op, ins, 1, a, c->loc, name);
}

/* loss KIND[(target=NAME)]; the model's last statement. */
static void lower_loss(Lower *L, const Stmt *s)
{
    static const char *names[NARGS(loss_specs)];
    for (int i = 0; i < NARGS(loss_specs); i++)
        names[i] = loss_specs[i].word;
    if (L->loss_stmt) {
        diag_error(L->d, s->loc, "a model has one loss");
        diag_note(L->d, L->loss_stmt->loc, "the loss is declared here");
        return;
    }
    L->loss_stmt = s;
    if (!s->name || s->value || s->shape) {
        diag_error(L->d, s->loc, "loss needs a kind, as in 'loss softmax_cross_entropy;'");
        return;
    }
    const LossSpec *sp = NULL;
    for (int i = 0; i < NARGS(loss_specs); i++)
        if (!strcmp(s->name, loss_specs[i].word))
            sp = &loss_specs[i];
    if (!sp) {
        diag_error(L->d, s->name_loc, "unknown loss '%s'", s->name);
        did_you_mean(L, s->name, names, NARGS(names), "losses");
        return;
    }
    const Value *got[MAX_ATTRS];
    Call c = s->head;
    c.word = s->name;
    c.loc = s->name_loc;
    bool ok = bind(L, &c, sp->word, sp->attrs, sp->nattrs, got);
    if (s->nacts > 0) {
        diag_error(L->d, s->acts[0].loc, "unexpected '%s' after the loss", s->acts[0].word);
        diag_note(L->d, NOWHERE, "the loss is the model's last statement; activations go "
                                 "after a layer");
        ok = false;
    }
    Layer *ly = begin_layer(L, s, &layer_specs[NARGS(layer_specs) - 1]);
    ly->kind = sp->word;
    if (!ok || !L->cur)
        return;
    /* A loss that applies softmax (or sigmoid) itself takes the logits
     * before a final softmax (sigmoid) layer; the perceptron scores the
     * value before its step. The layer stays in forward as the output. */
    Tensor *z = L->cur;
    Op last = z->def ? z->def->op : OP_COUNT;
    if ((sp->op == OP_SOFTMAX_CE && last == OP_SOFTMAX) ||
        (sp->op == OP_SIGMOID_BCE && last == OP_SIGMOID) ||
        (sp->op == OP_PERCEPTRON && last == OP_STEP))
        z = z->def->in[0];
    Tensor *target;
    if (sp->op == OP_SOFTMAX_CE || sp->op == OP_PERCEPTRON) {
        int64_t n = L->g->train.batch;
        target = graph_tensor(L->g, "labels", ROLE_TARGET, shape_of(1, &n), s->loc);
        target->dtype = DT_I32;
    } else if (got[0]) {
        target = NULL;
        for (int i = 0; i < L->g->tensors.len; i++) {
            Tensor *t = L->g->tensors.items[i];
            if (!strcmp(t->name, got[0]->s) && (t->role == ROLE_INPUT || t->role == ROLE_ACT))
                target = t;
        }
        if (!target) {
            diag_error(L->d, got[0]->loc, "no tensor named '%s' to use as the target", got[0]->s);
            if (L->g->input)
                diag_note(L->d, NOWHERE, "the model's input is '%s'", L->g->input->name);
            return;
        }
    } else {
        target = graph_tensor(L->g, "target", ROLE_TARGET, z->shape, s->loc);
    }
    L->g->target = target;
    Tensor *ins[2] = {z, target};
    L->g->output = L->cur;
    L->g->loss = add_node(L, sp->op, ins, 2, (Attrs){0}, s->name_loc, "loss");
    if (L->g->loss)
        L->g->loss_node = L->g->loss->def;
    ly->out = L->g->loss;
}

/* The statement that starts at word k of s's activations, when that word
 * is a layer: `dense(10)` + newline + `loss mse;` parses as one statement
 * with activations `loss` and `mse`. The words split the way the grammar
 * would have split them: `loss mse` is head loss, name mse. */
static Stmt *split_stmt(Lower *L, const Stmt *s, int k)
{
    Stmt *t = ARENA_NEW(L->arena, Stmt);
    t->head = s->acts[k];
    t->loc = t->head.loc;
    int next = k + 1;
    if (!t->head.has_args && next < s->nacts) {
        const Call *n = &s->acts[next++];
        t->name = n->word;
        t->name_loc = n->loc;
        t->head.has_args = n->has_args;
        t->head.args_loc = n->args_loc;
        t->head.args = n->args;
        t->head.nargs = n->nargs;
    }
    t->acts = s->acts + next;
    t->nacts = s->nacts - next;
    return t;
}

/* A layer: dense, conv2d, pools, flatten, dropout or an activation, with
 * activations after it. */
static void lower_layer(Lower *L, const Stmt *s, const LayerSpec *ls)
{
    if (s->shape) {
        diag_error(L->d, s->shape->loc, "only input takes a shape");
        L->cur = NULL;
        return;
    }
    if (s->value) {
        diag_error(L->d, s->value->loc, "%s takes its arguments in parentheses, as in %s(%s)",
                   ls->word, ls->word, describe(L, s->value));
        L->cur = NULL;
        return;
    }
    Layer *ly = begin_layer(L, s, ls);
    const Value *got[MAX_ATTRS];
    bool ok = bind(L, &s->head, ls->word, ls->attrs, ls->nattrs, got);
    /* Words after the layer: activations only. */
    for (int i = 0; i < s->nacts; i++) {
        const LayerSpec *as = find_layer(s->acts[i].word);
        if (!as) {
            static const char *acts[7];
            int n = 0;
            for (int j = 0; j < NARGS(layer_specs); j++)
                if (layer_specs[j].kind == L_ACT)
                    acts[n++] = layer_specs[j].word;
            diag_error(L->d, s->acts[i].loc, "unknown activation '%s'", s->acts[i].word);
            did_you_mean(L, s->acts[i].word, acts, n, "activations");
            ok = false;
        } else {
            ly->kind = arena_printf(L->arena, "%s+%s", ly->kind, as->word);
        }
    }
    if (!ok || !L->cur) {
        L->cur = NULL;
        return;
    }
    Tensor *t = NULL;
    Attrs a;
    memset(&a, 0, sizeof a);
    const char *name = s->nacts ? arena_printf(L->arena, "%s.pre", ly->name) : ly->name;
    switch (ls->kind) {
    case L_DENSE:
    case L_CONV2D:
        t = lower_affine(L, s, ls, got, ly, name);
        break;
    case L_MAXPOOL:
    case L_AVGPOOL:
        t = lower_pool(L, s, ls, got, name);
        break;
    case L_FLATTEN: {
        if (L->cur->shape.rank == 2)
            diag_warning(L->d, s->loc, "flatten on an input that is already flat does nothing");
        Tensor *ins[1] = {L->cur};
        t = add_node(L, OP_FLATTEN, ins, 1, a, s->loc, name);
        break;
    }
    case L_DROPOUT: {
        a.p = get_float(got[0], 0.5);
        Tensor *ins[1] = {L->cur};
        t = add_node(L, OP_DROPOUT, ins, 1, a, s->loc, name);
        break;
    }
    case L_ACT:
        t = lower_act(L, &s->head, ls, name);
        break;
    case L_INPUT:
    case L_LOSS:
        break;
    }
    L->cur = t;
    for (int i = 0; i < s->nacts && L->cur; i++) {
        const LayerSpec *as = find_layer(s->acts[i].word);
        const char *an = i == s->nacts - 1
                             ? ly->name
                             : arena_printf(L->arena, "%s.%s", ly->name, as->word);
        L->cur = lower_act(L, &s->acts[i], as, an);
    }
    ly->nnodes = L->g->nodes.len - ly->first_node;
    ly->out = L->cur;
}

/* One statement of the model block, with the statement's activations
 * known to be activations (or unknown words). */
static void lower_one(Lower *L, const Stmt *s)
{
    static const char *names[NARGS(layer_specs)];
    for (int i = 0; i < NARGS(layer_specs); i++)
        names[i] = layer_specs[i].word;
    const LayerSpec *ls = find_layer(s->head.word);
    if (!ls) {
        diag_error(L->d, s->loc, "unknown layer '%s'", s->head.word);
        did_you_mean(L, s->head.word, names, NARGS(names), "statements of a model");
        L->cur = NULL;
        return;
    }
    if (ls->kind == L_INPUT) {
        lower_input(L, s);
        return;
    }
    if (L->loss_stmt && ls->kind != L_LOSS) {
        diag_error(L->d, s->loc, "%s after the loss: the loss must be the model's last "
                   "statement", ls->word);
        diag_note(L->d, L->loss_stmt->loc, "the loss is here");
        return;
    }
    if (ls->kind == L_LOSS)
        lower_loss(L, s);
    else
        lower_layer(L, s, ls);
}

/* One statement of the model block. A layer word among its activations
 * means a ';' is missing before it: the words from there on are lowered
 * as the next statement (and so on, without recursion). */
static void lower_stmt(Lower *L, const Stmt *s)
{
    if (!s->head.word) { /* broken: the parser reported it; shapes past it are unknown */
        L->broken = true;
        L->cur = NULL;
        return;
    }
    for (;;) {
        int k = -1;
        for (int i = 0; i < s->nacts && k < 0; i++) {
            const LayerSpec *as = find_layer(s->acts[i].word);
            if (as && as->kind != L_ACT)
                k = i;
        }
        if (k < 0)
            break;
        diag_error(L->d, s->acts[k].loc, "missing ';' before '%s'", s->acts[k].word);
        diag_note(L->d, NOWHERE, "'%s' is a layer, not an activation, so it starts a new "
                                 "statement", s->acts[k].word);
        Stmt *head = ARENA_NEW(L->arena, Stmt);
        *head = *s;
        head->nacts = k;
        lower_one(L, head);
        s = split_stmt(L, s, k);
    }
    lower_one(L, s);
}

static void lower_model(Lower *L, const Block *b, bool need_loss)
{
    if (!b->name)
        diag_error(L->d, b->loc, "a model needs a name, as in 'model lenet5 { ... }'");
    else
        check_c_name(L, b->name, b->name_loc, "model name");
    L->g->name = b->name ? b->name : "model";
    L->g->loc = b->loc;
    bool has_input = false;
    for (int i = 0; i < b->nstmts; i++)
        has_input |= b->stmts[i]->head.word && !strcmp(b->stmts[i]->head.word, "input");
    if (!has_input) {
        for (int i = 0; i < b->nstmts; i++)
            L->broken |= !b->stmts[i]->head.word;
        if (!L->broken) {
            diag_error(L->d, b->loc, "model '%s' has no input", L->g->name);
            diag_note(L->d, NOWHERE, "declare one first, as in 'input x[1, 28, 28];'");
        }
    }
    L->first_stmt = b->nstmts ? b->stmts[0] : NULL;
    for (int i = 0; i < b->nstmts; i++)
        lower_stmt(L, b->stmts[i]);
    if (!L->input_stmt)
        return;
    if (!L->loss_stmt) {
        if (L->cur)
            L->g->output = L->cur;
        if (need_loss && !L->broken) {
            diag_error(L->d, b->loc, "model '%s' has no loss, and training needs one", L->g->name);
            diag_note(L->d, NOWHERE, "end the model with a loss, as in 'loss "
                                     "softmax_cross_entropy;', or compile with --inference-only");
        }
    } else if (!L->g->loss) {
        return; /* something before it failed, and said so */
    } else if (L->g->output == L->g->input) {
        diag_error(L->d, L->loss_stmt->loc, "the model has no layers between its input and its loss");
    } else if (need_loss && L->g->params.len == 0) {
        diag_error(L->d, L->loss_stmt->loc, "nothing to train: the model has no parameters");
        diag_note(L->d, NOWHERE, "add a dense or conv2d layer, or compile with --inference-only");
    }
}

Graph *lower_program(Arena *a, Diag *d, const Program *p, bool need_loss, int64_t batch)
{
    static const char *const block_names[] = {"model", "train"};
    Lower L;
    memset(&L, 0, sizeof L);
    L.arena = a;
    L.d = d;
    L.g = graph_new(a);
    L.shape_ok = true;
    train_defaults(&L.g->train);
    const Block *model = NULL, *train = NULL;
    for (int i = 0; i < p->nblocks; i++) {
        const Block *b = p->blocks[i];
        if (!b->kind) /* a broken header: the parser reported it */
            continue;
        const Block **slot = !strcmp(b->kind, "model") ? &model
                             : !strcmp(b->kind, "train") ? &train
                                                         : NULL;
        if (!slot) {
            diag_error(d, b->loc, "unknown block '%s'", b->kind);
            did_you_mean(&L, b->kind, block_names, 2, "blocks");
            continue;
        }
        if (*slot) {
            diag_error(d, b->loc, "a file has one %s block", b->kind);
            diag_note(d, (*slot)->loc, "the first is here");
            continue;
        }
        if (slot == &train && b->name)
            diag_error(d, b->name_loc, "a train block has no name");
        *slot = b;
    }
    /* The model needs the train block's batch and init; its statements
     * are read once quietly for them, so that the two blocks can then be
     * checked in the file's order and their errors come in that order. */
    if (train && model) {
        Diag quiet = *d;
        quiet.max_errors = -1; /* reports nothing */
        L.d = &quiet;
        lower_train(&L, train, &L.g->train);
        L.d = d;
    }
    bool train_first = train && (!model || train->loc.line < model->loc.line ||
                                 (train->loc.line == model->loc.line &&
                                  train->loc.col < model->loc.col));
    if (train_first)
        lower_train(&L, train, &L.g->train);
    if (batch > 0) /* laminac --batch: the command line wins */
        L.g->train.batch = batch;
    if (model)
        lower_model(&L, model, need_loss);
    if (train && !train_first)
        lower_train(&L, train, &L.g->train);
    if (batch > 0)
        L.g->train.batch = batch;
    if (!model && d->errors == 0) {
        diag_error(d, (Loc){1, 1, 1}, "no model in this file");
        diag_note(d, NOWHERE, "a model file holds a block 'model NAME { ... }'");
    }
    if (d->errors)
        return NULL;
    L.g->nforward = L.g->nodes.len;
    return L.g;
}
