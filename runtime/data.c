/*
 * data.c — datasets: IDX (plain or gzip'd) and CSV readers, and the check
 * of a dataset against a model's input.
 *
 * Owns lm_idx_load, lm_csv_load, lm_dataset_check and lm_dataset_free.
 * Readers turn files into an lm_dataset of floats and int32 labels, and
 * nothing else: no shuffling, batching or normalisation beyond the affine
 * x = value * scale + shift the caller asks for.  They must not trust the
 * file: every count in a header is checked, memory grows only with bytes
 * actually read, and every error names the file (and, for CSV, the line).
 * On error the caller's lm_dataset is left untouched.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline */
#endif
#include "lamina_rt.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

#if defined(__GNUC__) || defined(__clang__)
#define DATA_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DATA_PRINTF(f, a)
#endif

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    DATA_PRINTF(3, 4);

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- IDX ---------------------------------------------------------------- */

/*
 * IDX (LeCun's MNIST format): magic 0x00 0x00 <type> <ndims>, then ndims
 * big-endian uint32 dimensions, then the elements, row-major.
 */
typedef struct idx_file {
    int ndims;
    uint32_t dims[4];
    size_t count;         /* dims[0] */
    size_t elems;         /* product of dims[1..ndims) (1 for labels) */
    unsigned char *bytes; /* count * elems */
} idx_file;

static const char *idx_type_name(int type)
{
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
    }
}

/* The message for a failed or short gzread. */
static const char *gz_message(gzFile g)
{
    int code;
    const char *msg = gzerror(g, &code);

    if (code == Z_ERRNO)
        return strerror(errno);
    return msg && *msg ? msg : "unknown error";
}

/*
 * Read up to n bytes; returns the number read, which is less than n at the
 * end of the file or on an error; *failed tells which (the message is then
 * in gzerror).
 */
static size_t gz_read_full(gzFile g, unsigned char *buf, size_t n,
                           int *failed)
{
    size_t got = 0;

    *failed = 0;
    while (got < n) {
        size_t want = n - got < (1u << 20) ? n - got : (1u << 20);
        int r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) {
            *failed = 1;
            break;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/*
 * Read the IDX file at path; want_labels selects which kind it must be.
 * On success fills *out (caller frees out->bytes) and returns 0.
 */
static int idx_read(const char *path, int want_labels, idx_file *out,
                    char *err, size_t errlen)
{
    const char *what = want_labels ? "labels" : "pixel data";
    unsigned char head[4], dimbuf[16], *bytes = NULL;
    size_t total, got = 0, cap = 0;
    gzFile g;
    int i, type, ndims, failed, rc = -1;
    size_t r;

    errno = 0;
    g = gzopen(path, "rb");
    if (g == NULL) {
        seterr(err, errlen, "%s: cannot open: %s", path,
               errno ? strerror(errno) : "out of memory");
        return -1;
    }

    r = gz_read_full(g, head, 4, &failed);
    if (failed) {
        seterr(err, errlen, "%s: read error: %s", path, gz_message(g));
        goto out;
    }
    if (r < 4) {
        seterr(err, errlen, "%s: not an IDX file: only %zu bytes long", path,
               r);
        goto out;
    }
    type = head[2];
    ndims = head[3];
    if (head[0] != 0 || head[1] != 0) {
        seterr(err, errlen,
               "%s: not an IDX file (magic 0x%02X%02X%02X%02X, expected %s)",
               path, head[0], head[1], head[2], head[3],
               want_labels ? "0x00000801 for labels"
                           : "0x00000803 for unsigned-byte images");
        goto out;
    }
    if (type != 0x08) {
        seterr(err, errlen,
               "%s: IDX element type %s (0x%02X) is not supported; lamina "
               "reads unsigned bytes (0x08)",
               path, idx_type_name(type), type);
        goto out;
    }
    if (want_labels && ndims != 1) {
        seterr(err, errlen,
               "%s: IDX file has %d dimensions, but a labels file has 1 (magic "
               "0x00000801)%s",
               path, ndims, ndims >= 2 ? "; is this the images file?" : "");
        goto out;
    }
    if (!want_labels && (ndims < 2 || ndims > 4)) {
        seterr(err, errlen,
               "%s: IDX file has %d dimension%s, but an images file has 2 to 4 "
               "(MNIST: magic 0x00000803)%s",
               path, ndims, ndims == 1 ? "" : "s",
               ndims == 1 ? "; is this the labels file?" : "");
        goto out;
    }

    r = gz_read_full(g, dimbuf, 4 * (size_t)ndims, &failed);
    if (failed) {
        seterr(err, errlen, "%s: read error: %s", path, gz_message(g));
        goto out;
    }
    if (r < 4 * (size_t)ndims) {
        seterr(err, errlen, "%s: truncated: the IDX header ends inside its "
               "dimensions", path);
        goto out;
    }
    out->ndims = ndims;
    out->elems = 1;
    for (i = 0; i < ndims; i++) {
        uint32_t d = (uint32_t)dimbuf[4 * i] << 24 |
                     (uint32_t)dimbuf[4 * i + 1] << 16 |
                     (uint32_t)dimbuf[4 * i + 2] << 8 | dimbuf[4 * i + 3];
        if (d == 0 || d > INT_MAX) {
            seterr(err, errlen, "%s: IDX dimension %d is %lu; it must be "
                   "between 1 and %d", path, i, (unsigned long)d, INT_MAX);
            goto out;
        }
        out->dims[i] = d;
        if (i > 0) {
            if (out->elems > (size_t)INT_MAX / d) {
                seterr(err, errlen, "%s: IDX sample size is larger than %d "
                       "values", path, INT_MAX);
                goto out;
            }
            out->elems *= d;
        }
    }
    out->count = out->dims[0];
    if (out->count > SIZE_MAX / sizeof(float) / out->elems) {
        seterr(err, errlen, "%s: IDX data is too large for memory", path);
        goto out;
    }
    total = out->count * out->elems;

    /* Grow with what arrives, so a lying header cannot allocate much. */
    while (got < total) {
        size_t want;
        if (got == cap) {
            size_t ncap = cap ? 2 * cap : ((size_t)1 << 20);
            unsigned char *nb;
            if (ncap > total)
                ncap = total;
            nb = realloc(bytes, ncap);
            if (nb == NULL) {
                seterr(err, errlen, "%s: out of memory", path);
                goto out;
            }
            bytes = nb;
            cap = ncap;
        }
        want = cap - got;
        r = gz_read_full(g, bytes + got, want, &failed);
        got += r;
        if (failed) {
            int code;
            gzerror(g, &code);
            if (code == Z_BUF_ERROR) {
                seterr(err, errlen, "%s: truncated: expected %zu bytes of %s, "
                       "got %zu (the gzip stream ends early)",
                       path, total, what, got);
            } else {
                seterr(err, errlen, "%s: read error: %s", path,
                       gz_message(g));
            }
            goto out;
        }
        if (r < want) {
            seterr(err, errlen, "%s: truncated: expected %zu bytes of %s, got "
                   "%zu", path, total, what, got);
            goto out;
        }
    }
    /* One more byte: there should be none, and for gzip this also makes
     * zlib check the stream's CRC and length. */
    r = gz_read_full(g, head, 1, &failed);
    if (failed) {
        seterr(err, errlen, "%s: read error after the %s: %s", path, what,
               gz_message(g));
        goto out;
    }
    if (r > 0) {
        seterr(err, errlen, "%s: trailing data: the file is longer than its "
               "IDX header says (%zu bytes of %s)", path, total, what);
        goto out;
    }
    out->bytes = bytes;
    bytes = NULL;
    rc = 0;

out:
    free(bytes);
    i = gzclose(g);
    if (i != Z_OK && rc == 0) {
        seterr(err, errlen, "%s: error closing: %s", path,
               i == Z_ERRNO ? strerror(errno) : "zlib error");
        free(out->bytes);
        out->bytes = NULL;
        rc = -1;
    }
    return rc;
}

int lm_idx_load(lm_dataset *d, const char *images_path,
                const char *labels_path, float scale, float shift, char *err,
                size_t errlen)
{
    idx_file im, lb;
    lm_dataset out;
    size_t i, total;
    int maxlabel = -1;

    memset(&im, 0, sizeof im);
    memset(&lb, 0, sizeof lb);
    memset(&out, 0, sizeof out);
    if (idx_read(images_path, 0, &im, err, errlen) != 0)
        return -1;
    if (labels_path != NULL) {
        if (idx_read(labels_path, 1, &lb, err, errlen) != 0)
            goto fail;
        if (lb.count != im.count) {
            seterr(err, errlen, "%s: has %zu labels, but %s has %zu images",
                   labels_path, lb.count, images_path, im.count);
            goto fail;
        }
    }

    total = im.count * im.elems;
    out.x = malloc(total * sizeof *out.x);
    if (out.x == NULL) {
        seterr(err, errlen, "%s: out of memory for %zu floats", images_path,
               total);
        goto fail;
    }
    for (i = 0; i < total; i++)
        out.x[i] = (float)im.bytes[i] * scale + shift;
    if (labels_path != NULL) {
        out.y = malloc(lb.count * sizeof *out.y);
        if (out.y == NULL) {
            seterr(err, errlen, "%s: out of memory", labels_path);
            goto fail;
        }
        for (i = 0; i < lb.count; i++) {
            out.y[i] = lb.bytes[i];
            if (out.y[i] > maxlabel)
                maxlabel = out.y[i];
        }
        out.nclasses_seen = maxlabel + 1;
    }
    out.n = (int)im.count;
    out.rank = im.ndims - 1;
    for (i = 1; i < (size_t)im.ndims; i++)
        out.dims[i - 1] = (int)im.dims[i];
    out.sample_size = (int)im.elems;
    free(im.bytes);
    free(lb.bytes);
    *d = out;
    return 0;

fail:
    free(im.bytes);
    free(lb.bytes);
    free(out.x);
    free(out.y);
    return -1;
}

/* ---- CSV ------------------------------------------------------------------ */

/* Field text without surrounding spaces/tabs, in place. */
static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *e = '\0';
    return s;
}

/* Up to 40 bytes of a field for a message, control characters as '?'. */
static const char *printable(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 4 < len && i < 40; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7F ? '?' : s[i];
    buf[i] = '\0';
    if (s[i] != '\0')
        strcpy(buf + i, "...");
    return buf;
}

/* Parse a whole trimmed field as a finite number that fits a float. */
static int parse_number(const char *s, double *out)
{
    char *end;
    double v;

    if (*s == '\0')
        return 0;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v) || fabs(v) > FLT_MAX)
        return 0;
    *out = v;
    return 1;
}

/* 1 if the first comma-separated field of s is a number (s unchanged). */
static int first_field_is_number(const char *s)
{
    char *end;
    double v;

    while (*s == ' ' || *s == '\t')
        s++;
    v = strtod(s, &end);
    if (end == s || !isfinite(v))
        return 0;
    while (*end == ' ' || *end == '\t')
        end++;
    return *end == ',' || *end == '\0';
}

/* Number of comma-separated fields in line. */
static int count_fields(const char *line)
{
    int n = 1;

    for (; *line; line++)
        if (*line == ',')
            n++;
    return n;
}

int lm_csv_load(lm_dataset *d, const char *path, int has_label,
                int expected_features, float scale, float shift, char *err,
                size_t errlen)
{
    FILE *f;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    long lineno = 0;
    int first = 1, nfields = -1, rows = 0, rowcap = 0, maxlabel = -1;
    int label_cols = has_label ? 1 : 0;
    float *x = NULL;
    int32_t *y = NULL;
    lm_dataset out;

    f = fopen(path, "r");
    if (f == NULL) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (expected_features > 0) {
        if (expected_features > INT_MAX - 1) {
            seterr(err, errlen, "%s: bad expected feature count", path);
            goto fail;
        }
        nfields = expected_features + label_cols;
    }

    while ((len = getline(&line, &linecap, f)) != -1) {
        char *s = line, *field, pb[48];
        int nf, k;

        lineno++;
        if ((size_t)len != strlen(line)) {
            seterr(err, errlen, "%s:%ld: line contains a NUL byte", path,
                   lineno);
            goto fail;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (*trim(line) == '\0')
            continue; /* blank */

        nf = count_fields(line);
        if (first) {
            /* A first line whose first field is not a number is a header. */
            first = 0;
            if (!first_field_is_number(line))
                continue;
        }
        if (nfields < 0) {
            if (nf - label_cols < 1) {
                seterr(err, errlen, "%s:%ld: a line needs a label and at "
                       "least one feature, found %d field", path, lineno, nf);
                goto fail;
            }
            nfields = nf;
        }
        if (nf != nfields) {
            seterr(err, errlen, "%s:%ld: expected %d fields, found %d", path,
                   lineno, nfields, nf);
            goto fail;
        }

        if (rows == rowcap) {
            int ncap = rowcap ? (rowcap > INT_MAX / 2 ? INT_MAX : 2 * rowcap)
                              : 256;
            size_t nfeat = (size_t)(nfields - label_cols);
            float *nx;
            if (rows == INT_MAX || (size_t)ncap > SIZE_MAX / sizeof *x / nfeat) {
                seterr(err, errlen, "%s:%ld: too many lines", path, lineno);
                goto fail;
            }
            nx = realloc(x, (size_t)ncap * nfeat * sizeof *x);
            if (nx == NULL) {
                seterr(err, errlen, "%s:%ld: out of memory", path, lineno);
                goto fail;
            }
            x = nx;
            if (has_label) {
                int32_t *ny = realloc(y, (size_t)ncap * sizeof *y);
                if (ny == NULL) {
                    seterr(err, errlen, "%s:%ld: out of memory", path, lineno);
                    goto fail;
                }
                y = ny;
            }
            rowcap = ncap;
        }

        for (k = 0; k < nfields; k++) {
            char *comma = strchr(s, ',');
            double v;
            if (comma)
                *comma = '\0';
            field = trim(s);
            s = comma ? comma + 1 : s + strlen(s);
            if (*field == '\0') {
                seterr(err, errlen, "%s:%ld: field %d is empty", path, lineno,
                       k + 1);
                goto fail;
            }
            if (!parse_number(field, &v)) {
                seterr(err, errlen, "%s:%ld: field %d '%s' is not a "
                       "finite number", path, lineno, k + 1,
                       printable(field, pb, sizeof pb));
                goto fail;
            }
            if (k < label_cols) {
                if (v != floor(v) || v < INT32_MIN || v > INT32_MAX) {
                    seterr(err, errlen, "%s:%ld: label '%s' is not a "
                           "whole number", path, lineno,
                           printable(field, pb, sizeof pb));
                    goto fail;
                }
                y[rows] = (int32_t)v;
                if (y[rows] > maxlabel)
                    maxlabel = y[rows];
            } else {
                x[(size_t)rows * (size_t)(nfields - label_cols) +
                  (size_t)(k - label_cols)] = (float)v * scale + shift;
            }
        }
        rows++;
    }
    if (ferror(f)) {
        seterr(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (rows == 0) {
        seterr(err, errlen, "%s: no data lines", path);
        goto fail;
    }

    memset(&out, 0, sizeof out);
    out.n = rows;
    out.rank = 1;
    out.dims[0] = nfields - label_cols;
    out.sample_size = nfields - label_cols;
    out.x = x;
    out.y = y;
    out.nclasses_seen = has_label ? maxlabel + 1 : 0;
    free(line);
    (void)fclose(f); /* opened for reading: nothing can be lost */
    *d = out;
    return 0;

fail:
    free(line);
    free(x);
    free(y);
    (void)fclose(f);
    return -1;
}

/* ---- checks --------------------------------------------------------------- */

int lm_dataset_check(const lm_dataset *d, int sample_size, int nclasses,
                     const char *path, char *err, size_t errlen)
{
    int i;

    if (path == NULL)
        path = "dataset";
    if (d->sample_size != sample_size) {
        char dims[64] = "";
        size_t n = 0;
        for (i = 0; i < d->rank && i < 3 && n < sizeof dims; i++)
            n += (size_t)snprintf(dims + n, sizeof dims - n, "%s%d",
                                  i ? "x" : "", d->dims[i]);
        seterr(err, errlen, "%s: samples have %d values (%s), model input "
               "needs %d", path, d->sample_size, dims, sample_size);
        return -1;
    }
    if (nclasses <= 0)
        return 0;
    if (d->y == NULL) {
        seterr(err, errlen, "%s: has no labels, but the model needs a class "
               "label for every sample", path);
        return -1;
    }
    for (i = 0; i < d->n; i++) {
        if (d->y[i] < 0 || d->y[i] >= nclasses) {
            seterr(err, errlen, "%s: label %ld of sample %d is outside "
                   "[0, %d)", path, (long)d->y[i], i, nclasses);
            return -1;
        }
    }
    return 0;
}

void lm_dataset_free(lm_dataset *d)
{
    if (d == NULL)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
