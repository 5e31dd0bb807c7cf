/*
 * test_runtime.c — tests of the lamina runtime (runtime/lamina_rt.h).
 *
 * One program, one section per runtime file: gemm, rng, safetensors, data
 * (IDX and CSV), progress.  Each CHECK prints a line only when it fails;
 * the program ends with "N passed, N failed" and exits non-zero on any
 * failure.  Files are written to a fresh temporary directory (under
 * $TMPDIR or /tmp) that is removed at the end.  Run it under
 * -fsanitize=address,undefined too: the malformed-input and fuzz cases are
 * there to find crashes as much as wrong answers.
 */
#define _POSIX_C_SOURCE 200809L
#include "lamina_rt.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static int npass, nfail;
static char tmpdir[512];

static void check(int ok, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        npass++;
        return;
    }
    nfail++;
    fprintf(stderr, "FAIL test_runtime.c:%d: ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(cond, ...) check((cond) != 0, __LINE__, __VA_ARGS__)

/* tmpdir/name in a static-lifetime rotating buffer (tests are serial). */
static const char *tpath(const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

/* The test writers unlink before writing: rewriting a file in place
 * (O_TRUNC) makes ext4 flush it on close, which turns the fuzz loops'
 * thousands of small writes into seconds of disk waits. */
static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f;

    (void)remove(path);
    f = fopen(path, "wb");

    if (f == NULL || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g;

    (void)remove(path);
    g = gzopen(path, "wb");

    if (g == NULL || gzwrite(g, data, (unsigned)n) != (int)n ||
        gzclose(g) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* Whole file into a malloc'd buffer; *n its size. */
static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    buf = malloc((size_t)len + 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int file_equals(const char *path, const unsigned char *data, size_t n)
{
    size_t m;
    unsigned char *b = read_bytes(path, &m);
    int same = m == n && memcmp(b, data, n) == 0;

    free(b);
    return same;
}

/* Number of entries of tmpdir whose name contains ".tmp.". */
static int count_temp_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.") != NULL)
            n++;
    closedir(d);
    return n;
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (remove(tpath(e->d_name)) != 0)
            fprintf(stderr, "cannot remove %s\n", tpath(e->d_name));
    }
    closedir(d);
    rmdir(tmpdir);
}

/* A tiny deterministic generator for test data (not the one under test). */
static uint32_t test_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ======================================================================
 * gemm
 * ====================================================================== */

static float opa(const float *a, int lda, int ta, int i, int p)
{
    return ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
}

/* One lm_sgemm call against a double-precision triple loop; padding
 * columns of C (ldc > n) must stay untouched. */
static int gemm_case(int ta, int tb, int m, int n, int k, float alpha,
                     float beta, int pad, int nan_c, uint32_t *seed)
{
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int arows = ta ? k : m, brows = tb ? n : k;
    size_t asz = (size_t)arows * (lda ? lda : 1);
    size_t bsz = (size_t)brows * (ldb ? ldb : 1);
    size_t csz = (size_t)m * ldc;
    float *a = malloc((asz + 1) * sizeof *a), *b = malloc((bsz + 1) * sizeof *b);
    float *c = malloc((csz + 1) * sizeof *c), *c0 = malloc((csz + 1) * sizeof *c);
    int i, j, p, ok = 1;

    if (lda < 1)
        lda = 1;
    if (ldb < 1)
        ldb = 1;
    for (i = 0; (size_t)i < asz; i++)
        a[i] = (float)((int)(test_rand(seed) % 2001) - 1000) / 500.0f;
    for (i = 0; (size_t)i < bsz; i++)
        b[i] = (float)((int)(test_rand(seed) % 2001) - 1000) / 500.0f;
    for (i = 0; (size_t)i < csz; i++)
        c[i] = c0[i] = nan_c ? NAN : (float)((int)(test_rand(seed) % 201) - 100) / 50.0f;
    lm_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (i = 0; i < m && ok; i++) {
        for (j = 0; j < ldc && ok; j++) {
            double ref = 0.0, mag = 0.0, got = c[(size_t)i * ldc + j];
            if (j >= n) {
                /* padding: bit-identical (NaN compares unequal) */
                ok = memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j],
                            sizeof(float)) == 0;
                continue;
            }
            for (p = 0; p < k; p++) {
                double prod = (double)opa(a, lda, ta, i, p) *
                              (double)opa(b, ldb, tb, p, j);
                ref += prod;
                mag += fabs(prod);
            }
            ref *= alpha;
            mag *= fabs(alpha);
            if (beta != 0.0f) {
                ref += (double)beta * c0[(size_t)i * ldc + j];
                mag += fabs((double)beta * c0[(size_t)i * ldc + j]);
            }
            ok = fabs(got - ref) <= 1e-5 * mag + 1e-6;
            if (!ok)
                fprintf(stderr, "  C[%d][%d] = %.9g, expected %.9g\n", i, j,
                        got, ref);
        }
    }
    free(a);
    free(b);
    free(c);
    free(c0);
    return ok;
}

/* The shapes of a dense layer's products, through dense.c's kernels on
 * an AVX-512 machine with the BLAS on one thread, the BLAS otherwise. */
static void test_gemm_dense(int threads, uint32_t *seed)
{
    static const float ab[][2] = {{1.0f, 1.0f}, {0.5f, 0.0f}, {-2.0f, 0.25f}};
    /* A batch through the weights, A B^T: whole blocks of 64 rows and rows
     * left over, outputs past a 256-output chunk and not a multiple of the
     * tiles of 6 or of the 16 x 16 transpositions, inputs not a multiple
     * of the blocks of 64 or of 16, padded leading dimensions, alpha and
     * beta, and beta 0 over a C of NaN (not read). */
    static const int nt[][3] = {{64, 256, 784}, {128, 96, 128}, {70, 101, 130}, {192, 263, 200},
                                {64, 300, 65},  {127, 97, 129}, {64, 120, 400}, {64, 33, 85},
                                {64, 47, 64},   {65, 32, 100}};
    /* The gradients, op(A) B with B as it is: A transposed or not, rows not
     * a multiple of the tiles of 6, columns past whole blocks of 64 (to the
     * BLAS), a short k, padding, alpha and beta, beta 0 over NaN. */
    static const int b[][3] = {{256, 784, 64}, {128, 256, 64}, {64, 256, 128}, {37, 64, 16},
                               {100, 300, 33}, {33, 128, 200}, {35, 257, 17}};
    int bad = 0, total = 0;
    size_t v;

    for (v = 0; v < sizeof nt / sizeof nt[0]; v++, total++)
        if (!gemm_case(0, 1, nt[v][0], nt[v][1], nt[v][2], ab[v % 3][0], ab[v % 3][1], (int)v % 2 * 3,
                       v % 3 == 1, seed)) {
            bad++;
            fprintf(stderr, "  gemm A B^T %d x %d x %d wrong\n", nt[v][0], nt[v][1], nt[v][2]);
        }
    CHECK(bad == 0, "sgemm, a batch through a dense layer (A B^T), BLAS on %d thread(s): %d of %d cases wrong",
          threads, bad, total);
    bad = total = 0;
    for (v = 0; v < 2 * (sizeof b / sizeof b[0]); v++, total++) {
        const int *sh = b[v / 2];
        if (!gemm_case((int)v % 2, 0, sh[0], sh[1], sh[2], ab[v % 3][0], ab[v % 3][1], (int)(v / 2) % 2 * 3,
                       v % 3 == 1, seed)) {
            bad++;
            fprintf(stderr, "  gemm %s %d x %d x %d wrong\n", v % 2 ? "A^T B" : "A B", sh[0], sh[1], sh[2]);
        }
    }
    CHECK(bad == 0, "sgemm, a dense layer's gradients (op(A) B), BLAS on %d thread(s): %d of %d cases wrong",
          threads, bad, total);
}

static void test_gemm(void)
{
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 67};
    const int ns = (int)(sizeof sizes / sizeof sizes[0]);
    uint32_t seed = 12345;
    int ta, tb, im, in, ik, threads, bad = 0, total = 0;
    char name[128];

    lm_blas_describe(name, sizeof name);
    CHECK(lm_blas_name() != NULL && name[0] != '\0', "BLAS name");
    printf("gemm: %s\n", name);

    /* Every transpose combination over odd and even sizes 1..67. */
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++)
            for (im = 0; im < ns; im++)
                for (in = 0; in < ns; in++)
                    for (ik = 0; ik < ns; ik += 1 + (im + in) % 2) {
                        int m = sizes[im], n = sizes[in], k = sizes[ik];
                        total++;
                        if (!gemm_case(ta, tb, m, n, k, 1.0f, 0.0f, 0, 0,
                                       &seed)) {
                            bad++;
                            fprintf(stderr, "  gemm ta=%d tb=%d m=%d n=%d "
                                    "k=%d wrong\n", ta, tb, m, n, k);
                        }
                    }
    CHECK(bad == 0, "sgemm vs triple loop: %d of %d cases wrong", bad, total);

    /* A few rows times a large transposed B (gemm.c's streaming path for
     * a small batch through a big dense layer), against the same loop. */
    bad = total = 0;
    for (im = 2; im <= 9; im++) {
        static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}};
        int v = im % 3;
        total++;
        if (!gemm_case(0, 1, im, 300 + im, 1000 - im, ab[v][0], ab[v][1], im % 2 ? 3 : 0, 0, &seed)) {
            bad++;
            fprintf(stderr, "  gemm few rows m=%d wrong\n", im);
        }
    }
    CHECK(bad == 0, "sgemm, a few rows times a large B^T: %d of %d cases wrong", bad, total);

    /* dense.c's kernels run where the BLAS is on one thread (with more,
     * the BLAS takes all): their cases on one, then on two. */
    for (threads = 1; threads <= 2; threads++) {
        lm_set_threads(threads);
        test_gemm_dense(threads, &seed);
    }
    lm_set_threads(1);

    /* alpha, beta, padded leading dimensions, sizes past the blocking. */
    for (ta = 0; ta < 2; ta++) {
        for (tb = 0; tb < 2; tb++) {
            CHECK(gemm_case(ta, tb, 13, 11, 9, 0.5f, 2.0f, 3, 0, &seed),
                  "alpha 0.5 beta 2 ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 7, 19, 5, -1.5f, 1.0f, 1, 0, &seed),
                  "alpha -1.5 beta 1 ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 9, 6, 4, 0.0f, 0.5f, 2, 0, &seed),
                  "alpha 0 ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 130, 300, 260, 1.0f, -0.25f, 5, 0, &seed),
                  "large (past block sizes) ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 1, 37, 23, 2.0f, 0.5f, 4, 0, &seed),
                  "m == 1 with beta ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 37, 1, 23, 2.0f, 0.5f, 4, 0, &seed),
                  "n == 1 with beta ta=%d tb=%d", ta, tb);
            /* beta == 0 must not read C: NaN in C must not survive. */
            CHECK(gemm_case(ta, tb, 17, 33, 9, 1.0f, 0.0f, 2, 1, &seed),
                  "beta 0 with NaN in C ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 1, 33, 9, 1.0f, 0.0f, 2, 1, &seed),
                  "beta 0 with NaN in C, m == 1, ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 33, 1, 9, 1.0f, 0.0f, 2, 1, &seed),
                  "beta 0 with NaN in C, n == 1, ta=%d tb=%d", ta, tb);
            CHECK(gemm_case(ta, tb, 5, 6, 7, 0.0f, 0.0f, 0, 1, &seed),
                  "alpha 0 beta 0 with NaN in C ta=%d tb=%d", ta, tb);
        }
    }
    /* k == 0: C = beta * C, and A, B are not read (NULL is fine). */
    {
        float c[6] = {1, 2, 3, 4, 5, 6};
        int i, ok = 1;
        lm_sgemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.5f, c, 3);
        for (i = 0; i < 6; i++)
            ok = ok && c[i] == 0.5f * (float)(i + 1);
        CHECK(ok, "k == 0 scales C by beta");
    }
    lm_set_threads(1);
    CHECK(lm_get_threads() == 1, "lm_set_threads(1) -> %d", lm_get_threads());
    lm_set_threads(2);
    CHECK(lm_get_threads() >= 1, "lm_get_threads after set 2");
}

/* One lm_sgather_sum call against a double-precision loop: rows of base
 * at random offsets (some repeated), out with padding columns between
 * its rows that must stay untouched. */
static int gather_case(int rows, int n, int cnt, uint32_t *seed)
{
    enum { PAD = 3 };
    const int ldb = n + 5, ldo = n + PAD, nbase = 8;
    float *base = malloc(sizeof(float) * (size_t)(nbase * ldb * rows + 1));
    float *out = malloc(sizeof(float) * (size_t)(rows * ldo + 1));
    float *g = malloc(sizeof(float) * (size_t)(cnt + 1));
    int *off = malloc(sizeof(int) * (size_t)(cnt + 1));
    int r, k, t, ok = 1;

    for (k = 0; k < nbase * ldb * rows; k++)
        base[k] = (float)((int)(test_rand(seed) % 2001) - 1000) / 500.0f;
    for (k = 0; k < rows * ldo; k++)
        out[k] = (float)k;
    for (t = 0; t < cnt; t++) {
        g[t] = (float)((int)(test_rand(seed) % 201) - 100) / 50.0f;
        off[t] = (int)(test_rand(seed) % nbase) * ldb * rows; /* row blocks may repeat */
    }
    lm_sgather_sum(rows, n, cnt, g, off, base, ldb, out, ldo);
    for (r = 0; r < rows; r++)
        for (k = 0; k < ldo; k++) {
            double want = (double)(r * ldo + k), scale = 1.0 + fabs(want);
            if (k < n)
                for (t = 0; t < cnt; t++) {
                    double v = (double)g[t] * base[off[t] + r * ldb + k];
                    want += v;
                    scale += fabs(v);
                }
            if (fabs(out[r * ldo + k] - want) > 1e-5 * scale)
                ok = 0;
        }
    free(base), free(out), free(g), free(off);
    return ok;
}

static void test_gather(void)
{
    /* Widths around the kernel's blocks of 48 and 16 columns, counts
     * around its pairs of rows. */
    static const int widths[] = {0, 1, 3, 15, 16, 17, 32, 33, 47, 48, 49, 64, 96, 100, 145};
    static const int counts[] = {0, 1, 2, 3, 4, 7, 25};
    uint32_t seed = 11;
    int bad = 0, total = 0;
    size_t i, j;

    for (i = 0; i < sizeof widths / sizeof widths[0]; i++)
        for (j = 0; j < sizeof counts / sizeof counts[0]; j++, total++)
            bad += !gather_case(1 + (int)(i + j) % 3, widths[i], counts[j], &seed);
    CHECK(bad == 0, "lm_sgather_sum vs a loop: %d of %d cases wrong", bad, total);
}

/* One lm_adam_update call on n parameters against the update in double
 * precision; a parameter that is infinite must stay so without weight
 * decay (no 0 * inf computed), and the moments must match too. */
static int adam_case(size_t n, float weight_decay, uint32_t *seed)
{
    const lm_adam c = {.beta1 = 0.9f, .one_minus_beta1 = 0.1f, .beta2 = 0.999f, .one_minus_beta2 = 0.001f,
                       .eps = 1e-8f, .weight_decay = weight_decay, .step_size = 0.0316f, .bc2_sqrt = 0.0447f};
    float *p = calloc(n + 1, sizeof(float)), *g = calloc(n + 1, sizeof(float));
    float *m = calloc(n + 1, sizeof(float)), *v = calloc(n + 1, sizeof(float));
    double *want = calloc(6 * (n + 1), sizeof(double)); /* m, v, p and their scales */
    size_t i;
    int ok = 1;

    for (i = 0; i < n; i++) {
        p[i] = (float)((int)(test_rand(seed) % 2001) - 1000) / 500.0f;
        g[i] = (float)((int)(test_rand(seed) % 2001) - 1000) / 5000.0f;
        m[i] = (float)((int)(test_rand(seed) % 2001) - 1000) / 50000.0f;
        v[i] = (float)(test_rand(seed) % 1001) / 1e6f; /* some 0 */
    }
    if (n > 5 && weight_decay == 0.0f)
        p[5] = INFINITY;
    for (i = 0; i < n; i++) {
        double *w = want + 6 * i;
        double d = (double)g[i] + (weight_decay != 0.0f ? (double)weight_decay * p[i] : 0.0);
        double step;
        w[0] = c.beta1 * (double)m[i] + c.one_minus_beta1 * d;
        w[1] = c.beta2 * (double)v[i] + c.one_minus_beta2 * d * d;
        step = c.step_size * w[0] / (sqrt(w[1]) / c.bc2_sqrt + c.eps);
        w[2] = p[i] - step;
        /* what the float rounding errors are relative to: the terms */
        w[3] = fabs(c.beta1 * (double)m[i]) + fabs(c.one_minus_beta1 * d) + fabs(weight_decay * p[i]);
        w[4] = w[1];
        w[5] = fabs((double)p[i]) + fabs(step) * (1.0 + w[3] / (fabs(w[0]) + 1e-30));
    }
    lm_adam_update(n, p, g, m, v, &c);
    for (i = 0; i < n; i++) {
        const double *w = want + 6 * i;
        if (isinf(w[2]) ? p[i] != w[2]
                        : fabs(m[i] - w[0]) > 1e-6 * w[3] || fabs(v[i] - w[1]) > 1e-6 * w[4] ||
                              fabs(p[i] - w[2]) > 1e-6 * w[5])
            ok = 0;
    }
    free(p), free(g), free(m), free(v), free(want);
    return ok;
}

static void test_adam(void)
{
    /* Lengths around the loop's blocks of 16 floats. */
    static const size_t lengths[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 100, 1000};
    uint32_t seed = 5;
    int bad = 0, total = 0;
    size_t i;

    for (i = 0; i < sizeof lengths / sizeof lengths[0]; i++, total += 2) {
        bad += !adam_case(lengths[i], 0.0f, &seed);
        bad += !adam_case(lengths[i], 0.01f, &seed);
    }
    CHECK(bad == 0, "lm_adam_update vs the update in double: %d of %d cases wrong", bad, total);
}

/* ======================================================================
 * rng
 * ====================================================================== */

static void test_rng(void)
{
    const size_t n = 1000000;
    float *w = malloc(n * sizeof *w);
    double sum = 0, sum2 = 0, sum3 = 0, sum4 = 0, mean, var;
    size_t i;
    int ok, j;

    /* Known answers of Philox4x32-10 (Random123's kat_vectors). */
    CHECK(lm_rand_u64(0, 0, 0) == 0x6627e8d5e169c58dull,
          "philox kat zero: %016llx",
          (unsigned long long)lm_rand_u64(0, 0, 0));
    CHECK(lm_rand_u64(UINT64_MAX, UINT64_MAX, UINT64_MAX) ==
              0x408f276d41c83b0eull,
          "philox kat ones: %016llx",
          (unsigned long long)lm_rand_u64(UINT64_MAX, UINT64_MAX, UINT64_MAX));
    CHECK(lm_rand_u64(0x299f31d0a4093822ull, 0x0370734413198a2eull,
                      0x85a308d3243f6a88ull) == 0xd16cfe0994fdccebull,
          "philox kat pi: %016llx",
          (unsigned long long)lm_rand_u64(0x299f31d0a4093822ull,
                                          0x0370734413198a2eull,
                                          0x85a308d3243f6a88ull));

    /* Determinism, and independence of streams and seeds. */
    CHECK(lm_rand_u64(42, 7, 99) == lm_rand_u64(42, 7, 99), "deterministic");
    CHECK(lm_rand_u64(42, 7, 99) != lm_rand_u64(42, 8, 99), "streams differ");
    CHECK(lm_rand_u64(42, 7, 99) != lm_rand_u64(43, 7, 99), "seeds differ");
    CHECK(lm_rand_normal(1, 2, 3) == lm_rand_normal(1, 2, 3),
          "normal deterministic");

    /* Uniform: range, 24-bit grid, moments. */
    lm_fill_uniform(w, n, 0.0f, 1.0f, 42, 1);
    ok = 1;
    for (i = 0; i < n; i++) {
        double v = w[i];
        ok = ok && v >= 0.0 && v < 1.0 && v * 16777216.0 == floor(v * 16777216.0);
        sum += v;
        sum2 += v * v;
    }
    mean = sum / n;
    var = sum2 / n - mean * mean;
    CHECK(ok, "uniform values in [0,1) on the 2^-24 grid");
    CHECK(fabs(mean - 0.5) < 0.002, "uniform mean %.5f", mean);
    CHECK(fabs(var - 1.0 / 12) < 0.001, "uniform variance %.5f", var);
    CHECK(w[12345] == lm_rand_uniform(42, 1, 12345),
          "fill_uniform[i] == lm_rand_uniform(i)");

    lm_fill_uniform(w, n, -0.25f, 0.75f, 9, 3);
    ok = 1;
    for (i = 0; i < n; i++)
        ok = ok && w[i] >= -0.25f && w[i] < 0.75f;
    CHECK(ok, "fill_uniform stays in [lo, hi)");
    /* A value that rounds up to hi must be pulled back below it. */
    lm_fill_uniform(w, 1000, 1e8f, 1e8f + 8.0f, 5, 5);
    ok = 1;
    for (i = 0; i < 1000; i++)
        ok = ok && w[i] >= 1e8f && w[i] < 1e8f + 8.0f;
    CHECK(ok, "fill_uniform half-open even when rounding");

    /* Normal: moments of the standard normal. */
    lm_fill_normal(w, n, 0.0f, 1.0f, 42, 2);
    sum = sum2 = 0;
    ok = 1;
    for (i = 0; i < n; i++) {
        double v = w[i];
        ok = ok && isfinite(v) && fabs(v) < 8.6;
        sum += v;
        sum2 += v * v;
        sum3 += v * v * v;
        sum4 += v * v * v * v;
    }
    mean = sum / n;
    var = sum2 / n - mean * mean;
    CHECK(ok, "normal values finite and bounded");
    CHECK(fabs(mean) < 0.005, "normal mean %.5f", mean);
    CHECK(fabs(var - 1.0) < 0.01, "normal variance %.5f", var);
    CHECK(fabs(sum3 / n) < 0.02, "normal skewness %.5f", sum3 / n);
    CHECK(fabs(sum4 / n - 3.0) < 0.05, "normal kurtosis %.5f", sum4 / n);
    CHECK(w[777] == lm_rand_normal(42, 2, 777),
          "fill_normal[i] == lm_rand_normal(i)");

    lm_fill_normal(w, n, 3.0f, 0.5f, 7, 0);
    sum = sum2 = 0;
    for (i = 0; i < n; i++) {
        sum += w[i];
        sum2 += (double)w[i] * w[i];
    }
    mean = sum / n;
    var = sum2 / n - mean * mean;
    CHECK(fabs(mean - 3.0) < 0.003 && fabs(sqrt(var) - 0.5) < 0.003,
          "fill_normal mean %.4f std %.4f", mean, sqrt(var));

    /* Shuffle: a permutation, deterministic, roughly uniform. */
    {
        int32_t idx[1000], idx2[1000];
        int seen[1000], counts[5] = {0}, same = 1, s;
        for (j = 0; j < 1000; j++)
            idx[j] = idx2[j] = j;
        lm_shuffle(idx, 1000, 42, 0);
        lm_shuffle(idx2, 1000, 42, 0);
        memset(seen, 0, sizeof seen);
        ok = 1;
        for (j = 0; j < 1000; j++) {
            ok = ok && idx[j] >= 0 && idx[j] < 1000 && !seen[idx[j]];
            if (idx[j] >= 0 && idx[j] < 1000)
                seen[idx[j]] = 1;
            same = same && idx[j] == idx2[j];
        }
        CHECK(ok, "shuffle is a permutation");
        CHECK(same, "shuffle deterministic");
        for (j = 0; j < 1000; j++)
            idx2[j] = j;
        lm_shuffle(idx2, 1000, 42, 1);
        CHECK(memcmp(idx, idx2, sizeof idx) != 0, "shuffle streams differ");
        for (s = 0; s < 20000; s++) {
            int32_t p[5] = {0, 1, 2, 3, 4};
            lm_shuffle(p, 5, 1, (uint64_t)s);
            for (j = 0; j < 5; j++)
                if (p[j] == 0)
                    counts[j]++;
        }
        ok = 1;
        for (j = 0; j < 5; j++)
            ok = ok && abs(counts[j] - 4000) < 300; /* ~5 sigma */
        CHECK(ok, "shuffle uniform: %d %d %d %d %d", counts[0], counts[1],
              counts[2], counts[3], counts[4]);
        idx[0] = 7;
        lm_shuffle(idx, 1, 1, 1);
        lm_shuffle(idx, 0, 1, 1);
        CHECK(idx[0] == 7, "shuffle n <= 1 is a no-op");
    }
    free(w);
}

/* ======================================================================
 * safetensors
 * ====================================================================== */

#define SENTINEL 0x7FC0DEADu /* a NaN payload no loader would produce */

static void fill_sentinel(float *p, size_t n)
{
    uint32_t s = SENTINEL;
    size_t i;

    for (i = 0; i < n; i++)
        memcpy(&p[i], &s, 4);
}

static int is_sentinel(const float *p, size_t n)
{
    uint32_t s = SENTINEL;
    size_t i;

    for (i = 0; i < n; i++)
        if (memcmp(&p[i], &s, 4) != 0)
            return 0;
    return 1;
}

/* The model used by the safetensors tests: c1.weight [6,1,5,5], c1.bias [6]. */
typedef struct st_model {
    float w[150], b[6];
    lm_tensor t[2];
} st_model;

static void st_model_init(st_model *m, int sentinel)
{
    int i;

    memset(m, 0, sizeof *m);
    m->t[0].name = "c1.weight";
    m->t[0].rank = 4;
    m->t[0].shape[0] = 6;
    m->t[0].shape[1] = 1;
    m->t[0].shape[2] = 5;
    m->t[0].shape[3] = 5;
    m->t[0].data = m->w;
    m->t[1].name = "c1.bias";
    m->t[1].rank = 1;
    m->t[1].shape[0] = 6;
    m->t[1].data = m->b;
    if (sentinel) {
        fill_sentinel(m->w, 150);
        fill_sentinel(m->b, 6);
    } else {
        for (i = 0; i < 150; i++)
            m->w[i] = (float)i * 0.01f - 0.7f;
        for (i = 0; i < 6; i++)
            m->b[i] = (float)i - 2.5f;
    }
}

static int st_model_untouched(const st_model *m)
{
    return is_sentinel(m->w, 150) && is_sentinel(m->b, 6);
}

/* Write a safetensors file from a raw JSON header and data bytes. */
static void write_st_raw(const char *path, const char *json, const void *data,
                         size_t ndata)
{
    size_t hl = strlen(json), i;
    unsigned char *buf = malloc(8 + hl + ndata + 1);

    for (i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, json, hl);
    if (ndata)
        memcpy(buf + 8 + hl, data, ndata);
    write_bytes(path, buf, 8 + hl + ndata);
    free(buf);
}

/* Load path into a sentinel-filled model: expect failure, untouched
 * buffers and a message naming the file (and containing want, if any). */
static void expect_load_error(const char *path, unsigned flags,
                              const char *want, const char *what)
{
    st_model m;
    char err[512] = "";
    int rc;

    st_model_init(&m, 1);
    rc = lm_st_load(path, m.t, 2, NULL, 0, flags, err, sizeof err);
    CHECK(rc == -1, "%s: load should fail", what);
    CHECK(st_model_untouched(&m), "%s: buffers touched on error", what);
    CHECK(strstr(err, path) == err, "%s: message does not start with the "
          "file name: %s", what, err);
    CHECK(want == NULL || strstr(err, want) != NULL,
          "%s: message lacks \"%s\": %s", what, want ? want : "", err);
}

static void test_st_roundtrip(void)
{
    const char *path = tpath("rt.safetensors");
    const char *kv[] = {"epoch", "7", "note", "quote\" backslash\\ nl\n \xc3\xa9"};
    st_model a, b;
    float scalar = 3.25f, scalar2 = 0.0f, empty_dummy = 0.0f;
    lm_tensor t[4], u[4];
    char epoch[16], note[64], missing[8];
    lm_st_meta meta[3];
    char err[512] = "";
    unsigned char *raw;
    size_t n;
    uint64_t hl = 0;
    int i, rc;

    st_model_init(&a, 0);
    t[0] = a.t[0];
    t[1] = a.t[1];
    memset(&t[2], 0, sizeof t[2]);
    t[2].name = "step";
    t[2].rank = 0;
    t[2].data = &scalar;
    memset(&t[3], 0, sizeof t[3]);
    t[3].name = "empty";
    t[3].rank = 2;
    t[3].shape[0] = 0;
    t[3].shape[1] = 3;
    t[3].data = NULL;
    rc = lm_st_save(path, t, 4, kv, 2, err, sizeof err);
    CHECK(rc == 0, "save: %s", err);
    CHECK(count_temp_files() == 0, "no temp files after a successful save");

    raw = read_bytes(path, &n);
    for (i = 7; i >= 0; i--)
        hl = hl << 8 | raw[i];
    CHECK(n >= 8 && hl <= n - 8 && (8 + hl) % 8 == 0,
          "header length %llu, data 8-byte aligned",
          (unsigned long long)hl);
    CHECK(n == 8 + hl + 4 * (150 + 6 + 1), "file size %zu", n);
    free(raw);

    st_model_init(&b, 1);
    u[0] = b.t[0];
    u[1] = b.t[1];
    u[2] = t[2];
    u[2].data = &scalar2;
    u[3] = t[3];
    u[3].data = &empty_dummy;
    meta[0].key = "epoch";
    meta[0].value = epoch;
    meta[0].size = sizeof epoch;
    meta[1].key = "note";
    meta[1].value = note;
    meta[1].size = sizeof note;
    meta[2].key = "absent";
    meta[2].value = missing;
    meta[2].size = sizeof missing;
    rc = lm_st_load(path, u, 4, meta, 3, 0, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    CHECK(memcmp(a.w, b.w, sizeof a.w) == 0 && memcmp(a.b, b.b, sizeof a.b) == 0,
          "round trip is bit-exact");
    CHECK(scalar2 == 3.25f, "rank-0 tensor round trip");
    CHECK(meta[0].found && strcmp(epoch, "7") == 0, "metadata epoch '%s'",
          epoch);
    CHECK(meta[1].found && strcmp(note, kv[3]) == 0,
          "metadata with escapes round trip: '%s'", note);
    CHECK(!meta[2].found && missing[0] == '\0', "absent metadata key");

    /* A subset of the file's tensors: error by default, fine with the flag. */
    st_model_init(&b, 1);
    rc = lm_st_load(path, b.t, 2, NULL, 0, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "not part of the model") != NULL &&
              st_model_untouched(&b),
          "extra tensors rejected without LM_ST_ALLOW_EXTRA: %s", err);
    rc = lm_st_load(path, b.t, 2, NULL, 0, LM_ST_ALLOW_EXTRA, err, sizeof err);
    CHECK(rc == 0 && memcmp(a.w, b.w, sizeof a.w) == 0,
          "extra tensors allowed with LM_ST_ALLOW_EXTRA: %s", err);

    /* A metadata value too long for its buffer fails before any write. */
    st_model_init(&b, 1);
    meta[1].size = 4;
    epoch[0] = 'X';
    rc = lm_st_load(path, u, 4, meta, 2, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "'note'") != NULL && epoch[0] == 'X' &&
              st_model_untouched(&b),
          "metadata too long: %s", err);

    /* Save rejects bad arguments. */
    t[1].name = "c1.weight";
    rc = lm_st_save(tpath("dup.safetensors"), t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "given twice") != NULL, "duplicate names: %s",
          err);
    t[1].name = "c1.bias";
    t[1].rank = 5;
    rc = lm_st_save(tpath("rank.safetensors"), t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == -1, "rank 5 rejected: %s", err);
    t[1].rank = 1;
    CHECK(access(tpath("dup.safetensors"), F_OK) != 0 &&
              access(tpath("rank.safetensors"), F_OK) != 0,
          "failed saves leave no file");
}

static void test_st_errors(void)
{
    const char *good = tpath("good.safetensors");
    const char *bad = tpath("bad.safetensors");
    float data[200];
    st_model a, m;
    char err[512] = "", json[1024];
    unsigned char *raw;
    size_t n, cut, i;
    int rc;

    st_model_init(&a, 0);
    rc = lm_st_save(good, a.t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == 0, "save good: %s", err);
    memset(data, 0, sizeof data);

    /* Wrong shape: the message spelled out in the brief. */
    {
        st_model w;
        char want[600];
        st_model_init(&w, 0);
        w.t[0].shape[2] = 3;
        w.t[0].shape[3] = 3;
        rc = lm_st_save(bad, w.t, 2, NULL, 0, err, sizeof err);
        CHECK(rc == 0, "save 3x3: %s", err);
        st_model_init(&m, 1);
        rc = lm_st_load(bad, m.t, 2, NULL, 0, 0, err, sizeof err);
        snprintf(want, sizeof want, "%s: tensor 'c1.weight' has shape "
                 "[6,1,3,3], model expects [6,1,5,5]", bad);
        CHECK(rc == -1 && strcmp(err, want) == 0, "wrong shape message: %s",
              err);
        CHECK(st_model_untouched(&m), "wrong shape: untouched");
    }

    /* Wrong dtype. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F16\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,300]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[300,324]}}");
    write_st_raw(bad, json, data, 324);
    expect_load_error(bad, 0, "has dtype F16; lamina reads only F32",
                      "wrong dtype");

    /* Missing tensor. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]}}");
    write_st_raw(bad, json, data, 600);
    expect_load_error(bad, 0, "tensor 'c1.bias' is missing", "missing tensor");

    /* Overlapping offsets. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[580,604]}}");
    write_st_raw(bad, json, data, 604);
    expect_load_error(bad, 0, "must not overlap", "overlapping offsets");

    /* A gap between tensors. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[604,628]}}");
    write_st_raw(bad, json, data, 628);
    expect_load_error(bad, 0, "contiguous", "gap between tensors");

    /* Offsets past the end of the file. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[600,624]}}");
    write_st_raw(bad, json, data, 620);
    expect_load_error(bad, 0, "outside", "offsets past end");

    /* Shape product does not match the byte length. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,4],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[600,624]}}");
    write_st_raw(bad, json, data, 624);
    expect_load_error(bad, 0, "should have 480 bytes", "shape vs length");

    /* Unused bytes after the last tensor. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[600,624]}}");
    write_st_raw(bad, json, data, 628);
    expect_load_error(bad, 0, "cover 624 data bytes", "trailing bytes");

    /* Duplicate tensor. */
    snprintf(json, sizeof json,
             "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
             "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
             "\"shape\":[6],\"data_offsets\":[600,624]},\"c1.bias\":{\"dtype\":"
             "\"F32\",\"shape\":[0],\"data_offsets\":[624,624]}}");
    write_st_raw(bad, json, data, 624);
    expect_load_error(bad, 0, "appears twice", "duplicate tensor");

    /* Header length larger than the file. */
    raw = read_bytes(good, &n);
    raw[0] = 0xFF;
    raw[1] = 0xFF;
    write_bytes(bad, raw, n);
    expect_load_error(bad, 0, "header length", "header length > file");
    raw[0] = 0;
    raw[1] = 0;
    raw[7] = 0x80;
    write_bytes(bad, raw, n);
    expect_load_error(bad, 0, "header length", "huge header length");
    free(raw);

    /* Truncated at every length. */
    raw = read_bytes(good, &n);
    {
        int all_fail = 1;
        for (cut = 0; cut < n; cut++) {
            st_model_init(&m, 1);
            write_bytes(bad, raw, cut);
            rc = lm_st_load(bad, m.t, 2, NULL, 0, 0, err, sizeof err);
            if (rc != -1 || !st_model_untouched(&m) || strstr(err, bad) != err) {
                all_fail = 0;
                fprintf(stderr, "  truncated at %zu: rc %d: %s\n", cut, rc,
                        err);
            }
        }
        CHECK(all_fail, "every truncation fails cleanly");
        expect_load_error(bad, 0, NULL, "truncated file");
    }
    free(raw);

    /* Garbage headers. */
    {
        static const char *const junk[] = {
            "",
            "x",
            "[]",
            "{",
            "{}{}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1}",
            "{\"a\":{\"dtype\":\"F32\"}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],"
            "\"x\":1}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
            "\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
            "\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
            "{\"a\\q\":{}}",
            "{\"a\\ud800\":{}}",
            "{\"a\\u0000\":{}}",
            "{\"a\x01\":{}}",
            "{\"\xff\":{}}",
            "{\"__metadata__\":{\"k\":1}}",
            "{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}",
            "{\"__metadata__\":{},\"__metadata__\":{}}",
            "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
            "\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}},",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x",
            "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
            "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
            "\"shape\":[6],\"data_offsets\":[600,624]},}",
        };
        for (i = 0; i < sizeof junk / sizeof junk[0]; i++) {
            char what[64];
            write_st_raw(bad, junk[i], data, 4);
            snprintf(what, sizeof what, "garbage header %zu", i);
            expect_load_error(bad, 0, NULL, what);
        }
    }

    /* Accepted: whitespace, escapes, metadata anywhere, padding. */
    {
        float d2[156];
        for (i = 0; i < 156; i++)
            d2[i] = (float)i;
        snprintf(json, sizeof json,
                 " { \"c1.bi\\u0061s\" : { \"shape\" : [ 6 ] , \"dtype\" : "
                 "\"F32\", \"data_offsets\" : [ 600 , 624 ] } ,\n"
                 "\"__metadata__\":{\"format\":\"pt\"},\t\"c1.weight\":"
                 "{\"dtype\":\"F32\",\"shape\":[6,1,5,5],\"data_offsets\":"
                 "[0,600]}}     ");
        write_st_raw(bad, json, d2, 624);
        st_model_init(&m, 1);
        rc = lm_st_load(bad, m.t, 2, NULL, 0, 0, err, sizeof err);
        CHECK(rc == 0 && m.w[149] == 149.0f && m.b[0] == 150.0f,
              "liberal-but-valid header accepted: %s", err);
    }

    /* Names from the file reach messages without control characters. */
    {
        int clean = 1;
        snprintf(json, sizeof json,
                 "{\"c1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
                 "\"data_offsets\":[0,600]},\"c1.bias\":{\"dtype\":\"F32\","
                 "\"shape\":[6],\"data_offsets\":[600,624]},\"\\u001b[2J"
                 "\\nevil\":{\"dtype\":\"F32\",\"shape\":[0],"
                 "\"data_offsets\":[624,624]}}");
        write_st_raw(bad, json, data, 624);
        expect_load_error(bad, 0, "'?[2J?evil' in the file is not part",
                          "control characters in a name");
        st_model_init(&m, 1);
        lm_st_load(bad, m.t, 2, NULL, 0, 0, err, sizeof err);
        for (i = 0; err[i]; i++)
            clean = clean && (unsigned char)err[i] >= 0x20;
        CHECK(clean, "message free of control characters");
    }

    /* Not a regular file; nonexistent file. */
    expect_load_error(tmpdir, 0, "not a regular file", "directory");
    expect_load_error(tpath("nonexistent.safetensors"), 0, "cannot open",
                      "nonexistent");

    /* Fuzz: flip bytes of a valid file; never crash, never half-load. */
    raw = read_bytes(good, &n);
    {
        uint32_t s = 777;
        int k, clean = 1, loaded = 0;
        unsigned char *copy = malloc(n);
        for (k = 0; k < 3000; k++) {
            int flips = 1 + (int)(test_rand(&s) % 4), f;
            memcpy(copy, raw, n);
            for (f = 0; f < flips; f++) {
                /* mostly the header, sometimes the length or the data */
                size_t pos = test_rand(&s) % 8 == 0 ? test_rand(&s) % n
                             : 8 + test_rand(&s) % (n > 8 + 600 ? n - 8 - 600 : 1);
                copy[pos] = (unsigned char)test_rand(&s);
            }
            write_bytes(bad, copy, n - (test_rand(&s) % 16 == 0 ? 1 : 0));
            st_model_init(&m, 1);
            err[0] = '\0';
            rc = lm_st_load(bad, m.t, 2, NULL, 0, 0, err, sizeof err);
            if (rc == 0)
                loaded++;
            else if (rc != -1 || !st_model_untouched(&m) ||
                     strstr(err, bad) != err) {
                clean = 0;
                fprintf(stderr, "  fuzz %d: rc %d: %s\n", k, rc, err);
            }
        }
        CHECK(clean, "fuzzed files fail cleanly (%d of 3000 still loaded)",
              loaded);
        free(copy);
    }
    free(raw);
}

static void test_st_atomic(void)
{
    const char *path = tpath("ckpt.safetensors");
    char err[512] = "", nodir[700];
    unsigned char *before;
    size_t nbefore;
    st_model a;
    int rc;

    st_model_init(&a, 0);
    rc = lm_st_save(path, a.t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == 0, "save: %s", err);
    before = read_bytes(path, &nbefore);

    /* A missing directory: -1, message names the file. */
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/ckpt.safetensors", tmpdir);
    rc = lm_st_save(nodir, a.t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, nodir) == err, "missing directory: %s", err);

    /* Bad arguments over an existing file: it stays as it was. */
    {
        st_model b;
        st_model_init(&b, 0);
        b.t[1].name = "c1.weight";
        b.w[0] = 99.0f;
        rc = lm_st_save(path, b.t, 2, NULL, 0, err, sizeof err);
        CHECK(rc == -1 && file_equals(path, before, nbefore),
              "failed save leaves the old file: %s", err);
    }

    /* The target is a directory: rename fails, temp file removed. */
    rc = lm_st_save(tmpdir, a.t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "cannot rename") != NULL,
          "rename over a directory fails: %s", err);
    {
        /* the temp file for tmpdir sits next to it, in its parent */
        char tmpname[700];
        snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", tmpdir,
                 (long)getpid());
        CHECK(access(tmpname, F_OK) != 0, "temp file removed after failed "
              "rename");
    }

    /* A full disk, simulated with RLIMIT_FSIZE: the write fails midway. */
    {
        struct rlimit old, lim;
        static float big[100000];
        lm_tensor t;
        void (*oldsig)(int);

        memset(&t, 0, sizeof t);
        t.name = "big";
        t.rank = 1;
        t.shape[0] = 100000;
        t.data = big;
        if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
            lim = old;
            lim.rlim_cur = 4096;
            oldsig = signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
                rc = lm_st_save(path, &t, 1, NULL, 0, err, sizeof err);
                setrlimit(RLIMIT_FSIZE, &old);
                CHECK(rc == -1 && strstr(err, "write error") != NULL,
                      "disk full: save fails: %s", err);
                CHECK(file_equals(path, before, nbefore),
                      "disk full: old file intact");
                CHECK(count_temp_files() == 0, "disk full: temp removed");
            } else {
                fprintf(stderr, "note: setrlimit failed; disk-full case "
                        "skipped\n");
            }
            signal(SIGXFSZ, oldsig);
        }
    }

    /* A successful save replaces the file and leaves no temp files. */
    a.w[0] = 42.0f;
    rc = lm_st_save(path, a.t, 2, NULL, 0, err, sizeof err);
    CHECK(rc == 0 && !file_equals(path, before, nbefore) &&
              count_temp_files() == 0,
          "successful overwrite: %s", err);
    free(before);
}

/* ======================================================================
 * data: IDX
 * ====================================================================== */

/* IDX bytes: magic 0 0 type ndims, dims, then n data bytes from data. */
static size_t make_idx(unsigned char *buf, int type, int ndims,
                       const uint32_t *dims, const unsigned char *data,
                       size_t n)
{
    size_t o = 0;
    int i;

    buf[o++] = 0;
    buf[o++] = 0;
    buf[o++] = (unsigned char)type;
    buf[o++] = (unsigned char)ndims;
    for (i = 0; i < ndims; i++) {
        buf[o++] = (unsigned char)(dims[i] >> 24);
        buf[o++] = (unsigned char)(dims[i] >> 16);
        buf[o++] = (unsigned char)(dims[i] >> 8);
        buf[o++] = (unsigned char)dims[i];
    }
    memcpy(buf + o, data, n);
    return o + n;
}

static int dataset_untouched(const lm_dataset *d)
{
    return d->n == -7 && d->x == NULL && d->y == NULL;
}

static void expect_idx_error(const char *images, const char *labels,
                             const char *want, const char *what)
{
    lm_dataset d;
    char err[512] = "";
    int rc;

    memset(&d, 0, sizeof d);
    d.n = -7;
    rc = lm_idx_load(&d, images, labels, 1.0f, 0.0f, err, sizeof err);
    CHECK(rc == -1 && dataset_untouched(&d), "%s: should fail, untouched",
          what);
    CHECK(strstr(err, images) == err ||
              (labels != NULL && strstr(err, labels) == err),
          "%s: message does not name the file: %s", what, err);
    CHECK(want == NULL || strstr(err, want) != NULL,
          "%s: message lacks \"%s\": %s", what, want ? want : "", err);
}

static void test_idx(void)
{
    unsigned char pix[24], lab[3], buf[256];
    uint32_t idims[3] = {3, 2, 4}, ldims[1] = {3};
    size_t ni, nl, i;
    lm_dataset d;
    char err[512] = "";
    int rc, gz, ok;

    for (i = 0; i < 24; i++)
        pix[i] = (unsigned char)(i * 10);
    lab[0] = 2;
    lab[1] = 0;
    lab[2] = 9;
    ni = make_idx(buf, 0x08, 3, idims, pix, 24);
    write_bytes(tpath("img.idx"), buf, ni);
    write_gz(tpath("img.idx.gz"), buf, ni);
    nl = make_idx(buf, 0x08, 1, ldims, lab, 3);
    write_bytes(tpath("lab.idx"), buf, nl);
    write_gz(tpath("lab.idx.gz"), buf, nl);

    for (gz = 0; gz < 2; gz++) {
        const char *ip = tpath(gz ? "img.idx.gz" : "img.idx");
        const char *lp = tpath(gz ? "lab.idx.gz" : "lab.idx");
        memset(&d, 0, sizeof d);
        rc = lm_idx_load(&d, ip, lp, 1.0f / 255.0f, -0.5f, err, sizeof err);
        CHECK(rc == 0, "idx load (gzip %d): %s", gz, err);
        if (rc != 0)
            continue;
        CHECK(d.n == 3 && d.rank == 2 && d.dims[0] == 2 && d.dims[1] == 4 &&
                  d.sample_size == 8,
              "idx shape n=%d rank=%d dims=%d,%d", d.n, d.rank, d.dims[0],
              d.dims[1]);
        ok = 1;
        for (i = 0; i < 24; i++)
            ok = ok && d.x[i] == (float)pix[i] * (1.0f / 255.0f) - 0.5f;
        CHECK(ok, "idx pixel values (gzip %d)", gz);
        CHECK(d.y && d.y[0] == 2 && d.y[1] == 0 && d.y[2] == 9 &&
                  d.nclasses_seen == 10,
              "idx labels (gzip %d)", gz);
        CHECK(lm_dataset_check(&d, 8, 10, ip, err, sizeof err) == 0,
              "dataset check passes: %s", err);
        rc = lm_dataset_check(&d, 8, 9, lp, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "label 9 of sample 2 is outside [0, 9)")
                  && strstr(err, lp) == err,
              "label out of range: %s", err);
        rc = lm_dataset_check(&d, 784, 10, ip, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "samples have 8 values (2x4), model "
                                      "input needs 784") != NULL,
              "sample size mismatch: %s", err);
        lm_dataset_free(&d);
        CHECK(d.x == NULL && d.y == NULL && d.n == 0, "free zeroes");
    }

    memset(&d, 0, sizeof d);
    rc = lm_idx_load(&d, tpath("img.idx"), NULL, 1.0f, 0.0f, err, sizeof err);
    CHECK(rc == 0 && d.y == NULL && d.nclasses_seen == 0 && d.x[1] == 10.0f,
          "idx without labels: %s", err);
    rc = lm_dataset_check(&d, 8, 0, "img", err, sizeof err);
    CHECK(rc == 0, "no labels needed: %s", err);
    rc = lm_dataset_check(&d, 8, 10, "img", err, sizeof err);
    CHECK(rc == -1 && strstr(err, "has no labels"), "labels needed: %s", err);
    lm_dataset_free(&d);
    lm_dataset_free(&d);
    lm_dataset_free(NULL);

    /* Wrong magic, wrong type, wrong kind, truncated, trailing, mismatch. */
    ni = make_idx(buf, 0x08, 3, idims, pix, 24);
    buf[0] = 0x12;
    write_bytes(tpath("bad.idx"), buf, ni);
    expect_idx_error(tpath("bad.idx"), NULL, "not an IDX file", "bad magic");
    write_bytes(tpath("bad.idx"), "hello", 5);
    expect_idx_error(tpath("bad.idx"), NULL, "not an IDX file", "text file");
    write_bytes(tpath("bad.idx"), "", 0);
    expect_idx_error(tpath("bad.idx"), NULL, "only 0 bytes", "empty file");
    ni = make_idx(buf, 0x0D, 3, idims, pix, 24);
    write_bytes(tpath("bad.idx"), buf, ni);
    expect_idx_error(tpath("bad.idx"), NULL, "float32 (0x0D) is not supported",
                     "float32 type");
    expect_idx_error(tpath("lab.idx"), NULL, "is this the labels file?",
                     "labels as images");
    expect_idx_error(tpath("img.idx"), tpath("img.idx"),
                     "is this the images file?", "images as labels");
    ni = make_idx(buf, 0x08, 3, idims, pix, 20);
    write_bytes(tpath("bad.idx"), buf, ni);
    expect_idx_error(tpath("bad.idx"), NULL,
                     "truncated: expected 24 bytes of pixel data, got 20",
                     "truncated");
    write_gz(tpath("bad.idx.gz"), buf, ni);
    expect_idx_error(tpath("bad.idx.gz"), NULL,
                     "truncated: expected 24 bytes of pixel data, got 20",
                     "truncated gzip content");
    ni = make_idx(buf, 0x08, 3, idims, pix, 24);
    write_bytes(tpath("bad.idx"), buf, 10);
    expect_idx_error(tpath("bad.idx"), NULL, "ends inside its dimensions",
                     "truncated header");
    buf[ni] = 1;
    write_bytes(tpath("bad.idx"), buf, ni + 1);
    expect_idx_error(tpath("bad.idx"), NULL, "trailing data", "trailing data");
    {
        uint32_t zero[3] = {3, 0, 4};
        ni = make_idx(buf, 0x08, 3, zero, pix, 0);
        write_bytes(tpath("bad.idx"), buf, ni);
        expect_idx_error(tpath("bad.idx"), NULL, "dimension 1 is 0",
                         "zero dimension");
    }
    {
        uint32_t huge[3] = {2000000000u, 2000000000u, 1};
        ni = make_idx(buf, 0x08, 3, huge, pix, 24);
        write_bytes(tpath("bad.idx"), buf, ni);
        expect_idx_error(tpath("bad.idx"), NULL, "truncated",
                         "lying header (huge count)");
    }
    {
        uint32_t two[1] = {2};
        nl = make_idx(buf, 0x08, 1, two, lab, 2);
        write_bytes(tpath("bad.idx"), buf, nl);
        expect_idx_error(tpath("img.idx"), tpath("bad.idx"),
                         "has 2 labels, but", "count mismatch");
    }
    expect_idx_error(tpath("missing.idx"), NULL, "cannot open", "missing");

    /* A gzip stream cut short, and one with a corrupted body. */
    {
        unsigned char *gzb;
        size_t ng;
        uint32_t big[3] = {50, 28, 28};
        unsigned char *many = malloc(50 * 784 + 64);
        for (i = 0; i < 50 * 784; i++)
            many[i] = (unsigned char)(i * 7 + i / 13);
        ni = make_idx(many, 0x08, 3, big, many, 0);
        for (i = 0; i < 50 * 784; i++)
            many[ni + i] = (unsigned char)(i * 7 + i / 13);
        write_gz(tpath("big.idx.gz"), many, ni + 50 * 784);
        gzb = read_bytes(tpath("big.idx.gz"), &ng);
        write_bytes(tpath("bad.idx.gz"), gzb, ng / 2);
        expect_idx_error(tpath("bad.idx.gz"), NULL, "truncated",
                         "gzip cut short");
        gzb[ng / 2] ^= 0x55;
        gzb[ng / 2 + 1] ^= 0xAA;
        write_bytes(tpath("bad.idx.gz"), gzb, ng);
        expect_idx_error(tpath("bad.idx.gz"), NULL, NULL, "gzip corrupted");
        gzb[ng - 5] ^= 0x01; /* the stored length */
        gzb[ng / 2] ^= 0x55;
        gzb[ng / 2 + 1] ^= 0xAA;
        write_bytes(tpath("bad.idx.gz"), gzb, ng);
        expect_idx_error(tpath("bad.idx.gz"), NULL, NULL, "gzip bad trailer");
        free(gzb);
        free(many);
    }

    /* Larger than one read chunk (1 MiB), plain and gzip'd: the buffer
     * grows while reading. */
    {
        uint32_t big[3] = {3000, 28, 28};
        size_t npix = (size_t)3000 * 784, hdr;
        unsigned char *file = malloc(npix + 16);
        for (gz = 0; gz < 2; gz++) {
            hdr = make_idx(file, 0x08, 3, big, file, 0);
            for (i = 0; i < npix; i++)
                file[hdr + i] = (unsigned char)(i % 251);
            if (gz)
                write_gz(tpath("big2.idx.gz"), file, hdr + npix);
            else
                write_bytes(tpath("big2.idx"), file, hdr + npix);
            memset(&d, 0, sizeof d);
            rc = lm_idx_load(&d, tpath(gz ? "big2.idx.gz" : "big2.idx"), NULL,
                             1.0f, 0.0f, err, sizeof err);
            ok = rc == 0 && d.n == 3000 && d.sample_size == 784;
            for (i = 0; ok && i < npix; i += 997)
                ok = d.x[i] == (float)(i % 251);
            ok = ok && d.x[npix - 1] == (float)((npix - 1) % 251);
            CHECK(ok, "multi-chunk IDX (gzip %d): %s", gz, rc ? err : "");
            lm_dataset_free(&d);
        }
        free(file);
    }

    /* Fuzz the header and body: never crash, never half-fill. */
    {
        uint32_t s = 99;
        int k, clean = 1;
        ni = make_idx(buf, 0x08, 3, idims, pix, 24);
        for (k = 0; k < 2000; k++) {
            unsigned char copy[256];
            size_t len = ni - (test_rand(&s) % 4 == 0 ? test_rand(&s) % ni : 0);
            memcpy(copy, buf, ni);
            copy[test_rand(&s) % 16] = (unsigned char)test_rand(&s);
            write_bytes(tpath("fuzz.idx"), copy, len);
            memset(&d, 0, sizeof d);
            d.n = -7;
            rc = lm_idx_load(&d, tpath("fuzz.idx"), NULL, 1, 0, err,
                             sizeof err);
            if (rc == 0)
                lm_dataset_free(&d);
            else if (rc != -1 || !dataset_untouched(&d))
                clean = 0;
        }
        CHECK(clean, "fuzzed IDX files fail cleanly");
    }
}

/* ======================================================================
 * data: CSV
 * ====================================================================== */

static void expect_csv_error(const char *path, int has_label, int features,
                             const char *want, const char *what)
{
    lm_dataset d;
    char err[512] = "";
    int rc;

    memset(&d, 0, sizeof d);
    d.n = -7;
    rc = lm_csv_load(&d, path, has_label, features, 1.0f, 0.0f, err,
                     sizeof err);
    CHECK(rc == -1 && dataset_untouched(&d), "%s: should fail, untouched",
          what);
    CHECK(strstr(err, path) == err, "%s: message does not name the file: %s",
          what, err);
    CHECK(want == NULL || strstr(err, want) != NULL,
          "%s: message lacks \"%s\": %s", what, want ? want : "", err);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static void test_csv(void)
{
    const char *p = tpath("data.csv");
    char want[700], err[512] = "";
    lm_dataset d;
    int rc;

    write_text(p, "label,a,b,c\r\n"
                  "1, 0.5, 2,-3\r\n"
                  "\r\n"
                  "0,1e-1,  4 ,5.25\r\n"
                  "2.0e+00,0,0,0\n");
    memset(&d, 0, sizeof d);
    rc = lm_csv_load(&d, p, 1, 3, 2.0f, 1.0f, err, sizeof err);
    CHECK(rc == 0, "good csv: %s", err);
    if (rc == 0) {
        CHECK(d.n == 3 && d.rank == 1 && d.dims[0] == 3 && d.sample_size == 3,
              "csv shape n=%d", d.n);
        CHECK(d.x[0] == 2.0f && d.x[1] == 5.0f && d.x[2] == -5.0f &&
                  d.x[3] == 1.2f && d.x[5] == 11.5f && d.x[8] == 1.0f,
              "csv values scaled");
        CHECK(d.y[0] == 1 && d.y[1] == 0 && d.y[2] == 2 &&
                  d.nclasses_seen == 3,
              "csv labels");
    }
    lm_dataset_free(&d);

    /* Many lines: the arrays grow while reading. */
    {
        FILE *f = fopen(p, "w");
        int k, ok = 1;
        if (f == NULL)
            exit(2);
        fprintf(f, "y,a,b\n");
        for (k = 0; k < 5000; k++)
            fprintf(f, "%d,%d,%d.5\n", k % 10, -k, k);
        if (fclose(f) != 0)
            exit(2);
        rc = lm_csv_load(&d, p, 1, 2, 1.0f, 0.0f, err, sizeof err);
        ok = rc == 0 && d.n == 5000 && d.sample_size == 2 &&
             d.nclasses_seen == 10;
        for (k = 0; ok && k < 5000; k++)
            ok = d.y[k] == k % 10 && d.x[2 * k] == (float)-k &&
                 d.x[2 * k + 1] == (float)k + 0.5f;
        CHECK(ok, "5000-line csv: %s", rc ? err : "");
        lm_dataset_free(&d);
    }

    /* Features inferred, no label column, no header. */
    write_text(p, "1,2\n3,4\n");
    rc = lm_csv_load(&d, p, 0, 0, 1.0f, 0.0f, err, sizeof err);
    CHECK(rc == 0 && d.n == 2 && d.sample_size == 2 && d.y == NULL &&
              d.x[3] == 4.0f,
          "unlabelled csv: %s", err);
    lm_dataset_free(&d);

    write_text(p, "7,1,2,3,4\n"
                  "1,1,2,3,4\n"
                  "2,1,2,3\n");
    snprintf(want, sizeof want, "%s:3: expected 5 fields, found 4", p);
    expect_csv_error(p, 1, 4, want, "wrong field count");
    expect_csv_error(p, 1, 0, want, "wrong field count (inferred)");
    expect_csv_error(p, 1, 5, "data.csv:1: expected 6 fields, found 5",
                     "wrong expected features");

    write_text(p, "h1,h2,h3\n1,2,3\n4,abc,6\n");
    snprintf(want, sizeof want, "%s:3: field 2 'abc' is not a finite number",
             p);
    expect_csv_error(p, 1, 2, want, "non-number field");
    write_text(p, "1,2,3\n4,\033[2J,6\n");
    expect_csv_error(p, 1, 2, "field 2 '?[2J' is not", "escape in a field");
    write_text(p, "1,2,3\n4,,6\n");
    expect_csv_error(p, 1, 2, "data.csv:2: field 2 is empty", "empty field");
    write_text(p, "1,2,3\n4,nan,6\n");
    expect_csv_error(p, 1, 2, "'nan' is not a finite number", "nan field");
    write_text(p, "1,2,3\n4,1e39,6\n");
    expect_csv_error(p, 1, 2, "'1e39' is not a finite number",
                     "float overflow");
    write_text(p, "1,2,3\n3.5,1,6\n");
    expect_csv_error(p, 1, 2, "data.csv:2: label '3.5' is not a whole number",
                     "fractional label");
    write_text(p, "1,2,3\n1 2,1,6\n");
    expect_csv_error(p, 1, 2, "field 1 '1 2'", "junk after number");
    write_text(p, "a,b,c\n\n");
    expect_csv_error(p, 1, 2, "no data lines", "header only");
    write_text(p, "");
    expect_csv_error(p, 1, 2, "no data lines", "empty file");
    write_text(p, "1\n");
    expect_csv_error(p, 1, 0, "at least one feature", "label only");
    write_bytes(p, "1,2\n3,\0\n", 8);
    expect_csv_error(p, 1, 0, "NUL byte", "NUL byte");
    expect_csv_error(tpath("missing.csv"), 1, 0, "cannot open", "missing");

    /* Fuzz: random bytes from a small alphabet. */
    {
        static const char alphabet[] = "0123456789,.-+e \r\nnaxi";
        uint32_t s = 5;
        int k, clean = 1;
        char text[128];
        for (k = 0; k < 2000; k++) {
            int len = (int)(test_rand(&s) % sizeof text), j;
            for (j = 0; j < len; j++)
                text[j] = alphabet[test_rand(&s) % (sizeof alphabet - 1)];
            write_bytes(p, text, (size_t)len);
            memset(&d, 0, sizeof d);
            d.n = -7;
            rc = lm_csv_load(&d, p, (int)(k % 2), 0, 1, 0, err, sizeof err);
            if (rc == 0) {
                if (d.n < 1 || d.sample_size < 1)
                    clean = 0;
                lm_dataset_free(&d);
            } else if (rc != -1 || !dataset_untouched(&d)) {
                clean = 0;
            }
        }
        CHECK(clean, "fuzzed CSV files fail cleanly");
    }
}

/* ======================================================================
 * progress
 * ====================================================================== */

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static char *slurp(FILE *f)
{
    long len;
    char *s;

    fflush(f);
    len = ftell(f);
    s = calloc((size_t)len + 1, 1);
    rewind(f);
    if (s && len > 0 && fread(s, 1, (size_t)len, f) != (size_t)len)
        s[0] = '\0';
    return s;
}

static void test_progress(void)
{
    lm_progress p;
    FILE *f = tmpfile();
    double t0 = lm_now(), t1;
    char *s;

    CHECK(f != NULL, "tmpfile");
    if (f == NULL)
        return;
    t1 = lm_now();
    CHECK(t1 >= t0 && t0 > 0.0, "lm_now monotonic");

    /* Not a terminal: nothing until the end, then one line. */
    lm_progress_begin(&p, f, 2, 5, 10);
    CHECK(p.tty == 0, "tmpfile is not a tty");
    lm_progress_update(&p, 1, 0.9f, 64);
    lm_progress_update(&p, 10, 0.5f, 640);
    lm_progress_end(&p, 0.5f, 640, "val acc 0.9000");
    s = slurp(f);
    CHECK(s && starts_with(s, "epoch 2/5 10/10 loss 0.5000 ") &&
              strstr(s, " samples/s ") && strstr(s, " val acc 0.9000\n") &&
              strchr(s, '\n') == s + strlen(s) - 1 && !strchr(s, '\r'),
          "non-tty progress: '%s'", s ? s : "");
    free(s);

    /* Forced terminal mode: \r lines, rate-limited, final newline. */
    fclose(f);
    f = tmpfile();
    if (f == NULL)
        return;
    lm_progress_begin(&p, f, 1, 3, 10);
    p.tty = 1;
    lm_progress_update(&p, 5, 0.25f, 5000);
    lm_progress_update(&p, 6, 0.25f, 6000); /* within 0.1 s: skipped */
    lm_progress_update(&p, 10, 0.125f, 12345); /* last batch: drawn */
    lm_progress_end(&p, 0.125f, 12345, NULL);
    s = slurp(f);
    CHECK(s && starts_with(s, "\repoch 1/3 [##########..........] 5/10 "
                              "loss 0.2500 "),
          "tty first line: '%s'", s ? s : "");
    CHECK(s && !strstr(s, "6/10") && strstr(s, "\repoch 1/3 [####################] "
                                               "10/10 loss 0.1250 ") &&
              strstr(s, " ETA ") && s[strlen(s) - 1] == '\n',
          "tty rate limit and last batch: '%s'", s ? s : "");
    free(s);
    fclose(f);

    /* NULL stream: silent. */
    lm_progress_begin(&p, NULL, 1, 1, 1);
    lm_progress_update(&p, 1, 0.0f, 1);
    lm_progress_end(&p, 0.0f, 1, NULL);
    CHECK(1, "NULL stream");
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof tmpdir, "%s/lamina-rt-test.XXXXXX",
             base && *base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 2;
    }
    test_gemm();
    test_gather();
    test_adam();
    test_rng();
    test_st_roundtrip();
    test_st_errors();
    test_st_atomic();
    test_idx();
    test_csv();
    test_progress();
    remove_tmpdir();
    printf("%d passed, %d failed\n", npass, nfail);
    fflush(stdout); /* before LeakSanitizer's exit handler */
    return nfail ? 1 : 0;
}
