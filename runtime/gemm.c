/*
 * gemm.c — matrix products for generated code.
 *
 * Owns lm_sgemm and the BLAS bookkeeping (threads, name).  The part of a
 * product that dense.c's kernels compute faster (a dense layer's forms,
 * on an AVX-512 machine) goes there first.  For the rest, with
 * LM_BLAS_OPENBLAS defined, lm_sgemm forwards to cblas_sgemm (or
 * cblas_sgemv for a single row or column); otherwise it runs the portable
 * blocked routine below.  It must not allocate from the heap (generated
 * code promises no allocation inside forward or train-step) and must not
 * keep state between calls.
 *
 * The portable routine is the textbook Goto/BLIS loop nest, scaled down:
 * C is first scaled by beta (set to zero when beta == 0, never read), then
 * for each KC-deep slice of the shared dimension, a KC x NC panel of op(B)
 * and an MC x KC block of op(A) are packed into stack buffers in the order
 * the micro-kernel reads them, and the micro-kernel computes an MR x NR
 * tile of the product with its accumulators in registers.  Packing makes
 * the four transpose combinations one code path.  The inner loops have
 * constant trip counts so that an ordinary -O2 build vectorises them.
 */
#include "lamina_rt.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The part of the product that dense.c's kernels take, computed there:
 * with B transposed (a batch through a dense layer's weights, A B^T),
 * whole blocks of 64 rows of C; with B as it is (op(A) B: a dense layer's
 * gradients), whole blocks of 64 columns. m, n and the pointers are
 * moved past it; the caller computes the rest. The kernels run on one
 * thread: with the BLAS on more (lm_set_threads), all of it is the BLAS's
 * (AlexNet's batch-1 latency on two threads went 24.3 -> 28.9 ms when
 * its convolutions took the one-thread kernel). */
static void dense_part(int trans_a, int trans_b, int *m, int *n, int k, float alpha, const float **a,
                       int lda, const float **b, int ldb, float beta, float **c, int ldc)
{
    int done;

    if (k == 0 || alpha == 0.0f || lm_get_threads() > 1)
        return;
    if (!trans_a && trans_b && (done = lm_dense_nt_rows(*m, *n, k)) > 0) {
        lm_dense_nt(done, *n, k, alpha, *a, lda, *b, ldb, beta, *c, ldc);
        *m -= done, *a += (size_t)done * lda, *c += (size_t)done * ldc;
    } else if (!trans_b && (done = lm_dense_b_cols(*m, *n, k)) > 0) {
        lm_dense_b(trans_a, *m, done, k, alpha, *a, lda, *b, ldb, beta, *c, ldc);
        *n -= done, *b += done, *c += done;
    }
}

#ifdef LM_BLAS_OPENBLAS
#include <cblas.h>
#endif

/* Programming errors only: a wrong size is a bug in the caller. */
static void check_args(int trans_a, int trans_b, int m, int n, int k, int lda,
                       int ldb, int ldc)
{
    int a_cols = trans_a ? m : k;
    int b_cols = trans_b ? k : n;
    const char *bad = NULL;

    if (m < 0 || n < 0 || k < 0)
        bad = "negative m, n or k";
    else if (lda < (a_cols > 1 ? a_cols : 1))
        bad = "lda smaller than the row length of A";
    else if (ldb < (b_cols > 1 ? b_cols : 1))
        bad = "ldb smaller than the row length of B";
    else if (ldc < (n > 1 ? n : 1))
        bad = "ldc smaller than n";
    if (bad) {
        fprintf(stderr,
                "lm_sgemm: %s (trans_a=%d trans_b=%d m=%d n=%d k=%d lda=%d "
                "ldb=%d ldc=%d)\n",
                bad, trans_a, trans_b, m, n, k, lda, ldb, ldc);
        abort();
    }
}

/* C = beta * C over m x n; beta == 0 writes zeros without reading C. */
static void scale_c(int m, int n, float beta, float *c, int ldc)
{
    int i, j;

    if (beta == 1.0f)
        return;
    for (i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;
        if (beta == 0.0f) {
            for (j = 0; j < n; j++)
                row[j] = 0.0f;
        } else {
            for (j = 0; j < n; j++)
                row[j] *= beta;
        }
    }
}

/* A few rows through a large transposed matrix, C = alpha A B^T + beta C
 * with A [m,k], m <= LM_FEW_ROWS, and B [n,k] of at least 2^18 floats: a
 * small batch through a big dense layer (AlexNet's fc6 at batch 4: B is
 * 151 MB). sgemm first copies (packs) all of B, reading it twice and
 * writing it once; here each row of B is read from memory once and
 * dotted with every row of A while it is in cache (AlexNet's fc6:
 * 33 -> 19 ms), four rows of B with four of A at a time (19 -> 13 ms;
 * memory streams B in 7.5). */
enum { LM_FEW_ROWS = 8, LM_FEW_LANES = 16 };

static int few_rows(int trans_a, int trans_b, int m, int n, int k)
{
    return !trans_a && trans_b && m >= 2 && m <= LM_FEW_ROWS && (size_t)n * (size_t)k >= (1u << 18);
}

/* dot16 and gather_rows: built for AVX-512, AVX2 and plain x86-64
 * (internal.h). */

/* One dot product of length k, with four vectors of 16 running sums so
 * that four additions are in flight (one chain would wait on each add). */
LM_MULTIVERSION
static float dot16(const float *x, const float *w, int k)
{
    float a0[LM_FEW_LANES] = {0.0f}, a1[LM_FEW_LANES] = {0.0f};
    float a2[LM_FEW_LANES] = {0.0f}, a3[LM_FEW_LANES] = {0.0f}, sum = 0.0f;
    const int kv = k - k % (4 * LM_FEW_LANES);
    int i, j;

    for (i = 0; i < kv; i += 4 * LM_FEW_LANES) {
        for (j = 0; j < LM_FEW_LANES; j++)
            a0[j] += x[i + j] * w[i + j];
        for (j = 0; j < LM_FEW_LANES; j++)
            a1[j] += x[i + LM_FEW_LANES + j] * w[i + LM_FEW_LANES + j];
        for (j = 0; j < LM_FEW_LANES; j++)
            a2[j] += x[i + 2 * LM_FEW_LANES + j] * w[i + 2 * LM_FEW_LANES + j];
        for (j = 0; j < LM_FEW_LANES; j++)
            a3[j] += x[i + 3 * LM_FEW_LANES + j] * w[i + 3 * LM_FEW_LANES + j];
    }
    for (j = 0; j < LM_FEW_LANES; j++)
        sum += (a0[j] + a1[j]) + (a2[j] + a3[j]);
    for (i = kv; i < k; i++)
        sum += x[i] * w[i];
    return sum;
}

/* The 4 x 4 dot products of rows o..o+3 of B (w, ldw apart) with rows
 * s..s+3 of A (x, ldx apart), into d[o][s]: each vector of B loaded meets
 * the four rows of A, and each of A the four of B, 16 running sums of 16
 * lanes (with AVX-512, one register each). One row of B against one of A
 * (dot16) loads two vectors for every multiply-add: AlexNet's fc6 at
 * batch 4 took 19 ms that way, 13-14 ms this way (memory streams its
 * 151 MB in 7.5). The sums are GCC's and clang's vector type where there
 * is one: as plain arrays, gcc -O2 keeps them in memory. */
#if defined(__GNUC__)
typedef float lm_v16 __attribute__((vector_size(LM_FEW_LANES * sizeof(float))));

LM_MULTIVERSION
static void dot4x4(const float *x, int ldx, const float *w, int ldw, int k, float d[4][4])
{
    lm_v16 acc[4][4];
    const int kv = k - k % LM_FEW_LANES;
    int i, j, o, s;

    memset(acc, 0, sizeof acc);
    for (i = 0; i < kv; i += LM_FEW_LANES) {
        lm_v16 x0, x1, x2, x3, v; /* loaded with memcpy: no alignment needed */
        memcpy(&x0, x + i, sizeof v);
        memcpy(&x1, x + (size_t)ldx + i, sizeof v);
        memcpy(&x2, x + 2 * (size_t)ldx + i, sizeof v);
        memcpy(&x3, x + 3 * (size_t)ldx + i, sizeof v);
        for (o = 0; o < 4; o++) {
            memcpy(&v, w + (size_t)o * ldw + i, sizeof v);
            acc[o][0] += v * x0;
            acc[o][1] += v * x1;
            acc[o][2] += v * x2;
            acc[o][3] += v * x3;
        }
    }
    for (o = 0; o < 4; o++)
        for (s = 0; s < 4; s++) {
            float sum = 0.0f;
            for (j = 0; j < LM_FEW_LANES; j++)
                sum += acc[o][s][j];
            for (i = kv; i < k; i++)
                sum += x[(size_t)s * ldx + i] * w[(size_t)o * ldw + i];
            d[o][s] = sum;
        }
}
#else
static void dot4x4(const float *x, int ldx, const float *w, int ldw, int k, float d[4][4])
{
    int o, s;

    for (o = 0; o < 4; o++)
        for (s = 0; s < 4; s++)
            d[o][s] = dot16(x + (size_t)s * ldx, w + (size_t)o * ldw, k);
}
#endif

static void put_c(float *cs, float alpha, float sum, float beta)
{
    *cs = alpha * sum + (beta == 0.0f ? 0.0f : beta * *cs);
}

/* Rows of B four at a time against rows of A four at a time (dot4x4);
 * what is left over one by one (dot16), each row of B read from memory
 * by its first dot product and from cache by the others. */
static void few_rows_bt(int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc)
{
    const int n4 = n - n % 4, m4 = m - m % 4;
    int o, s, q, r;
    float d[4][4];

    for (o = 0; o < n4; o += 4) {
        for (s = 0; s < m4; s += 4) {
            dot4x4(a + (size_t)s * lda, lda, b + (size_t)o * ldb, ldb, k, d);
            for (q = 0; q < 4; q++)
                for (r = 0; r < 4; r++)
                    put_c(c + (size_t)(s + r) * ldc + o + q, alpha, d[q][r], beta);
        }
        for (q = 0; q < 4; q++)
            for (s = m4; s < m; s++)
                put_c(c + (size_t)s * ldc + o + q, alpha,
                      dot16(a + (size_t)s * lda, b + (size_t)(o + q) * ldb, k), beta);
    }
    for (o = n4; o < n; o++)
        for (s = 0; s < m; s++)
            put_c(c + (size_t)s * ldc + o, alpha, dot16(a + (size_t)s * lda, b + (size_t)o * ldb, k), beta);
}

/* lm_sgather_sum: 48 columns at a time (three vectors of 16, one
 * AVX-512 register each), the rows taken two by two so that six sums
 * are in flight; then 16 at a time; then one by one. */
#if defined(__GNUC__)
/* v += g * p[0..16), and p[0..16) += v: loads and stores with memcpy (no
 * alignment needed), macros rather than functions so that the vectors
 * never cross a call (the clones below each have their own ABI). */
#define FMA16(v, g, p) (memcpy(&x, (p), sizeof x), (v) += (g) * x)
#define ADD16(p, v) (memcpy(&x, (p), sizeof x), x += (v), memcpy((p), &x, sizeof x))

static LM_INLINE void gather48(int cnt, const float *g, const int *off, const float *base, float *out)
{
    const int L = LM_FEW_LANES;
    lm_v16 a0 = {0.0f}, a1 = {0.0f}, a2 = {0.0f}, b0 = {0.0f}, b1 = {0.0f}, b2 = {0.0f}, x;
    int t;

    for (t = 0; t + 2 <= cnt; t += 2) {
        const float *r = base + off[t], *q = base + off[t + 1];
        FMA16(a0, g[t], r);
        FMA16(a1, g[t], r + L);
        FMA16(a2, g[t], r + 2 * L);
        FMA16(b0, g[t + 1], q);
        FMA16(b1, g[t + 1], q + L);
        FMA16(b2, g[t + 1], q + 2 * L);
    }
    if (t < cnt) {
        const float *r = base + off[t];
        FMA16(a0, g[t], r);
        FMA16(a1, g[t], r + L);
        FMA16(a2, g[t], r + 2 * L);
    }
    ADD16(out, a0 + b0);
    ADD16(out + L, a1 + b1);
    ADD16(out + 2 * L, a2 + b2);
}

static LM_INLINE void gather16(int cnt, const float *g, const int *off, const float *base, float *out)
{
    lm_v16 a = {0.0f}, b = {0.0f}, x;
    int t;

    for (t = 0; t + 2 <= cnt; t += 2) {
        FMA16(a, g[t], base + off[t]);
        FMA16(b, g[t + 1], base + off[t + 1]);
    }
    if (t < cnt)
        FMA16(a, g[t], base + off[t]);
    ADD16(out, a + b);
}
#undef FMA16
#undef ADD16
#endif

/* The rows, each in blocks of 48 and 16 columns, then one by one: one
 * function, built for each instruction set (the blocks inlined into it),
 * so that a call costs one indirect jump however short its rows. */
LM_MULTIVERSION
static void gather_rows(int rows, int n, int cnt, const float *g, const int *off,
                        const float *base, int ldb, float *out, int ldo)
{
    int r, k, t;

    for (r = 0; r < rows; r++, base += ldb, out += ldo) {
        k = 0;
#if defined(__GNUC__)
        for (; k + 3 * LM_FEW_LANES <= n; k += 3 * LM_FEW_LANES)
            gather48(cnt, g, off, base + k, out + k);
        for (; k + LM_FEW_LANES <= n; k += LM_FEW_LANES)
            gather16(cnt, g, off, base + k, out + k);
#endif
        for (; k < n; k++) {
            float sum = 0.0f;
            for (t = 0; t < cnt; t++)
                sum += g[t] * base[off[t] + k];
            out[k] += sum;
        }
    }
}

void lm_sgather_sum(int rows, int n, int cnt, const float *g, const int *off,
                    const float *base, int ldb, float *out, int ldo)
{
    if (rows < 0 || n < 0 || cnt < 0) {
        fprintf(stderr, "lm_sgather_sum: negative size (rows=%d n=%d cnt=%d)\n", rows, n, cnt);
        abort();
    }
    gather_rows(rows, n, cnt, g, off, base, ldb, out, ldo);
}

#ifdef LM_BLAS_OPENBLAS

void lm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc)
{
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;

    check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    dense_part(trans_a, trans_b, &m, &n, k, alpha, &a, lda, &b, ldb, beta, &c, ldc);
    if (m == 0 || n == 0)
        return;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    if (few_rows(trans_a, trans_b, m, n, k)) {
        few_rows_bt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* For gemv, beta == 0 is done here: not every OpenBLAS version's
     * scal step keeps NaN in y out of the result. */
    if (n == 1) {
        /* column c[i*ldc] = alpha * op(A) x + beta c, x = op(B)[:,0] */
        int incx = trans_b ? 1 : ldb;
        if (beta == 0.0f)
            scale_c(m, 1, 0.0f, c, ldc);
        cblas_sgemv(CblasRowMajor, ta, trans_a ? k : m, trans_a ? m : k,
                    alpha, a, lda, b, incx, beta, c, ldc);
        return;
    }
    if (m == 1) {
        /* row c = alpha * op(B)^T x + beta c, x = op(A)[0,:] */
        int incx = trans_a ? lda : 1;
        if (beta == 0.0f)
            scale_c(1, n, 0.0f, c, ldc);
        cblas_sgemv(CblasRowMajor, trans_b ? CblasNoTrans : CblasTrans,
                    trans_b ? n : k, trans_b ? k : n, alpha, b, ldb, a, incx,
                    beta, c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

void lm_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int lm_get_threads(void)
{
    return openblas_get_num_threads();
}

const char *lm_blas_name(void)
{
    const char *s = openblas_get_config();
    return s ? s : "OpenBLAS";
}

void lm_blas_describe(char *buf, size_t len)
{
    const char *cfg = lm_blas_name();
    const char *core = openblas_get_corename();
    int nthreads = lm_get_threads();
    int words = 0;
    size_t n = 0;

    if (len == 0)
        return;
    /* The configuration string starts "OpenBLAS 0.3.21 ..."; keep the
     * first two words. */
    while (cfg[n] != '\0') {
        if (cfg[n] == ' ' && ++words == 2)
            break;
        n++;
    }
    snprintf(buf, len, "%.*s (%s, %d thread%s)", (int)n, cfg,
             core ? core : "unknown core", nthreads, nthreads == 1 ? "" : "s");
}

#else /* portable C */

enum {
    MR = 4,   /* micro-tile rows (of C and op(A)); micro_kernel assumes 4 */
    NR = 8,   /* micro-tile columns (of C and op(B)) */
    KC = 128, /* depth of one packed slice */
    MC = 64,  /* rows of op(A) packed at once; multiple of MR */
    NC = 256  /* columns of op(B) packed at once; multiple of NR */
};

/*
 * Pack op(A)[i0 .. i0+mc, p0 .. p0+kc) into ap as MR-row slivers:
 * ap[s*kc*MR + p*MR + r] = op(A)[i0 + s*MR + r, p0 + p], zero past mc.
 */
static void pack_a(int trans_a, const float *a, int lda, int i0, int mc,
                   int p0, int kc, float *ap)
{
    int s, p, r;

    for (s = 0; s * MR < mc; s++) {
        float *dst = ap + (size_t)s * kc * MR;
        int rows = mc - s * MR < MR ? mc - s * MR : MR;
        for (p = 0; p < kc; p++) {
            for (r = 0; r < rows; r++) {
                int i = i0 + s * MR + r;
                dst[p * MR + r] = trans_a ? a[(size_t)(p0 + p) * lda + i]
                                          : a[(size_t)i * lda + p0 + p];
            }
            for (; r < MR; r++)
                dst[p * MR + r] = 0.0f;
        }
    }
}

/*
 * Pack op(B)[p0 .. p0+kc, j0 .. j0+nc) into bp as NR-column slivers:
 * bp[s*kc*NR + p*NR + q] = op(B)[p0 + p, j0 + s*NR + q], zero past nc.
 */
static void pack_b(int trans_b, const float *b, int ldb, int p0, int kc,
                   int j0, int nc, float *bp)
{
    int s, p, q;

    for (s = 0; s * NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * NR;
        int cols = nc - s * NR < NR ? nc - s * NR : NR;
        for (p = 0; p < kc; p++) {
            if (!trans_b) {
                const float *src = b + (size_t)(p0 + p) * ldb + j0 + s * NR;
                for (q = 0; q < cols; q++)
                    dst[p * NR + q] = src[q];
            } else {
                for (q = 0; q < cols; q++)
                    dst[p * NR + q] =
                        b[(size_t)(j0 + s * NR + q) * ldb + p0 + p];
            }
            for (q = cols; q < NR; q++)
                dst[p * NR + q] = 0.0f;
        }
    }
}

/*
 * C[0..rows, 0..cols) += alpha * sum_p ap[p, :]^T bp[p, :], for one MR x NR
 * tile; ap and bp are packed slivers kc deep.  The four rows are spelled
 * out (MR == 4) as separate arrays: that is what both gcc and clang keep in
 * vector registers; a 2-D accumulator array makes clang shuffle.
 */
static void micro_kernel(int kc, const float *restrict ap,
                         const float *restrict bp, float alpha, float *c,
                         int ldc, int rows, int cols)
{
    float c0[NR], c1[NR], c2[NR], c3[NR];
    float *acc[MR];
    int p, r, q;

    for (q = 0; q < NR; q++)
        c0[q] = c1[q] = c2[q] = c3[q] = 0.0f;
    for (p = 0; p < kc; p++) {
        const float *bq = bp + p * NR;
        const float *a4 = ap + p * MR;
        for (q = 0; q < NR; q++) {
            c0[q] += a4[0] * bq[q];
            c1[q] += a4[1] * bq[q];
            c2[q] += a4[2] * bq[q];
            c3[q] += a4[3] * bq[q];
        }
    }
    acc[0] = c0;
    acc[1] = c1;
    acc[2] = c2;
    acc[3] = c3;
    for (r = 0; r < rows; r++) {
        float *crow = c + (size_t)r * ldc;
        for (q = 0; q < cols; q++)
            crow[q] += alpha * acc[r][q];
    }
}

void lm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc)
{
    float ap[MC * KC];
    float bp[KC * NC];
    int jc, pc, ic, jr, ir;

    check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    dense_part(trans_a, trans_b, &m, &n, k, alpha, &a, lda, &b, ldb, beta, &c, ldc);
    if (m == 0 || n == 0)
        return;
    if (alpha != 0.0f && few_rows(trans_a, trans_b, m, n, k)) {
        few_rows_bt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    scale_c(m, n, beta, c, ldc);
    if (k == 0 || alpha == 0.0f)
        return;

    for (jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            pack_b(trans_b, b, ldb, pc, kc, jc, nc, bp);
            for (ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                pack_a(trans_a, a, lda, ic, mc, pc, kc, ap);
                for (jr = 0; jr < nc; jr += NR) {
                    int cols = nc - jr < NR ? nc - jr : NR;
                    for (ir = 0; ir < mc; ir += MR) {
                        int rows = mc - ir < MR ? mc - ir : MR;
                        micro_kernel(kc, ap + (size_t)ir * kc,
                                     bp + (size_t)jr * kc, alpha,
                                     c + (size_t)(ic + ir) * ldc + jc + jr,
                                     ldc, rows, cols);
                    }
                }
            }
        }
    }
}

void lm_set_threads(int n)
{
    (void)n;
}

int lm_get_threads(void)
{
    return 1;
}

const char *lm_blas_name(void)
{
    return "portable C";
}

void lm_blas_describe(char *buf, size_t len)
{
    if (len > 0)
        snprintf(buf, len, "portable C (1 thread)");
}

#endif
