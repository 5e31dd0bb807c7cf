/*
 * optim.c — optimizer updates that generated code cannot vectorise itself.
 *
 * Owns lm_adam_update. Built with -fno-math-errno (Makefile RT_CFLAGS_optim):
 * sqrtf is then the processor's square root, and the loop below is
 * vectorised; with errno kept, the compiler must call the C library for
 * a negative argument, a branch in the loop, and the update ran one float
 * at a time (half of the autoencoder's training step, before it moved
 * here). Nothing allocates, nothing is kept between calls.
 */
#include "lamina_rt.h"
#include "internal.h"

#include <math.h>

/* Floats updated per inner loop: a constant count, so that an ordinary -O2
 * build (gcc's cheap vectorisation) turns it into vector code. */
enum { LM_ADAM_LANES = 16 };

/* One parameter, in the order of torch.optim.Adam's operations; decay is
 * a constant where this is inlined, so that the loop has no branch. */
static LM_INLINE void adam_one(float *restrict p, const float *restrict g, float *restrict m,
                               float *restrict v, const lm_adam *c, int decay, size_t i)
{
    float d = decay ? g[i] + c->weight_decay * p[i] : g[i];
    m[i] = c->beta1 * m[i] + c->one_minus_beta1 * d;
    v[i] = c->beta2 * v[i] + c->one_minus_beta2 * d * d;
    p[i] -= c->step_size * m[i] / (sqrtf(v[i]) / c->bc2_sqrt + c->eps);
}

static LM_INLINE void adam_loop(size_t n, float *restrict p, const float *restrict g, float *restrict m,
                                float *restrict v, const lm_adam *c, int decay)
{
    size_t i = 0;
    int j;

    for (; i + LM_ADAM_LANES <= n; i += LM_ADAM_LANES)
        for (j = 0; j < LM_ADAM_LANES; j++)
            adam_one(p, g, m, v, c, decay, i + (size_t)j);
    for (; i < n; i++)
        adam_one(p, g, m, v, c, decay, i);
}

LM_MULTIVERSION
static void adam_rows(size_t n, float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, const lm_adam *c)
{
    const lm_adam k = *c; /* the coefficients in registers, not read through a pointer */

    if (k.weight_decay != 0.0f)
        adam_loop(n, p, g, m, v, &k, 1);
    else
        adam_loop(n, p, g, m, v, &k, 0);
}

void lm_adam_update(size_t n, float *p, const float *g, float *m, float *v, const lm_adam *c)
{
    adam_rows(n, p, g, m, v, c);
}
