/*
 * rng.c — counter-based random numbers, initialisers and shuffling.
 *
 * Owns the Philox4x32-10 block function and everything derived from it.
 * Every value is a pure function of (seed, stream, counter): there is no
 * generator state, global or otherwise, and this file must never grow any,
 * so that results do not depend on call order or threads.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC 2011): a 128-bit counter
 * and a 64-bit key go through ten rounds of two 32x32->64 multiplications
 * and xors, with the key bumped by Weyl constants between rounds.  Here the
 * key is the seed and the counter is (counter, stream), each split into
 * 32-bit halves, low half first.
 */
#include "lamina_rt.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* out = Philox4x32-10(ctr, key). */
static void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                          uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    int round;

    for (round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;

        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The 128-bit block for (seed, stream, counter). */
static void block(uint64_t seed, uint64_t stream, uint64_t counter,
                  uint32_t out[4])
{
    uint32_t ctr[4], key[2];

    ctr[0] = (uint32_t)counter;
    ctr[1] = (uint32_t)(counter >> 32);
    ctr[2] = (uint32_t)stream;
    ctr[3] = (uint32_t)(stream >> 32);
    key[0] = (uint32_t)seed;
    key[1] = (uint32_t)(seed >> 32);
    philox4x32_10(ctr, key, out);
}

uint64_t lm_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint32_t w[4];

    block(seed, stream, counter, w);
    return (uint64_t)w[0] << 32 | w[1];
}

float lm_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* The top 24 bits, exactly representable in a float. */
    return (float)(lm_rand_u64(seed, stream, counter) >> 40) * 0x1p-24f;
}

/*
 * Box-Muller: z = sqrt(-2 ln u1) cos(2 pi u2), u1 in (0, 1] and u2 in
 * [0, 1), each from 53 bits of the block.  u1 >= 2^-53 bounds |z| by
 * sqrt(106 ln 2) < 8.6.
 */
float lm_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter)
{
    const double two_pi = 6.283185307179586476925286766559;
    uint32_t w[4];
    uint64_t b1, b2;
    double u1, u2;

    block(seed, stream, counter, w);
    b1 = ((uint64_t)w[0] << 32 | w[1]) >> 11;
    b2 = ((uint64_t)w[2] << 32 | w[3]) >> 11;
    u1 = ((double)b1 + 1.0) * 0x1p-53;
    u2 = (double)b2 * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
}

void lm_fill_uniform(float *w, size_t n, float lo, float hi, uint64_t seed,
                     uint64_t stream)
{
    float width = hi - lo;
    float top = lo < hi ? nextafterf(hi, lo) : hi;
    size_t i;

    for (i = 0; i < n; i++) {
        float v = lo + width * lm_rand_uniform(seed, stream, (uint64_t)i);
        /* lo + width * u can round up to hi; keep the interval half-open. */
        w[i] = lo < hi && v > top ? top : v;
    }
}

void lm_fill_normal(float *w, size_t n, float mean, float std, uint64_t seed,
                    uint64_t stream)
{
    size_t i;

    for (i = 0; i < n; i++)
        w[i] = mean + std * lm_rand_normal(seed, stream, (uint64_t)i);
}

void lm_shuffle(int32_t *idx, int n, uint64_t seed, uint64_t stream)
{
    int i;

    for (i = n - 1; i > 0; i--) {
        uint64_t r = lm_rand_u64(seed, stream, (uint64_t)i);
        int j = (int)(r % (uint64_t)(i + 1));
        int32_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
}
