/*
 * alexnet_step.c — AlexNet, as generated from examples/alexnet.lam, on
 * random data: one forward pass on one 227x227x3 input, then one training
 * step at batch 2. Built with -fsanitize=address,undefined by run.sh, so
 * any out-of-bounds access or undefined behaviour in the generated code
 * ends the test. Prints "ok ..." lines; exits non-zero on a failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "alexnet.h"
#include "lamina_rt.h"

int main(void)
{
    static float x[2 * ALEXNET_IN_SIZE], y[ALEXNET_OUT_SIZE];
    alexnet_target labels[2] = {3, 997};
    alexnet *m = alexnet_create(42);
    int failed = 0;
    if (!m) {
        fprintf(stderr, "alexnet_step: cannot allocate %lu bytes\n", (unsigned long)alexnet_size());
        return 1;
    }
    printf("instance: %.0f MB\n", alexnet_size() / 1e6);
    lm_fill_uniform(x, 2 * ALEXNET_IN_SIZE, 0.0f, 1.0f, 7, 0);

    alexnet_forward(m, x, 1, y);
    double sum = 0.0;
    int finite = 1;
    for (int k = 0; k < ALEXNET_OUT_SIZE; k++) {
        finite &= isfinite(y[k]) != 0;
        sum += y[k];
    }
    printf("%s forward: 1 input -> %d finite outputs (sum %.4f)\n", finite ? "ok" : "FAIL",
           ALEXNET_OUT_SIZE, sum);
    failed += !finite;

    /* A fresh network's loss is about log(1000) = 6.91; one step must keep
     * it finite and change the parameters. */
    float before = alexnet_params(m)[0];
    float loss = alexnet_train_step(m, x, labels, 2);
    float after = alexnet_params(m)[0];
    int step_ok = isfinite(loss) && loss > 5.0f && loss < 9.0f && alexnet_get_step(m) == 1 &&
                  before != after;
    printf("%s train step: batch 2, loss %.4f, step %lld\n", step_ok ? "ok" : "FAIL", loss,
           (long long)alexnet_get_step(m));
    failed += !step_ok;
    alexnet_destroy(m);
    return failed ? 1 : 0;
}
