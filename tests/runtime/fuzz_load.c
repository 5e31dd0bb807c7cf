/*
 * fuzz_load.c — libFuzzer target for the runtime's file readers: each
 * input is written to a temporary file and handed to lm_st_load,
 * lm_idx_load and lm_csv_load.  Any crash, sanitizer report or leak is a
 * bug; errors are expected and ignored.
 *
 *   clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime \
 *       tests/runtime/fuzz_load.c runtime/safetensors.c runtime/data.c \
 *       -lz -lm -o build/fuzz_load
 *   build/fuzz_load -max_total_time=60 -max_len=4096
 */
#define _POSIX_C_SOURCE 200809L
#include "lamina_rt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[256], epoch[8];
    float w[150], b[6];
    lm_tensor t[2];
    lm_st_meta meta;
    lm_dataset d;
    FILE *f;

    memset(t, 0, sizeof t);
    t[0].name = "c1.weight";
    t[0].rank = 4;
    t[0].shape[0] = 6;
    t[0].shape[1] = 1;
    t[0].shape[2] = 5;
    t[0].shape[3] = 5;
    t[0].data = w;
    t[1].name = "c1.bias";
    t[1].rank = 1;
    t[1].shape[0] = 6;
    t[1].data = b;
    meta.key = "epoch";
    meta.value = epoch;
    meta.size = sizeof epoch;
    meta.found = 0;

    snprintf(path, sizeof path, "/tmp/lamina-fuzz.%ld", (long)getpid());
    f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    if (fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    if (fclose(f) != 0)
        return 0;

    lm_st_load(path, t, 2, &meta, 1, size % 2 ? LM_ST_ALLOW_EXTRA : 0, err,
               sizeof err);
    memset(&d, 0, sizeof d);
    if (lm_idx_load(&d, path, size % 3 ? NULL : path, 1.0f, 0.0f, err,
                    sizeof err) == 0)
        lm_dataset_free(&d);
    if (lm_csv_load(&d, path, (int)(size % 2), 0, 1.0f, 0.0f, err,
                    sizeof err) == 0)
        lm_dataset_free(&d);
    remove(path);
    return 0;
}
