/*
 * internal.h — what the runtime's files share that generated code does not
 * see: how a function is built for several instruction sets, the best
 * picked when the program loads (GCC's and clang's function
 * multiversioning), so that the library itself is built for any x86-64;
 * and gemm.c's path to dense.c's kernels.
 *
 * LM_MULTIVERSION: the function is built for AVX-512, for AVX2 with FMA
 * (Haswell) and for plain x86-64.
 * LM_INLINE: a helper compiled into each clone that calls it.
 */
#ifndef LM_INTERNAL_H
#define LM_INTERNAL_H

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define LM_MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define LM_MULTIVERSION
#endif

#if defined(__GNUC__)
#define LM_INLINE __attribute__((always_inline)) inline
#else
#define LM_INLINE
#endif

/*
 * dense.c: C = alpha A B^T + beta C (A [m,k], B [n,k], row-major) for the
 * rows of A in whole blocks of 64, on a processor with AVX-512: a batch
 * through a dense layer's weights. lm_dense_nt_rows returns how many rows
 * it takes (a multiple of 64, 0 where the kernel would not be faster than
 * the BLAS or cannot run); lm_dense_nt computes those rows. The caller
 * computes the others.
 */
int lm_dense_nt_rows(int m, int n, int k);
void lm_dense_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);

/*
 * dense.c, the other orientation: C = alpha op(A) B + beta C with B [k,n]
 * as it is (op(A): A, or A^T with trans_a), for the columns of C in whole
 * blocks of 64. lm_dense_b_cols returns how many columns it takes (0: none);
 * lm_dense_b computes them.
 */
int lm_dense_b_cols(int m, int n, int k);
void lm_dense_b(int trans_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                int ldb, float beta, float *c, int ldc);

#endif
