/*
 * gemmprof.c — where the time of lm_sgemm goes, by caller and shape; a
 * tool of bench/profile.sh, not part of `make bench`.
 *
 * Linked into a bench binary built with -DBENCH_PROFILE and
 * -Wl,--wrap=lm_sgemm (and -no-pie, so that return addresses are link-time
 * addresses): every lm_sgemm call of the timed loop goes through
 * __wrap_lm_sgemm, which times it and adds it to its (caller, shape)
 * entry. bench_profile_end prints, on stderr, one line per entry:
 *     gemm CALLER_ADDRESS ta tb m n k calls_per_step us_per_step
 * and a last line "total us_per_step_in_gemm us_per_step". profile.sh
 * turns the addresses into function names with addr2line. With several
 * threads (laminac --threads) the times are summed over the threads, so
 * they can add up to more than the step.
 */
#include <pthread.h>
#include <stdio.h>

#include "lamina_rt.h"

void __real_lm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc);
void __wrap_lm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc);
void bench_profile_begin(void);
void bench_profile_end(long calls, double seconds);

enum { MAX_ENTRIES = 512 };
static struct entry {
    void *caller;
    int ta, tb, m, n, k;
    long calls;
    double seconds;
} entries[MAX_ENTRIES];
static int nentries, on;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void __wrap_lm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc)
{
    double t0 = on ? lm_now() : 0.0;
    __real_lm_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (!on)
        return;
    double dt = lm_now() - t0;
    void *caller = __builtin_return_address(0);
    int i;
    pthread_mutex_lock(&lock);
    for (i = 0; i < nentries; i++) {
        struct entry *e = &entries[i];
        if (e->caller == caller && e->ta == trans_a && e->tb == trans_b && e->m == m &&
            e->n == n && e->k == k)
            break;
    }
    if (i == nentries && nentries < MAX_ENTRIES)
        entries[nentries++] = (struct entry){caller, trans_a, trans_b, m, n, k, 0, 0.0};
    if (i < nentries) {
        entries[i].calls++;
        entries[i].seconds += dt;
    }
    pthread_mutex_unlock(&lock);
}

void bench_profile_begin(void)
{
    nentries = 0;
    on = 1;
}

void bench_profile_end(long calls, double seconds)
{
    double total = 0.0;
    on = 0;
    for (int i = 0; i < nentries; i++) {
        const struct entry *e = &entries[i];
        fprintf(stderr, "gemm %p %d %d %d %d %d %g %g\n", e->caller, e->ta, e->tb, e->m, e->n,
                e->k, (double)e->calls / (double)calls, e->seconds / (double)calls * 1e6);
        total += e->seconds;
    }
    fprintf(stderr, "total %g %g\n", total / (double)calls * 1e6, seconds / (double)calls * 1e6);
}
