/*
 * embed_check.c — a model compiled with --embed-weights CKPT gives the same
 * outputs, bit for bit, as the same model loading CKPT at run time.
 * Compiled with -DA=<prefix of the loading build> -DB=<prefix of the
 * embedded build> and both generated files; usage: embed_check CKPT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

int main(int argc, char **argv)
{
    char err[512];
    if (argc != 2)
        return 2;
    struct A *a = CAT(A, _create)(1);
    struct B *b = CAT(B, _create)(2); /* its seed must not matter */
    if (!a || !b || CAT(A, _load)(a, argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "embed_check: %s\n", err);
        return 2;
    }
    enum { N = 8 };
    static float x[N * CAT(AU, _IN_SIZE)], ya[N * CAT(AU, _OUT_SIZE)], yb[N * CAT(AU, _OUT_SIZE)];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f;
    CAT(A, _forward)(a, x, N, ya);
    CAT(B, _forward)(b, x, N, yb);
    int same = memcmp(ya, yb, sizeof ya) == 0;
    int refused = CAT(B, _load)(b, argv[1], err, sizeof err) != 0;
    printf("%s, load %s\n", same ? "same outputs" : "outputs differ",
           refused ? "refused" : "accepted");
    return same && refused ? 0 : 1;
}
