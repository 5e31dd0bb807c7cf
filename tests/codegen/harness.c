/*
 * harness.c — drives one generated model for the PyTorch parity and
 * gradient-check tests. It is generic: compile it per model with
 *     cc -DMODEL=lenet5 -DMODELU=LENET5 -include lenet5.h harness.c lenet5.c ...
 *
 *   harness check IN OUT N STEPS FD
 *     IN (safetensors): the parameters by name, "x" [N, IN_SIZE] and, unless
 *     the target is the input, "target" [N, TARGET_SIZE] (labels as floats).
 *     OUT gets: "output" (eval-mode forward), "loss" (training forward at
 *     IN's parameters), "grad.<param>" for every parameter, "input_grad"
 *     (when compiled with --input-grad), "fd.analytic" and "fd.numeric"
 *     and "fd.numeric_small" (central differences of the loss with steps
 *     h = 5e-3 and 5e-4, for some parameter entries:
 *     the largest gradients of each tensor and a few chosen at random),
 *     "fd.index" (which entries), then "step_loss" [STEPS] and
 *     "param.<param>" after STEPS train steps from IN's parameters.
 *     It also saves the model after the steps to OUT.ckpt with NAME_save.
 *   harness forward IN OUT N
 *     Only the eval-mode forward pass: OUT gets "output" (works for models
 *     compiled with --inference-only too).
 *   harness load CKPT IN
 *     Loads IN's parameters, then tries NAME_load(CKPT): prints the error
 *     and exits 3 if it was rejected, and checks that a rejected load left
 *     every parameter untouched (exit 4 if not). Exit 0: it loaded.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_rt.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(MODEL, CAT(_, name))
#define U(name) CAT(MODELU, CAT(_, name))

static void fail(const char *what, const char *err)
{
    fprintf(stderr, "harness: %s: %s\n", what, err);
    exit(2);
}

static float *xalloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        fail("calloc", "out of memory");
    return p;
}

static void load_params(struct MODEL *m, const char *path)
{
    F(set_threads)(m, U(THREADS)); /* every part of the batch split as compiled */
    char err[512];
    if (F(load)(m, path, err, sizeof err) != 0)
        fail("load", err);
}

/* A fresh instance holding IN's parameters. */
static struct MODEL *new_model(const char *in)
{
    struct MODEL *m = F(create)(U(SEED));
    if (!m)
        fail("create", "out of memory");
    load_params(m, in);
    return m;
}

/* The outputs, collected in order and written in one file at the end. */
enum { MAX_OUT = 4 * U(NUM_TENSORS) + 16 };
static lm_tensor outs[MAX_OUT];
static int nouts;

static void put(const char *name, float *data, int64_t n)
{
    if (nouts == MAX_OUT)
        fail("put", "too many outputs");
    lm_tensor *t = &outs[nouts++];
    t->name = name;
    t->rank = 1;
    t->shape[0] = n;
    t->data = data;
}

#if U(TRAINING)
static char *name2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (!s)
        fail("malloc", "out of memory");
    snprintf(s, n, "%s%s", a, b);
    return s;
}
#endif

#if U(TRAINING)
/* The model's target type (labels or floats), as its header declares it. */
typedef CAT(MODEL, _target) target_t;

static float loss_at(struct MODEL *m, const float *x, const target_t *t, int n)
{
    return F(forward_train)(m, x, t, n);
}

static int check(const char *in, const char *out, int n, int steps, int fd)
{
    char err[512];
    struct MODEL *m = new_model(in);
    float *x = xalloc((size_t)n * U(IN_SIZE));
    float *tf = xalloc((size_t)n * U(TARGET_SIZE));
    lm_tensor data[2] = {{"x", 2, {n, U(IN_SIZE)}, x}, {"target", 2, {n, U(TARGET_SIZE)}, tf}};
    int ndata = U(TARGET_IS_INPUT) ? 1 : 2;
    if (lm_st_load(in, data, ndata, NULL, 0, LM_ST_ALLOW_EXTRA, err, sizeof err) != 0)
        fail("data", err);
    target_t *t = NULL;
    if (!U(TARGET_IS_INPUT)) {
        t = malloc(sizeof(target_t) * (size_t)n * U(TARGET_SIZE));
        for (int i = 0; i < n * U(TARGET_SIZE); i++)
            t[i] = (target_t)tf[i];
    }

    float *y = xalloc((size_t)n * U(OUT_SIZE));
    F(forward)(m, x, n, y);
    put("output", y, (int64_t)n * U(OUT_SIZE));

    float *loss = xalloc(1);
    F(zero_grad)(m);
    loss[0] = F(forward_train)(m, x, t, n);
    F(backward)(m, x, t, n);
    put("loss", loss, 1);
    float *grads = xalloc(U(NUM_PARAMS));
    memcpy(grads, F(grads)(m), sizeof(float) * U(NUM_PARAMS));
    for (int i = 0; i < U(NUM_TENSORS); i++) {
        const CAT(MODEL, _param) *p = &CAT(MODEL, _param_table)[i];
        put(name2("grad.", p->name), grads + p->offset, (int64_t)p->count);
    }
#ifdef INPUT_GRAD
    float *dx = xalloc((size_t)n * U(IN_SIZE));
    memcpy(dx, F(input_grad)(m), sizeof(float) * (size_t)n * U(IN_SIZE));
    put("input_grad", dx, (int64_t)n * U(IN_SIZE));
#endif
    /* backward adds to the gradients (as PyTorch's does): a second pass
     * over the same batch doubles them, up to the rounding of the sums */
    F(forward_train)(m, x, t, n);
    F(backward)(m, x, t, n);
    double worst = 0.0, largest = 0.0;
    for (int i = 0; i < U(NUM_PARAMS); i++) {
        double g = grads[i], g2 = F(grads)(m)[i];
        largest = fabs(g) > largest ? fabs(g) : largest;
        worst = fabs(g2 - 2.0 * g) > worst ? fabs(g2 - 2.0 * g) : worst;
    }
    if (!(worst <= 1e-5 * largest))
        fail("backward twice", "the parameter gradients are not the sum of the two passes");
    F(zero_grad)(m);

    /* Central differences: per tensor, its two largest gradients and two
     * entries picked by a fixed LCG. */
    int per = 4, nfd = 0;
    float *fa = xalloc((size_t)U(NUM_TENSORS) * per), *fn = xalloc((size_t)U(NUM_TENSORS) * per);
    float *fi = xalloc((size_t)U(NUM_TENSORS) * per), *fs = xalloc((size_t)U(NUM_TENSORS) * per);
    uint32_t lcg = 12345;
    float *p = F(params)(m);
    for (int i = 0; fd && i < U(NUM_TENSORS); i++) {
        const CAT(MODEL, _param) *pt = &CAT(MODEL, _param_table)[i];
        size_t pick[4] = {0, 0, 0, 0};
        for (size_t k = 0; k < pt->count; k++) {
            float g = fabsf(grads[pt->offset + k]);
            if (g > fabsf(grads[pt->offset + pick[0]]))
                pick[1] = pick[0], pick[0] = k;
            else if (k != pick[0] && g > fabsf(grads[pt->offset + pick[1]]))
                pick[1] = k;
        }
        for (int r = 2; r < per; r++) {
            lcg = lcg * 1664525u + 1013904223u;
            pick[r] = (lcg >> 8) % pt->count;
        }
        for (int r = 0; r < per; r++) {
            size_t k = pt->offset + pick[r];
            float p0 = p[k];
            for (int hs = 0; hs < 2; hs++) { /* h and h/10: see parity.py */
                float h = hs ? 5e-4f : 5e-3f;
                p[k] = p0 + h;
                float lp = loss_at(m, x, t, n);
                p[k] = p0 - h;
                float lm = loss_at(m, x, t, n);
                p[k] = p0;
                (hs ? fs : fn)[nfd] = (float)(((double)lp - (double)lm) / (2.0 * h));
            }
            fa[nfd] = grads[k];
            fi[nfd] = (float)k;
            nfd++;
        }
    }
    put("fd.analytic", fa, nfd);
    put("fd.numeric", fn, nfd);
    put("fd.numeric_small", fs, nfd);
    put("fd.index", fi, nfd);

    /* STEPS optimizer steps from IN's parameters, with a fresh optimizer. */
    struct MODEL *m2 = new_model(in);
    float *sl = xalloc((size_t)steps);
    for (int s = 0; s < steps; s++)
        sl[s] = F(train_step)(m2, x, t, n);
    put("step_loss", sl, steps);
    float *after = F(params)(m2);
    for (int i = 0; i < U(NUM_TENSORS); i++) {
        const CAT(MODEL, _param) *pt = &CAT(MODEL, _param_table)[i];
        put(name2("param.", pt->name), after + pt->offset, (int64_t)pt->count);
    }
    if (lm_st_save(out, outs, nouts, NULL, 0, err, sizeof err) != 0)
        fail("save", err);
    char *ck = name2(out, ".ckpt");
    if (F(save)(m2, ck, err, sizeof err) != 0)
        fail("save checkpoint", err);
    return 0;
}
#endif

static int forward_only(const char *in, const char *out, int n)
{
    char err[512];
    struct MODEL *m = new_model(in);
    float *x = xalloc((size_t)n * U(IN_SIZE));
    lm_tensor data = {"x", 2, {n, U(IN_SIZE)}, x};
    if (lm_st_load(in, &data, 1, NULL, 0, LM_ST_ALLOW_EXTRA, err, sizeof err) != 0)
        fail("data", err);
    float *y = xalloc((size_t)n * U(OUT_SIZE));
    F(forward)(m, x, n, y);
    put("output", y, (int64_t)n * U(OUT_SIZE));
    if (lm_st_save(out, outs, nouts, NULL, 0, err, sizeof err) != 0)
        fail("save", err);
    return 0;
}

static int try_load(const char *ckpt, const char *in)
{
    char err[512];
    struct MODEL *m = new_model(in);
    size_t bytes = F(size)();
    unsigned char *before = malloc(bytes);
    if (!before)
        fail("malloc", "out of memory");
    memcpy(before, m, bytes);
    if (F(load)(m, ckpt, err, sizeof err) == 0) {
        printf("loaded\n");
        return 0;
    }
    printf("rejected: %s\n", err);
    if (memcmp(before, m, bytes) != 0) {
        printf("but the model changed\n");
        return 4;
    }
    return 3;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "forward"))
        return forward_only(argv[2], argv[3], atoi(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "load"))
        return try_load(argv[2], argv[3]);
#if U(TRAINING)
    if (argc == 7 && !strcmp(argv[1], "check"))
        return check(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
#endif
    fprintf(stderr, "usage: harness check IN OUT N STEPS FD | forward IN OUT N | load CKPT IN\n");
    return 2;
}
