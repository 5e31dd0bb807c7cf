/*
 * bench.c — times one generated model; the C half of `make bench`.
 *
 * Generic over the model, like tests/codegen/harness.c: compile it once per
 * generated model with
 *     cc -O3 -march=native -DMODEL=lenet5 -DMODELU=LENET5 -include lenet5.h \
 *        -Iruntime bench/bench.c lenet5.c liblamina_rt.a ...
 * The model's compiled batch (NAME_BATCH) is the batch of every call:
 * build the training binary with --batch 64, the latency binary with
 * --batch 1 --inference-only and the throughput one with --batch 64
 * --inference-only.
 *
 *   bench train      THREADS SECONDS [WARMUP [CONFIG]]   train_step(n = BATCH)
 *   bench latency    THREADS SECONDS [WARMUP [CONFIG]]   forward(n = 1), each call timed
 *   bench throughput THREADS SECONDS [WARMUP [CONFIG]]   forward(n = BATCH)
 *   bench info                                           the BLAS and the model
 *
 * Each measurement prints one line of JSON on stdout (train also prints a
 * "memory" line: the instance's resident size against NAME_size();
 * latency a "weights" line: the time to read the parameters once, the
 * floor under a forward pass).
 * Fields common to every line: impl, model, measure, threads, batch,
 * value, unit; rep and phase are copied from the environment variables
 * BENCH_REP and BENCH_PHASE when set, so that bench/report.py can pair
 * this run with PyTorch's.
 *
 * Threads, by CONFIG:
 *   blas   the BLAS gets THREADS threads (lm_set_threads), one thread
 *          runs the model's passes (NAME_set_threads(m, 1): whole, or
 *          the parts of a laminac --threads build in turn);
 *   split  the model splits every pass in THREADS parts of the batch
 *          (NAME_set_threads(m, THREADS): laminac --threads, OpenMP) and
 *          the BLAS gets 1 thread, as the generated header advises;
 *   split_passive  the same, named apart: bench/run.sh runs it with
 *          OMP_WAIT_POLICY=PASSIVE (libgomp reads it before main).
 * The default is split when the model has NAME_set_threads (bench/run.sh
 * compiles with -DBENCH_HAS_THREADS then) and THREADS > 1, else blas;
 * with 1 thread the two are the same ("t1"). bench/run.sh also sets
 * OPENBLAS_NUM_THREADS and OMP_NUM_THREADS to match.
 *
 * Data: synthetic and identical to bench/torch_bench.py's: input value i
 * of the batch is bench_value(i) in [0, 1), label of sample s is
 * (7 s + 3) mod NUM_CLASSES.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "lamina_rt.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(MODEL, CAT(_, name))
#define U(name) CAT(MODELU, CAT(_, name))
#define STR_(a) #a
#define STR(a) STR_(a)

static int threads = 1;
static const char *config = "t1";

/* split or split_passive: the model's parts get the threads, the BLAS one. */
static int split_config(void)
{
    return !strncmp(config, "split", 5);
}

#ifdef BENCH_PROFILE
/* bench/gemmprof.c, linked in by bench/profile.sh: times every lm_sgemm
 * call of the timed loop by caller and shape. */
void bench_profile_begin(void);
void bench_profile_end(long calls, double seconds);
#endif

static void die(const char *what)
{
    fprintf(stderr, "bench(%s): %s\n", STR(MODEL), what);
    exit(2);
}

/* The instance's share of the threads (see CONFIG above). */
static void apply_threads(struct MODEL *m)
{
    const int split = split_config();
    int parts = split ? threads : 1;
#ifdef BENCH_HAS_THREADS
    int got = F(set_threads)(m, parts);
    if (got < parts && got == U(THREADS) && U(THREADS) == U(BATCH))
        parts = got; /* a batch of 1 (latency) is not split: one part */
    if (got != parts) {
        fprintf(stderr, "bench(%s): %s_set_threads(%d) gave %d (laminac --threads too low?)\n",
                STR(MODEL), STR(MODEL), parts, got);
        exit(2);
    }
#else
    (void)m;
    if (parts > 1)
        die("config split needs a model compiled with laminac --threads (and -DBENCH_HAS_THREADS)");
#endif
    lm_set_threads(split ? 1 : threads);
#ifdef _OPENMP
    omp_set_num_threads(parts);
#endif
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

/* The synthetic data, bit for bit what torch_bench.py computes with numpy:
 * the top 24 bits of the low 32 bits of i * 2654435761 (Knuth's
 * multiplicative hash), scaled to [0, 1). */
static float bench_value(uint32_t i)
{
    uint32_t h = i * 2654435761u;
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

static float *make_input(int n)
{
    size_t count = (size_t)n * U(IN_SIZE);
    float *x = xcalloc(count, sizeof(float));
    for (size_t i = 0; i < count; i++)
        x[i] = bench_value((uint32_t)i);
    return x;
}

#if U(TRAINING)
/* "VmRSS:     1234 kB" -> 1234; -1 when the line is not there. */
static long status_kb(const char *key)
{
    char line[256];
    size_t len = strlen(key);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, len) && line[len] == ':') {
            kb = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}
#endif

/* The start of every line: the fields all measurements share. */
static void head(const char *measure, int batch)
{
    const char *rep = getenv("BENCH_REP");
    const char *phase = getenv("BENCH_PHASE");
    printf("{\"impl\":\"lamina\",\"model\":\"%s\",\"measure\":\"%s\",\"threads\":%d,\"batch\":%d,"
           "\"config\":\"%s\"",
           STR(MODEL), measure, threads, batch, config);
    if (rep && *rep)
        printf(",\"rep\":%d", atoi(rep));
    if (phase && *phase) {
        printf(",\"phase\":\"");
        for (const char *p = phase; *p; p++)
            if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                putchar(*p);
        printf("\"");
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Warm-up for at least `warmup` seconds and 3 calls, then as many calls as
 * fit in `seconds` (at least 3). Calls run(m, arg) each time; when times is
 * not NULL, records each call's duration (up to cap of them). Returns the
 * number of timed calls and sets *elapsed. */
typedef void (*call_fn)(struct MODEL *m, void *arg);

static long timed_loop(struct MODEL *m, call_fn run, void *arg, double seconds,
                       double warmup, double *times, long cap, double *elapsed)
{
    double t0 = lm_now();
    for (int i = 0; i < 3 || lm_now() - t0 < warmup; i++)
        run(m, arg);
    long calls = 0;
#ifdef BENCH_PROFILE
    bench_profile_begin();
#endif
    double start = lm_now(), now = start;
    do {
        double before = now;
        run(m, arg);
        now = lm_now();
        if (times && calls < cap)
            times[calls] = now - before;
        calls++;
    } while (calls < 3 || now - start < seconds);
    *elapsed = now - start;
#ifdef BENCH_PROFILE
    bench_profile_end(calls, *elapsed);
#endif
    return calls;
}

struct fwd_arg {
    const float *x;
    float *y;
    int n;
};

static void run_forward(struct MODEL *m, void *arg)
{
    struct fwd_arg *a = arg;
    F(forward)(m, a->x, a->n, a->y);
}

/* A sum over n floats (n a multiple of 64) with 64 running sums: as fast
 * as the floats can be read. Kept out of line so that each call is one
 * read of the array. */
static __attribute__((noinline)) float read_all(const float *p, size_t n)
{
    float acc[64] = {0.0f}, sum = 0.0f;
    for (size_t i = 0; i < n; i += 64)
        for (int j = 0; j < 64; j++)
            acc[j] += p[i + j];
    for (int j = 0; j < 64; j++)
        sum += acc[j];
    return sum;
}

/* The floor under batch-1 latency: reading the instance's parameters
 * once, as a forward pass must, with nothing else to do (a vectorised sum,
 * hot in cache as in the latency loop; the median of many). Printed as a
 * "weights" line after the latency one. */
static void weights_floor(struct MODEL *m)
{
    const float *p = F(params)(m);
    const size_t n = U(NUM_PARAMS) - U(NUM_PARAMS) % 64;
    enum { REPS = 301 };
    static double t[REPS];
    float sum = 0.0f;
    double total = 0.0;
    int r = 0;
    for (; r < REPS && (r < 5 || total < 0.25); r++) { /* AlexNet: 5 reads of 250 MB */
        double t0 = lm_now();
        sum += read_all(p, n);
        t[r] = lm_now() - t0;
        total += t[r];
    }
    qsort(t, (size_t)r, sizeof t[0], cmp_double);
    head("weights", 1);
    printf(",\"value\":%.6g,\"unit\":\"us\",\"bytes\":%zu,\"GB_per_s\":%.4g,\"sum\":%.6g}\n",
           t[r / 2] * 1e6, n * sizeof(float), (double)(n * sizeof(float)) / t[r / 2] * 1e-9,
           (double)sum);
}

static int forward_bench(int latency, double seconds, double warmup)
{
    int n = latency ? 1 : U(BATCH);
    struct fwd_arg a;
    a.x = make_input(n);
    a.y = xcalloc((size_t)n * U(OUT_SIZE), sizeof(float));
    a.n = n;
    struct MODEL *m = F(create)(U(SEED));
    if (!m)
        die("out of memory creating the instance");
    apply_threads(m);

    long cap = 2000000;
    double *times = latency ? xcalloc((size_t)cap, sizeof(double)) : NULL;
    double elapsed;
    long calls = timed_loop(m, run_forward, &a, seconds, warmup, times, cap, &elapsed);
    float check = 0.0f;
    for (int i = 0; i < n * U(OUT_SIZE); i++)
        check += a.y[i];

    if (latency) {
        long k = calls < cap ? calls : cap;
        qsort(times, (size_t)k, sizeof(double), cmp_double);
        double med = k % 2 ? times[k / 2] : 0.5 * (times[k / 2 - 1] + times[k / 2]);
        head("latency", n);
        printf(",\"value\":%.6g,\"unit\":\"us\",\"min_us\":%.6g,\"p90_us\":%.6g,"
               "\"mean_us\":%.6g,\"calls\":%ld,\"seconds\":%.4g,\"output_sum\":%.6g}\n",
               med * 1e6, times[0] * 1e6, times[(long)(0.9 * (double)(k - 1))] * 1e6,
               elapsed / (double)calls * 1e6, calls, elapsed, (double)check);
        weights_floor(m);
    } else {
        head("throughput", n);
        printf(",\"value\":%.6g,\"unit\":\"samples/s\",\"calls\":%ld,\"seconds\":%.4g,"
               "\"output_sum\":%.6g}\n",
               (double)calls * n / elapsed, calls, elapsed, (double)check);
    }
    F(destroy)(m);
    return isfinite(check) ? 0 : 1;
}

#if U(TRAINING)
/* The model's target type (labels or floats), as its header declares it. */
typedef CAT(MODEL, _target) target_t;

struct train_arg {
    const float *x;
    const target_t *t;
    int n;
    float loss;
};

static void run_train(struct MODEL *m, void *arg)
{
    struct train_arg *a = arg;
    a->loss = F(train_step)(m, a->x, a->t, a->n);
}

static int train_bench(double seconds, double warmup)
{
    int n = U(BATCH);
    struct train_arg a;
    a.x = make_input(n);
    a.n = n;
    target_t *t = NULL;
    if (!U(TARGET_IS_INPUT)) {
        t = xcalloc((size_t)n * U(TARGET_SIZE), sizeof(target_t));
        for (int i = 0; i < n * U(TARGET_SIZE); i++)
#if U(LABELS)
            t[i] = (7 * i + 3) % U(NUM_CLASSES);
#else
            t[i] = (target_t)bench_value((uint32_t)i + 0x9e3779b9u);
#endif
    }
    a.t = t;

    /* The baseline the instance's memory is measured from: the data
     * above is resident, and a BLAS call has run on each thread that will
     * run the model's parts, so that the threads (their stacks) and the
     * BLAS's own buffers exist already. The call is large enough (1024
     * cubed) to touch all of OpenBLAS's packing buffers: with 256 the
     * MLP's first product, packing more, faulted in 120-450 KB more of
     * them (3.9% and 11% of the MLP's instance at 1 and 2 threads). */
#ifdef _OPENMP
#pragma omp parallel num_threads(split_config() ? threads : 1)
#endif
    {
        enum { S = 1024 };
        float *ga = xcalloc(S * S, sizeof(float)), *gb = xcalloc(S * S, sizeof(float));
        float *gc = xcalloc(S * S, sizeof(float));
        lm_sgemm(0, 0, S, S, S, 1.0f, ga, S, gb, S, 0.0f, gc, S);
        free(ga), free(gb), free(gc);
    }
    long rss0 = status_kb("VmRSS"), anon0 = status_kb("RssAnon");
    struct MODEL *m = F(create)(U(SEED));
    if (!m)
        die("out of memory creating the instance");
    apply_threads(m);
    long anon_created = status_kb("RssAnon");

    double elapsed;
    a.loss = NAN;
    run_train(m, &a);
    float first_loss = a.loss;
    long steps = timed_loop(m, run_train, &a, seconds, warmup, NULL, 0, &elapsed);
    long rss1 = status_kb("VmRSS"), hwm = status_kb("VmHWM"), anon1 = status_kb("RssAnon");

    head("train", n);
    printf(",\"value\":%.6g,\"unit\":\"samples/s\",\"steps\":%ld,\"seconds\":%.4g,"
           "\"first_loss\":%.6g,\"last_loss\":%.6g}\n",
           (double)steps * n / elapsed, steps, elapsed, (double)first_loss, (double)a.loss);
    /* The instance's resident size: what the process's anonymous memory
     * grew by from creating it and training (RssAnon; VmRSS also counts
     * the pages of code, libm's and OpenBLAS's, that the first steps
     * fault in, which are not the instance's). */
    size_t size = F(size)();
    double delta = (double)(anon1 - anon0) * 1024.0;
    head("memory", n);
    printf(",\"value\":%.6g,\"unit\":\"resident/size\",\"size_bytes\":%zu,"
           "\"resident_bytes\":%.0f,\"anon_before_kb\":%ld,\"anon_created_kb\":%ld,"
           "\"anon_after_kb\":%ld,\"vmrss_before_kb\":%ld,\"vmrss_after_kb\":%ld,"
           "\"vmhwm_kb\":%ld}\n",
           delta / (double)size, size, delta, anon0, anon_created, anon1, rss0, rss1, hwm);
    F(destroy)(m);
    return isfinite(a.loss) ? 0 : 1;
}
#endif

static void info(void)
{
    char desc[256];
    const char *name = lm_blas_name();
    lm_blas_describe(desc, sizeof desc);
    head("info", U(BATCH));
    printf(",\"training\":%d,\"size_bytes\":%zu,\"parts\":%d,\"openmp\":%d,\"blas\":\"",
           U(TRAINING), F(size)(),
#ifdef BENCH_HAS_THREADS
           U(THREADS),
#else
           1,
#endif
#ifdef _OPENMP
           1
#else
           0
#endif
    );
    for (const char *p = desc; *p; p++)
        if (*p != '"' && *p != '\\')
            putchar(*p);
    printf("\",\"blas_config\":\"");
    for (const char *p = name; *p; p++)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            putchar(*p);
    printf("\"}\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "info")) {
        info();
        return 0;
    }
    if (argc < 4 || argc > 6) {
        fprintf(stderr,
                "usage: %s train|latency|throughput THREADS SECONDS [WARMUP [CONFIG]] | info\n",
                argv[0]);
        return 2;
    }
    threads = atoi(argv[2]);
    if (threads < 1)
        threads = 1;
    double seconds = atof(argv[3]);
    double warmup = argc >= 5 ? atof(argv[4]) : 0.5;
#ifdef BENCH_HAS_THREADS
    config = threads > 1 ? "split" : "t1";
#else
    config = threads > 1 ? "blas" : "t1";
#endif
    if (argc == 6 && threads > 1) {
        if (strcmp(argv[5], "blas") && strcmp(argv[5], "split") && strcmp(argv[5], "split_passive")) {
            fprintf(stderr, "bench(%s): CONFIG is blas, split or split_passive, not '%s'\n",
                    STR(MODEL), argv[5]);
            return 2;
        }
        config = argv[5];
    }
    /* Until an instance exists (the baseline of the memory measurement
     * runs a BLAS call first): the BLAS threads of the config. */
    lm_set_threads(split_config() ? 1 : threads);
    int rc;
    if (!strcmp(argv[1], "latency"))
        rc = forward_bench(1, seconds, warmup);
    else if (!strcmp(argv[1], "throughput"))
        rc = forward_bench(0, seconds, warmup);
#if U(TRAINING)
    else if (!strcmp(argv[1], "train"))
        rc = train_bench(seconds, warmup);
#endif
    else {
        fprintf(stderr, "bench(%s): mode '%s' not available in this build (training %d)\n",
                STR(MODEL), argv[1], U(TRAINING));
        return 2;
    }
    fflush(stdout);
    if (rc)
        fprintf(stderr, "bench(%s): the result is not finite\n", STR(MODEL));
    return rc;
}
