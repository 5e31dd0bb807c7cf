/*
 * sgemm.c — the runtime's lm_sgemm (OpenBLAS, or the portable routine
 * with BLAS=none) on a large square product and on the narrow shapes the
 * bench models make; part of `make bench`, for reference.
 *
 *   sgemm THREADS SECONDS [SHAPE ...]
 *
 * SHAPE is "name:ta,tb,m,n,k" (C[m,n] = op(A)[m,k] op(B)[k,n], beta 1);
 * without shapes it runs the list below. Each shape is timed for SECONDS
 * (after a warm-up call) and printed as one line of JSON with GFLOP/s.
 * Threads: lm_set_threads(THREADS); bench/run.sh sets
 * OPENBLAS_NUM_THREADS to the same number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_rt.h"

struct shape {
    const char *name;
    int ta, tb, m, n, k;
};

/* The square reference, then one forward GEMM of each layer kind of the
 * bench models as compiled (im2col per sample: W[f, c*k*k] x col[c*k*k,
 * h*w], the CNN's conv2 cropped to the 10x10 its pooling reads; dense over
 * the batch: X[64, in] W^T). */
static const struct shape defaults[] = {
    {"square 1024", 0, 0, 1024, 1024, 1024},
    {"lenet5 c1 fwd", 0, 0, 6, 784, 25},
    {"lenet5 c3 fwd", 0, 0, 16, 100, 150},
    {"lenet5 f5 fwd", 0, 1, 64, 120, 400},
    {"cnn conv1 fwd", 0, 0, 16, 676, 9},
    {"cnn conv2 fwd", 0, 0, 32, 100, 144},
    {"mlp h1 fwd", 0, 1, 64, 256, 784},
    {"mlp h1 fwd n=1", 0, 1, 1, 256, 784},
};

static float *filled(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "sgemm: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) >> 8 & 0xffff) * (1.0f / 65536.0f) - 0.5f;
    return p;
}

static void bench(const struct shape *s, int threads, double seconds)
{
    size_t sa = (size_t)s->m * s->k, sb = (size_t)s->k * s->n, sc = (size_t)s->m * s->n;
    float *a = filled(sa), *b = filled(sb), *c = filled(sc);
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    long calls = 0;
    lm_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
    double t0 = lm_now(), t;
    do {
        lm_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 1.0f, c, s->n);
        calls++;
        t = lm_now() - t0;
    } while (t < seconds || calls < 3);
    double flop = 2.0 * s->m * s->n * s->k;
    printf("{\"impl\":\"probe\",\"measure\":\"sgemm\",\"threads\":%d,\"shape\":\"%s\","
           "\"ta\":%d,\"tb\":%d,\"m\":%d,\"n\":%d,\"k\":%d,\"value\":%.4g,\"unit\":\"GFLOP/s\","
           "\"us_per_call\":%.4g,\"calls\":%ld}\n",
           threads, s->name, s->ta, s->tb, s->m, s->n, s->k, flop * calls / t * 1e-9,
           t / calls * 1e6, calls);
    fflush(stdout);
    free(a), free(b), free(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sgemm THREADS SECONDS [name:ta,tb,m,n,k ...]\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    double seconds = atof(argv[2]);
    lm_set_threads(threads < 1 ? 1 : threads);
    if (argc == 3) {
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            bench(&defaults[i], threads, seconds);
        return 0;
    }
    for (int i = 3; i < argc; i++) {
        struct shape s;
        char *colon = strrchr(argv[i], ':');
        s.name = argv[i];
        if (colon)
            *colon = '\0';
        if (!colon || sscanf(colon + 1, "%d,%d,%d,%d,%d", &s.ta, &s.tb, &s.m, &s.n, &s.k) != 5 ||
            s.m < 1 || s.n < 1 || s.k < 1) {
            fprintf(stderr, "sgemm: bad shape '%s' (want name:ta,tb,m,n,k)\n", argv[i]);
            return 2;
        }
        bench(&s, threads, seconds);
    }
    return 0;
}
