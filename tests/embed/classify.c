/* classify.c: a trained LeNet-5 inside a C program. Usage: classify CKPT IMAGES [INDEX] */
#include <stdio.h>
#include <stdlib.h>
#include "lamina_rt.h" /* lm_idx_load, to read the image */
#include "lenet5.h"    /* from laminac examples/lenet5.lam */

int main(int argc, char **argv)
{
    static const char *names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    char err[512] = "usage: classify CKPT IMAGES [INDEX]";
    lm_dataset images = {0};
    float y[LENET5_OUT_SIZE];
    int i = argc > 3 ? atoi(argv[3]) : 0, best = 0;
    lenet5 *m = lenet5_create(0);
    int ok = argc > 2 && m && lenet5_load(m, argv[1], err, sizeof err) == 0 &&
             lm_idx_load(&images, argv[2], NULL, LENET5_SCALE, LENET5_SHIFT, err, sizeof err) == 0;
    if (!ok || i < 0 || i >= images.n) {
        fprintf(stderr, "classify: %s\n", ok ? "no such image" : err);
        return 1;
    }
    lenet5_forward(m, images.x + (size_t)i * LENET5_IN_SIZE, 1, y);
    for (int k = 1; k < LENET5_OUT_SIZE; k++)
        best = y[k] > y[best] ? k : best;
    printf("image %d: %s (class %d)\n", i, names[best], best);
    lm_dataset_free(&images);
    lenet5_destroy(m);
    return 0;
}
