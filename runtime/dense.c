/*
 * dense.c — a dense layer's products on a processor with AVX-512. First
 * a batch through the weights, C = alpha A B^T + beta C, A [m,k] a row a
 * sample, B [n,k] a row an output, for the rows of A in blocks of 64.
 * lm_sgemm calls these kernels (internal.h) where lm_dense_nt_rows and
 * lm_dense_b_cols say they pay.
 *
 * Why not the BLAS: sgemm copies B, the large operand, into a layout of
 * its own at every call (the MLP's first layer, 64 x 256 x 784: 13% of
 * OpenBLAS's time in that copy, 91 GFLOP/s). Here the small operand is
 * copied instead: a block of 64 samples x 64 inputs of A, transposed into
 * at[i][s] (16 KiB, in the first-level cache), and B is read as it is:
 *
 *   for each chunk of up to 256 outputs, for each block of 64 inputs:
 *       at[i][s] = A[s][i]
 *       for each 6 outputs o:  ct[o][s] += sum_i B[o][i] at[i][s]
 *   C[s][o] = alpha ct[o][s] + beta C[s][o]
 *
 * The 6 x 64 sums of a tile are 24 vectors held in registers over the
 * block's inputs; each input costs 4 vector loads of at's row and 6
 * broadcasts of B's elements for 24 multiply-adds. Between blocks the sums
 * wait in ct (a chunk's: 64 KiB of stack). The transpositions, in and out,
 * go by 16 x 16 tiles in registers. One core: 102-108 GFLOP/s against
 * OpenBLAS's 91 on the MLP's first layer (64 x 256 x 784), 105 against 88
 * on LeNet-5's f5 (64 x 120 x 400); the peak is 115.
 *
 * The other orientation, op(A) B with B as it is (a dense layer's
 * gradients, and products of that form generally), needs no transposing:
 * see tile_b.
 *
 * Nothing allocates; 80 KiB of stack. The rounding differs from the
 * BLAS's (another order of the sums).
 */
#include "lamina_rt.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

enum {
    LM_DENSE_ROWS = 64,  /* samples a block: 4 vectors of 16 */
    LM_DENSE_DEPTH = 64, /* inputs a block */
    LM_DENSE_CHUNK = 256, /* outputs whose sums wait in ct */
    LM_DENSE_TILE = 6,   /* outputs a tile: 6 x 4 vectors of sums */
};

/* GCC 12 and later only (__builtin_shufflevector came with 12): clang 14
 * builds it at OpenBLAS's speed on the MLP's first layer and below it on
 * LeNet-5's f5 (90 and 82 GFLOP/s), for its own unrolling of the tiles. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define LM_DENSE_KERNEL 1
#define LM_AVX512 __attribute__((target("avx512f")))

typedef float lm_v16 __attribute__((vector_size(64)));

/* One step of a tile's row: its four vectors of sums += e x[0..3]. */
static LM_AVX512 LM_INLINE void madd_row(lm_v16 *acc, float e, const lm_v16 *x)
{
    const lm_v16 w = {e, e, e, e, e, e, e, e, e, e, e, e, e, e, e, e};

    acc[0] += w * x[0];
    acc[1] += w * x[1];
    acc[2] += w * x[2];
    acc[3] += w * x[3];
}

/* R outputs (R <= LM_DENSE_TILE, a constant where inlined) of B, from row
 * b, against the kb inputs of at (a row of 64 samples an input): their
 * sums for the 64 samples, rows of ct, started from 0 (first) or from ct. */
static LM_AVX512 LM_INLINE void tile(int R, int first, int kb, const float *at, const float *b,
                                     int ldb, float *ct)
{
    lm_v16 acc[LM_DENSE_TILE][4];
    int r, v, i;

#pragma GCC unroll 6
    for (r = 0; r < R; r++)
#pragma GCC unroll 4
        for (v = 0; v < 4; v++)
            acc[r][v] = first ? (lm_v16){0} : *(const lm_v16 *)(ct + r * LM_DENSE_ROWS + 16 * v);
    for (i = 0; i < kb; i++) {
        const lm_v16 *row = (const lm_v16 *)(at + i * LM_DENSE_ROWS);
        const lm_v16 x[4] = {row[0], row[1], row[2], row[3]};
#pragma GCC unroll 6
        for (r = 0; r < R; r++)
            madd_row(acc[r], b[(size_t)r * ldb + i], x);
    }
#pragma GCC unroll 6
    for (r = 0; r < R; r++)
#pragma GCC unroll 4
        for (v = 0; v < 4; v++)
            *(lm_v16 *)(ct + r * LM_DENSE_ROWS + 16 * v) = acc[r][v];
}

/* A 16 x 16 tile, 16 rows of 16 floats lds apart, into 16 rows ldd apart,
 * transposed: four rounds, each pairing rows d apart (d = 8, 4, 2, 1) and
 * exchanging their d x d blocks, one permutation of two vectors for each
 * row of a pair (GCC's __builtin_shufflevector). */
typedef float lm_v16u __attribute__((vector_size(64), aligned(4))); /* at any float */

/* Round d: row j with j & d clear takes the first d of each 2d floats of
 * rows j and j + d (LM_LO_d), row j + d the second d of each (LM_HI_d);
 * indices 16 and up are the second vector's. */
#define LM_LO_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define LM_HI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define LM_LO_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define LM_HI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define LM_LO_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define LM_HI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define LM_LO_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define LM_HI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define LM_ROUND(d)                                                                        \
    _Pragma("GCC unroll 16") for (j = 0; j < 16; j++)                                      \
        t[j] = j & (d) ? __builtin_shufflevector(r[j - (d)], r[j], LM_HI_##d)              \
                       : __builtin_shufflevector(r[j], r[j + (d)], LM_LO_##d);             \
    _Pragma("GCC unroll 16") for (j = 0; j < 16; j++)                                      \
        r[j] = t[j]

static LM_AVX512 LM_INLINE void transpose16(const float *src, size_t lds, float *dst, size_t ldd)
{
    lm_v16 r[16], t[16];
    int j;

#pragma GCC unroll 16
    for (j = 0; j < 16; j++)
        r[j] = *(const lm_v16u *)(src + j * lds);
    LM_ROUND(8);
    LM_ROUND(4);
    LM_ROUND(2);
    LM_ROUND(1);
#pragma GCC unroll 16
    for (j = 0; j < 16; j++)
        *(lm_v16u *)(dst + j * ldd) = r[j];
}

/* at[i][s] = A[s][i0 + i] for the 64 rows of the block and kb inputs: 16
 * x 16 tiles, the inputs past the last whole tile one by one. */
static LM_AVX512 void transpose_block(const float *a, int lda, int i0, int kb,
                                      float (*at)[LM_DENSE_ROWS])
{
    const int whole = kb / 16 * 16;
    int s, i;

    for (s = 0; s < LM_DENSE_ROWS; s += 16)
        for (i = 0; i < whole; i += 16)
            transpose16(a + (size_t)s * lda + i0 + i, (size_t)lda, &at[i][s], LM_DENSE_ROWS);
    for (s = 0; s < LM_DENSE_ROWS; s++)
        for (i = whole; i < kb; i++)
            at[i][s] = a[(size_t)s * lda + i0 + i];
}

/* C[s][o] = alpha ct[o][s] + beta C[s][o] for the block's 64 rows and nb
 * outputs (beta 0: C not read): 16 x 16 tiles transposed, the outputs
 * past the last whole tile one by one. */
static LM_AVX512 void write_c(int nb, float alpha, float (*ct)[LM_DENSE_ROWS], float beta, float *c,
                              int ldc)
{
    const int whole = nb / 16 * 16;
    float tt[16][16] __attribute__((aligned(64)));
    int s, o, j;

    for (s = 0; s < LM_DENSE_ROWS; s += 16)
        for (o = 0; o < whole; o += 16) {
            transpose16(&ct[o][s], LM_DENSE_ROWS, tt[0], 16);
            for (j = 0; j < 16; j++) {
                lm_v16u *cs = (lm_v16u *)(c + (size_t)(s + j) * ldc + o);
                const lm_v16 v = *(const lm_v16 *)tt[j];
                *cs = beta == 0.0f ? v * alpha : v * alpha + *cs * beta;
            }
        }
    for (s = 0; s < LM_DENSE_ROWS; s++) {
        float *cs = c + (size_t)s * ldc;
        for (o = whole; o < nb; o++)
            cs[o] = beta == 0.0f ? alpha * ct[o][s] : alpha * ct[o][s] + beta * cs[o];
    }
}

/* One block of 64 rows of A and C. */
static LM_AVX512 void block64(int n, int k, float alpha, const float *a, int lda, const float *b,
                              int ldb, float beta, float *c, int ldc)
{
    float at[LM_DENSE_DEPTH][LM_DENSE_ROWS] __attribute__((aligned(64)));
    float ct[LM_DENSE_CHUNK][LM_DENSE_ROWS] __attribute__((aligned(64)));
    int o0, i0;

    for (o0 = 0; o0 < n; o0 += LM_DENSE_CHUNK) {
        const int nb = n - o0 < LM_DENSE_CHUNK ? n - o0 : LM_DENSE_CHUNK;
        const float *bo = b + (size_t)o0 * ldb;
        for (i0 = 0; i0 < k; i0 += LM_DENSE_DEPTH) {
            const int kb = k - i0 < LM_DENSE_DEPTH ? k - i0 : LM_DENSE_DEPTH, first = i0 == 0;
            int r = 0;
            transpose_block(a, lda, i0, kb, at);
            for (; r + LM_DENSE_TILE <= nb; r += LM_DENSE_TILE)
                tile(LM_DENSE_TILE, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]);
            switch (nb - r) { /* the last outputs, each count its own code */
            case 5: tile(5, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]); break;
            case 4: tile(4, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]); break;
            case 3: tile(3, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]); break;
            case 2: tile(2, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]); break;
            case 1: tile(1, first, kb, at[0], bo + (size_t)r * ldb + i0, ldb, ct[r]); break;
            default: break;
            }
        }
        write_c(nb, alpha, ct, beta, c + o0, ldc);
    }
}

/* The other orientation, B as it is: C = alpha op(A) B + beta C with B
 * [k,n] row-major, op(A) [m,k] either A [m,k] or A^T for A [k,m]. A dense
 * layer's weight gradient (dW = dY^T X: the batch is k) and its input
 * gradient (dX = dY W). Nothing to transpose: a tile is R rows of C x 4
 * vectors of 16 columns, its sums in registers over the whole of k, each
 * step 4 vector loads of B's row p and R broadcasts of op(A)'s column p,
 * then written to C. The 64 columns of B a tile reads (k x 256 bytes)
 * stay in cache for all the row tiles of C. */
static LM_AVX512 LM_INLINE void tile_b(int R, int trans_a, int k, float alpha, const float *a, int lda,
                                       const float *b, int ldb, float beta, float *c, int ldc)
{
    lm_v16 acc[LM_DENSE_TILE][4];
    int r, v, p;

#pragma GCC unroll 6
    for (r = 0; r < R; r++)
#pragma GCC unroll 4
        for (v = 0; v < 4; v++)
            acc[r][v] = (lm_v16){0};
    for (p = 0; p < k; p++) {
        const float *bp = b + (size_t)p * ldb;
        const lm_v16 x[4] = {*(const lm_v16u *)bp, *(const lm_v16u *)(bp + 16), *(const lm_v16u *)(bp + 32),
                             *(const lm_v16u *)(bp + 48)};
#pragma GCC unroll 6
        for (r = 0; r < R; r++)
            madd_row(acc[r], trans_a ? a[(size_t)p * lda + r] : a[(size_t)r * lda + p], x);
    }
#pragma GCC unroll 6
    for (r = 0; r < R; r++)
#pragma GCC unroll 4
        for (v = 0; v < 4; v++) {
            lm_v16u *cr = (lm_v16u *)(c + (size_t)r * ldc + 16 * v);
            *cr = beta == 0.0f ? acc[r][v] * alpha : acc[r][v] * alpha + *cr * beta;
        }
}

/* Columns j0 .. j0 + 64 of C, all m rows, six at a time. */
static LM_AVX512 void columns64(int trans_a, int m, int k, float alpha, const float *a, int lda,
                                const float *b, int ldb, float beta, float *c, int ldc)
{
    int r = 0;

    /* row r of op(A): A's row r, or A's column r */
#define LM_A_ROW(r) (trans_a ? a + (r) : a + (size_t)(r) * lda)
    for (; r + LM_DENSE_TILE <= m; r += LM_DENSE_TILE)
        tile_b(LM_DENSE_TILE, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc);
    switch (m - r) { /* the last rows, each count its own code */
    case 5: tile_b(5, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc); break;
    case 4: tile_b(4, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc); break;
    case 3: tile_b(3, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc); break;
    case 2: tile_b(2, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc); break;
    case 1: tile_b(1, trans_a, k, alpha, LM_A_ROW(r), lda, b, ldb, beta, c + (size_t)r * ldc, ldc); break;
    default: break;
    }
#undef LM_A_ROW
}
#else
#define LM_DENSE_KERNEL 0
#endif

int lm_dense_nt_rows(int m, int n, int k)
{
#if LM_DENSE_KERNEL
    /* Measured against OpenBLAS 0.3.21 at 64 rows (bench/sgemm, GFLOP/s):
     * ahead from 32 outputs and 64 inputs (32 x 256: 92 against 84; 64 x
     * 64: 93 against 86; LeNet-5's f6, 84 x 120: 97 against 86), behind
     * below (10 x 800: 67 against 101; 16 x 800: 80 against 110; 32 x 32:
     * even). */
    if (m >= LM_DENSE_ROWS && n >= 32 && k >= 64 && __builtin_cpu_supports("avx512f"))
        return m / LM_DENSE_ROWS * LM_DENSE_ROWS;
#else
    (void)m, (void)n, (void)k;
#endif
    return 0;
}

void lm_dense_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc)
{
#if LM_DENSE_KERNEL
    int s;

    if (m % LM_DENSE_ROWS != 0 || lm_dense_nt_rows(m, n, k) != m) {
        fprintf(stderr, "lm_dense_nt: %d x %d x %d is not for this kernel\n", m, n, k);
        abort();
    }
    for (s = 0; s < m; s += LM_DENSE_ROWS)
        block64(n, k, alpha, a + (size_t)s * lda, lda, b, ldb, beta, c + (size_t)s * ldc, ldc);
#else
    (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta;
    (void)c, (void)ldc;
    fprintf(stderr, "lm_dense_nt: not built for this machine\n");
    abort();
#endif
}

int lm_dense_b_cols(int m, int n, int k)
{
#if LM_DENSE_KERNEL
    /* Measured against OpenBLAS 0.3.21 (bench/sgemm, GFLOP/s): the MLP's
     * weight gradients 256 x 784 x 64 and 128 x 256 x 64, 103 and 103-108
     * against 100 and 97; its input gradient 64 x 256 x 128, 111-112
     * against 97; LeNet-5's f5 120 x 400 x 64 and 64 x 400 x 120, 108-109
     * and 110-112 against 99 and 98; AlexNet's conv1 forward, 96 x 3025 x
     * 363, 83-87 against 70-78. With the last columns to the BLAS where n
     * is not a multiple of 64, a narrow product is no faster (the CNN's
     * conv2, 32 x 100 x 144: 107 against 108), hence n >= 256 there. k
     * at most 1024: a tile's 64 columns of B, k x 256 bytes, are read
     * again for each 6 rows of C and must stay in the second-level cache
     * (k = 1024: 256 x 512 x 1024, 106 against 91; AlexNet's conv2, k =
     * 2400: even). */
    if (m >= 32 && n >= 64 && (n % 64 == 0 || n >= 256) && k >= 16 && k <= 1024 &&
        __builtin_cpu_supports("avx512f"))
        return n / 64 * 64;
#else
    (void)m, (void)n, (void)k;
#endif
    return 0;
}

void lm_dense_b(int trans_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                int ldb, float beta, float *c, int ldc)
{
#if LM_DENSE_KERNEL
    int j;

    if (n % 64 != 0 || lm_dense_b_cols(m, n, k) != n) {
        fprintf(stderr, "lm_dense_b: %d x %d x %d is not for this kernel\n", m, n, k);
        abort();
    }
    for (j = 0; j < n; j += 64)
        columns64(trans_a, m, k, alpha, a, lda, b + j, ldb, beta, c + j, ldc);
#else
    (void)trans_a, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    fprintf(stderr, "lm_dense_b: not built for this machine\n");
    abort();
#endif
}
