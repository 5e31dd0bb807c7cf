/*
 * peak.c — this machine's single-precision FMA peak, measured; part of
 * `make bench`, which states every result as a fraction of it.
 *
 *   peak THREADS SECONDS     one line of JSON: GFLOP/s on THREADS threads
 *                            (with "phase" from BENCH_PHASE when set)
 *
 * Each thread runs a register-blocked loop of independent fused
 * multiply-adds (ACC accumulators, more than latency x throughput of the
 * FMA units, so that the loop is bound by FMA throughput alone), in
 * blocks of BLOCK iterations, until SECONDS have passed; the result is
 * 2 x 8 (or 16) x ACC x iterations / wall time, summed over the threads,
 * the best of 3 runs. The 256-bit AVX2 loop is the reference ("fma256");
 * when the compiler targets AVX-512 the 512-bit loop is measured too
 * ("fma512") and the larger of the two is reported as "value" (on AMD
 * Zen 4 they are equal: its AVX-512 units are 256 bits wide).
 *
 * Build: cc -O2 -march=native -pthread bench/peak.c -o peak. Without FMA
 * (no -mfma / -march=native on an older CPU) it falls back to GCC vector
 * extensions with separate multiply and add, and says so ("fma":0).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__FMA__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

enum { ACC = 12, BLOCK = 1 << 20, MAX_THREADS = 64 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct job {
    int width;      /* 8: 256-bit, 16: 512-bit */
    double seconds; /* how long to run */
    double flops;   /* out */
    float sink;     /* out: keeps the result alive */
};

#if defined(__FMA__)
static float loop256(long blocks)
{
    __m256 acc[ACC];
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < blocks * BLOCK; it++) {
        acc[0] = _mm256_fmadd_ps(acc[0], a, b);
        acc[1] = _mm256_fmadd_ps(acc[1], a, b);
        acc[2] = _mm256_fmadd_ps(acc[2], a, b);
        acc[3] = _mm256_fmadd_ps(acc[3], a, b);
        acc[4] = _mm256_fmadd_ps(acc[4], a, b);
        acc[5] = _mm256_fmadd_ps(acc[5], a, b);
        acc[6] = _mm256_fmadd_ps(acc[6], a, b);
        acc[7] = _mm256_fmadd_ps(acc[7], a, b);
        acc[8] = _mm256_fmadd_ps(acc[8], a, b);
        acc[9] = _mm256_fmadd_ps(acc[9], a, b);
        acc[10] = _mm256_fmadd_ps(acc[10], a, b);
        acc[11] = _mm256_fmadd_ps(acc[11], a, b);
    }
    __m256 s = acc[0];
    for (int i = 1; i < ACC; i++)
        s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
#else
typedef float v8 __attribute__((vector_size(32)));
static float loop256(long blocks)
{
    v8 acc[ACC], a, b;
    for (int j = 0; j < 8; j++)
        a[j] = 0.999999f, b[j] = 1e-7f;
    for (int i = 0; i < ACC; i++)
        for (int j = 0; j < 8; j++)
            acc[i][j] = (float)i;
    for (long it = 0; it < blocks * BLOCK; it++)
        for (int i = 0; i < ACC; i++)
            acc[i] = acc[i] * a + b;
    float s = 0.0f;
    for (int i = 0; i < ACC; i++)
        s += acc[i][0] + acc[i][7];
    return s;
}
#endif

#if defined(__AVX512F__)
static float loop512(long blocks)
{
    __m512 acc[ACC];
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < blocks * BLOCK; it++) {
        acc[0] = _mm512_fmadd_ps(acc[0], a, b);
        acc[1] = _mm512_fmadd_ps(acc[1], a, b);
        acc[2] = _mm512_fmadd_ps(acc[2], a, b);
        acc[3] = _mm512_fmadd_ps(acc[3], a, b);
        acc[4] = _mm512_fmadd_ps(acc[4], a, b);
        acc[5] = _mm512_fmadd_ps(acc[5], a, b);
        acc[6] = _mm512_fmadd_ps(acc[6], a, b);
        acc[7] = _mm512_fmadd_ps(acc[7], a, b);
        acc[8] = _mm512_fmadd_ps(acc[8], a, b);
        acc[9] = _mm512_fmadd_ps(acc[9], a, b);
        acc[10] = _mm512_fmadd_ps(acc[10], a, b);
        acc[11] = _mm512_fmadd_ps(acc[11], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < ACC; i++)
        s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

static void *worker(void *arg)
{
    struct job *j = arg;
    long blocks = 0;
    double t0 = now();
    float sink = 0.0f;
    do {
#if defined(__AVX512F__)
        sink += j->width == 16 ? loop512(1) : loop256(1);
#else
        sink += loop256(1);
#endif
        blocks++;
    } while (now() - t0 < j->seconds);
    j->flops = 2.0 * j->width * ACC * (double)BLOCK * (double)blocks;
    j->sink = sink;
    return NULL;
}

/* GFLOP/s of `threads` threads running the loop of `width` lanes. */
static double run(int width, int threads, double seconds, float *sink)
{
    pthread_t tid[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    double t0 = now(), flops = 0.0;
    for (int i = 0; i < threads; i++) {
        jobs[i].width = width;
        jobs[i].seconds = seconds;
        if (pthread_create(&tid[i], NULL, worker, &jobs[i]) != 0) {
            fprintf(stderr, "peak: pthread_create failed\n");
            exit(2);
        }
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        flops += jobs[i].flops;
        *sink += jobs[i].sink;
    }
    return flops / (now() - t0) * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: peak THREADS SECONDS\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (threads < 1 || threads > MAX_THREADS || !(seconds > 0.0)) {
        fprintf(stderr, "peak: THREADS must be 1..%d and SECONDS positive\n", MAX_THREADS);
        return 2;
    }
    float sink = 0.0f;
    double best256 = 0.0, best512 = 0.0;
    for (int r = 0; r < 3; r++) {
        double g = run(8, threads, seconds / 3, &sink);
        best256 = g > best256 ? g : best256;
#if defined(__AVX512F__)
        g = run(16, threads, seconds / 3, &sink);
        best512 = g > best512 ? g : best512;
#endif
    }
    double best = best256 > best512 ? best256 : best512;
#if defined(__FMA__)
    int fma = 1;
#else
    int fma = 0;
#endif
    const char *phase = getenv("BENCH_PHASE");
    printf("{\"impl\":\"probe\",\"measure\":\"fma_peak\",\"threads\":%d,", threads);
    if (phase && *phase && !strpbrk(phase, "\"\\"))
        printf("\"phase\":\"%s\",", phase);
    printf("\"value\":%.4g,\"unit\":\"GFLOP/s\",\"fma256\":%.4g", best, best256);
    if (best512 > 0.0)
        printf(",\"fma512\":%.4g", best512);
    printf(",\"fma\":%d,\"sink\":%g}\n", fma, sink != sink ? 0.0 : (double)(sink > 0.0f));
    return 0;
}
