/*
 * st_roundtrip.c — read a safetensors file with lm_st_load and write it
 * back with lm_st_save, for tests/runtime/test_st_torch.py.
 *
 *   st_roundtrip IN OUT [-m KEY]... NAME=D0,D1,...  ...
 *
 * Each NAME=shape asks for one F32 tensor of that shape ("NAME=" for a
 * scalar); each -m KEY asks for one metadata value, which is written back
 * when the file has it.  Exit status 0 on success; 1 with lm_st_load's or
 * lm_st_save's message on stderr otherwise; 2 on a usage error.
 */
#include "lamina_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TENSORS 64
#define MAX_META 16

static int usage(void)
{
    fprintf(stderr, "usage: st_roundtrip IN OUT [-m KEY]... NAME=D0,D1,...\n");
    return 2;
}

/* "NAME=6,1,5,5" into t (name points into arg, which it cuts). */
static int parse_spec(char *arg, lm_tensor *t)
{
    char *eq = strchr(arg, '='), *s, *end;

    if (eq == NULL)
        return -1;
    *eq = '\0';
    memset(t, 0, sizeof *t);
    t->name = arg;
    s = eq + 1;
    while (*s != '\0') {
        long long d;
        if (t->rank == LM_MAX_RANK)
            return -1;
        d = strtoll(s, &end, 10);
        if (end == s || d < 0 || (*end != ',' && *end != '\0'))
            return -1;
        t->shape[t->rank++] = d;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int main(int argc, char **argv)
{
    lm_tensor t[MAX_TENSORS];
    lm_st_meta meta[MAX_META];
    char values[MAX_META][256];
    const char *kv[2 * MAX_META];
    char err[512];
    int nt = 0, nm = 0, nkv = 0, i, rc = 1;

    memset(t, 0, sizeof t);
    memset(meta, 0, sizeof meta);
    if (argc < 3)
        return usage();
    for (i = 3; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0) {
            if (i + 1 >= argc || nm == MAX_META)
                return usage();
            meta[nm].key = argv[++i];
            meta[nm].value = values[nm];
            meta[nm].size = sizeof values[nm];
            meta[nm].found = 0;
            nm++;
        } else {
            if (nt == MAX_TENSORS || parse_spec(argv[i], &t[nt]) != 0)
                return usage();
            nt++;
        }
    }
    for (i = 0; i < nt; i++) {
        size_t count = 1;
        int j;
        for (j = 0; j < t[i].rank; j++)
            count *= (size_t)t[i].shape[j];
        t[i].data = malloc((count ? count : 1) * sizeof(float));
        if (t[i].data == NULL) {
            fprintf(stderr, "st_roundtrip: out of memory\n");
            goto out;
        }
    }
    if (lm_st_load(argv[1], t, nt, meta, nm, 0, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    for (i = 0; i < nm; i++) {
        if (meta[i].found) {
            kv[2 * nkv] = meta[i].key;
            kv[2 * nkv + 1] = meta[i].value;
            nkv++;
        }
    }
    if (lm_st_save(argv[2], t, nt, kv, nkv, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    rc = 0;
out:
    for (i = 0; i < nt; i++)
        free(t[i].data);
    return rc;
}
