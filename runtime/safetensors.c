/*
 * safetensors.c — checkpoint files in the safetensors format.
 *
 * Owns lm_st_save and lm_st_load.  A file is an 8-byte little-endian header
 * length N, N bytes of JSON
 *   {"__metadata__":{"key":"value",...},
 *    "name":{"dtype":"F32","shape":[d0,...],"data_offsets":[begin,end]},...}
 * and then the tensors' bytes, little-endian, offsets relative to the end
 * of the header.  We write F32 only and read F32 only.
 *
 * What this file must not do: trust the file.  Every length, offset and
 * string in it is checked against the file's real size before use; the
 * JSON parser is iterative (no recursion to overflow), rejects anything
 * outside the small subset the format needs, and never reads past the
 * header.  A load writes into the caller's tensors only after the whole
 * file has been checked and read; a save replaces the target file only by
 * an atomic rename of a complete, fsync'ed temporary file.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* fileno, fseeko, fsync, getpid */
#endif
#include "lamina_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__) || defined(__clang__)
#define ST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ST_PRINTF(f, a)
#endif

/* The reference implementation's limit; no checkpoint header comes near. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Highest rank accepted in a file (tensors we read have <= LM_MAX_RANK). */
#define ST_MAX_FILE_RANK 16

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    ST_PRINTF(3, 4);

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * A name from the file, fit to print in a message: control characters
 * become '?' (no terminal escapes or line breaks from a hostile file) and
 * long names are cut, at a UTF-8 character boundary, with "...".
 */
static const char *printable(const char *s, char *buf, size_t len)
{
    size_t i = 0, n = strlen(s);

    if (n > len - 4) {
        n = len - 4;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    buf[i] = '\0';
    if (n < strlen(s))
        strcpy(buf + i, "...");
    return buf;
}

/* ---- the header, as parsed --------------------------------------------- */

typedef struct st_entry {
    char *name;      /* decoded, NUL-free UTF-8 */
    char dtype[16];  /* as in the file */
    int rank;
    int64_t shape[ST_MAX_FILE_RANK];
    uint64_t begin, end; /* data_offsets */
    int used;        /* asked for by the caller */
} st_entry;

typedef struct st_kv {
    char *key, *value;
} st_kv;

typedef struct st_header {
    st_entry *e;
    int ne, ecap;
    st_kv *kv;
    int nkv, kvcap;
    int has_meta;
} st_header;

static void header_free(st_header *h)
{
    int i;

    for (i = 0; i < h->ne; i++)
        free(h->e[i].name);
    for (i = 0; i < h->nkv; i++) {
        free(h->kv[i].key);
        free(h->kv[i].value);
    }
    free(h->e);
    free(h->kv);
}

/* ---- a strict JSON subset parser ---------------------------------------- */

typedef struct st_parser {
    const unsigned char *s;
    size_t len, pos;
    const char *path;
    char *err;
    size_t errlen;
    int failed;
} st_parser;

static void perr(st_parser *p, const char *what)
{
    if (p->failed)
        return;
    p->failed = 1;
    seterr(p->err, p->errlen,
           "%s: bad safetensors header: %s at byte %zu of the JSON",
           p->path, what, p->pos);
}

static void skip_ws(st_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

/* Consume character c after optional whitespace; 1 if it was there. */
static int accept(st_parser *p, int c)
{
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == c) {
        p->pos++;
        return 1;
    }
    return 0;
}

static int expect(st_parser *p, int c)
{
    char what[32];

    if (accept(p, c))
        return 1;
    snprintf(what, sizeof what, "expected '%c'", c);
    perr(p, what);
    return 0;
}

static int hex4(st_parser *p, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (p->len - p->pos < 4)
        return 0;
    for (i = 0; i < 4; i++) {
        int c = p->s[p->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

/* Append code point cp to out as UTF-8 (out has room for 4 more bytes). */
static size_t put_utf8(unsigned char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * string = '"' { char | '\' escape } '"'  ->  malloc'd NUL-terminated copy.
 * Control characters, \u0000 and lone surrogates are errors.  The bytes
 * are already known to be valid UTF-8 (checked for the whole header).
 */
static char *parse_string(st_parser *p)
{
    unsigned char *out;
    size_t n = 0, start;

    if (!expect(p, '"'))
        return NULL;
    start = p->pos;
    /* The decoded string is never longer than the encoded one. */
    while (p->pos < p->len && p->s[p->pos] != '"') {
        if (p->s[p->pos] == '\\')
            p->pos++;
        p->pos++;
    }
    if (p->pos >= p->len) {
        perr(p, "unterminated string");
        return NULL;
    }
    out = malloc(p->pos - start + 1);
    if (out == NULL) {
        perr(p, "out of memory");
        return NULL;
    }
    p->pos = start;
    while (p->s[p->pos] != '"') {
        unsigned c = p->s[p->pos++], cp, lo;
        if (c < 0x20) {
            p->pos--;
            perr(p, "control character in string");
            free(out);
            return NULL;
        }
        if (c != '\\') {
            out[n++] = (unsigned char)c;
            continue;
        }
        c = p->s[p->pos++];
        switch (c) {
        case '"': case '\\': case '/':
            out[n++] = (unsigned char)c;
            break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u':
            if (!hex4(p, &cp))
                goto bad_escape;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto bad_escape;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' ||
                    p->s[p->pos + 1] != 'u')
                    goto bad_escape;
                p->pos += 2;
                if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    goto bad_escape;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                goto bad_escape;
            /* An escape is at least 6 bytes and decodes to at most 4. */
            n += put_utf8(out + n, cp);
            break;
        default:
            goto bad_escape;
        }
    }
    p->pos++; /* closing quote */
    out[n] = '\0';
    return (char *)out;

bad_escape:
    perr(p, "bad escape in string");
    free(out);
    return NULL;
}

/* uint = '0' | [1-9][0-9]*, at most max. */
static int parse_uint(st_parser *p, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t start;

    skip_ws(p);
    start = p->pos;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
        perr(p, "expected a non-negative integer");
        return 0;
    }
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (v > (max - d) / 10) {
            perr(p, "integer too large");
            return 0;
        }
        v = v * 10 + d;
        p->pos++;
    }
    if (p->s[start] == '0' && p->pos - start > 1) {
        p->pos = start;
        perr(p, "integer with a leading zero");
        return 0;
    }
    if (p->pos < p->len && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' ||
                            p->s[p->pos] == 'E')) {
        perr(p, "expected an integer, found a fraction or exponent");
        return 0;
    }
    *out = v;
    return 1;
}

/* "__metadata__" value: '{' [ string ':' string { ',' string ':' string } ] '}' */
static int parse_metadata(st_parser *p, st_header *h)
{
    if (h->has_meta) {
        perr(p, "duplicate key '__metadata__'");
        return 0;
    }
    h->has_meta = 1;
    if (!expect(p, '{'))
        return 0;
    if (accept(p, '}'))
        return 1;
    do {
        char *key, *value;

        skip_ws(p);
        key = parse_string(p);
        if (key == NULL)
            return 0;
        if (!expect(p, ':')) {
            free(key);
            return 0;
        }
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            free(key);
            perr(p, "metadata values must be strings");
            return 0;
        }
        value = parse_string(p);
        if (value == NULL) {
            free(key);
            return 0;
        }
        if (h->nkv == h->kvcap) {
            int cap = h->kvcap ? 2 * h->kvcap : 8;
            st_kv *kv = realloc(h->kv, (size_t)cap * sizeof *kv);
            if (kv == NULL) {
                free(key);
                free(value);
                perr(p, "out of memory");
                return 0;
            }
            h->kv = kv;
            h->kvcap = cap;
        }
        h->kv[h->nkv].key = key;
        h->kv[h->nkv].value = value;
        h->nkv++;
    } while (accept(p, ','));
    return expect(p, '}');
}

/*
 * tensor value: '{' "dtype": string, "shape": '[' uint,... ']',
 *                   "data_offsets": '[' uint ',' uint ']' '}'
 * in any order, each key exactly once, no other keys.
 */
static int parse_tensor(st_parser *p, st_entry *e)
{
    int seen_dtype = 0, seen_shape = 0, seen_offsets = 0;

    if (!expect(p, '{'))
        return 0;
    if (accept(p, '}')) {
        perr(p, "tensor entry has no dtype, shape or data_offsets");
        return 0;
    }
    do {
        char *key;

        skip_ws(p);
        key = parse_string(p);
        if (key == NULL)
            return 0;
        if (!expect(p, ':')) {
            free(key);
            return 0;
        }
        if (strcmp(key, "dtype") == 0 && !seen_dtype) {
            char *dt;
            free(key);
            seen_dtype = 1;
            skip_ws(p);
            dt = parse_string(p);
            if (dt == NULL)
                return 0;
            if (strlen(dt) >= sizeof e->dtype) {
                free(dt);
                perr(p, "dtype name too long");
                return 0;
            }
            strcpy(e->dtype, dt);
            free(dt);
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            free(key);
            seen_shape = 1;
            if (!expect(p, '['))
                return 0;
            if (!accept(p, ']')) {
                do {
                    uint64_t d;
                    if (e->rank == ST_MAX_FILE_RANK) {
                        perr(p, "shape has too many dimensions");
                        return 0;
                    }
                    if (!parse_uint(p, (uint64_t)INT64_MAX, &d))
                        return 0;
                    e->shape[e->rank++] = (int64_t)d;
                } while (accept(p, ','));
                if (!expect(p, ']'))
                    return 0;
            }
        } else if (strcmp(key, "data_offsets") == 0 && !seen_offsets) {
            free(key);
            seen_offsets = 1;
            if (!expect(p, '[') || !parse_uint(p, UINT64_MAX, &e->begin) ||
                !expect(p, ',') || !parse_uint(p, UINT64_MAX, &e->end) ||
                !expect(p, ']'))
                return 0;
        } else {
            int dup = strcmp(key, "dtype") == 0 || strcmp(key, "shape") == 0 ||
                      strcmp(key, "data_offsets") == 0;
            free(key);
            perr(p, dup ? "duplicate key in tensor entry"
                        : "unknown key in tensor entry");
            return 0;
        }
    } while (accept(p, ','));
    if (!expect(p, '}'))
        return 0;
    if (!seen_dtype || !seen_shape || !seen_offsets) {
        perr(p, "tensor entry lacks dtype, shape or data_offsets");
        return 0;
    }
    return 1;
}

/* header = '{' [ member { ',' member } ] '}' and nothing but spaces after. */
static int parse_header(st_parser *p, st_header *h)
{
    if (!expect(p, '{'))
        return 0;
    if (!accept(p, '}')) {
        do {
            char *name;
            st_entry *e;

            skip_ws(p);
            name = parse_string(p);
            if (name == NULL)
                return 0;
            if (!expect(p, ':')) {
                free(name);
                return 0;
            }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if (!parse_metadata(p, h))
                    return 0;
                continue;
            }
            if (h->ne == h->ecap) {
                int cap = h->ecap ? 2 * h->ecap : 16;
                st_entry *ne = realloc(h->e, (size_t)cap * sizeof *ne);
                if (ne == NULL) {
                    free(name);
                    perr(p, "out of memory");
                    return 0;
                }
                h->e = ne;
                h->ecap = cap;
            }
            e = &h->e[h->ne++];
            memset(e, 0, sizeof *e);
            e->name = name;
            if (!parse_tensor(p, e))
                return 0;
        } while (accept(p, ','));
        if (!expect(p, '}'))
            return 0;
    }
    skip_ws(p);
    if (p->pos != p->len) {
        perr(p, "unexpected data after the JSON object");
        return 0;
    }
    return 1;
}

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t len, j;
        unsigned cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            *bad = i;
            return 0;
        }
        if (n - i < len) {
            *bad = i;
            return 0;
        }
        for (j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) {
                *bad = i;
                return 0;
            }
            cp = cp << 6 | (s[i + j] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

/* ---- checks on the parsed header ----------------------------------------- */

static int dtype_size(const char *dt)
{
    static const struct {
        const char *name;
        int size;
    } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
        {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4},
        {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    size_t i;

    for (i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, dt) == 0)
            return table[i].size;
    return 0;
}

/* "[6,1,5,5]" into buf. */
static void format_shape(char *buf, size_t len, int rank, const int64_t *shape)
{
    size_t n = 0;
    int i;

    n += (size_t)snprintf(buf, len, "[");
    for (i = 0; i < rank && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? "," : "",
                              shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

/* Number of bytes of e's data, or 0 with *overflow set when it cannot be
 * represented. */
static uint64_t entry_bytes(const st_entry *e, int size, int *overflow)
{
    uint64_t count = (uint64_t)size;
    int i;

    *overflow = 0;
    for (i = 0; i < e->rank; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        if (d != 0 && count > UINT64_MAX / d) {
            *overflow = 1;
            return 0;
        }
        count *= d;
    }
    return count;
}

static int cmp_entry_offsets(const void *x, const void *y)
{
    const st_entry *a = *(const st_entry *const *)x;
    const st_entry *b = *(const st_entry *const *)y;

    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return 0;
}

static int cmp_entry_names(const void *x, const void *y)
{
    const st_entry *a = x, *b = y;
    return strcmp(a->name, b->name);
}

static int cmp_kv_keys(const void *x, const void *y)
{
    const st_kv *a = x, *b = y;
    return strcmp(a->key, b->key);
}

/*
 * Structural checks of every entry against the data area of data_len
 * bytes: known dtype sizes, byte length, bounds, and that the entries tile
 * the data area exactly (sorted by offset, each begins where the previous
 * ended, the last ends at data_len).  Sorts h->e by name and h->kv by key
 * and rejects duplicates.
 */
static int check_entries(st_header *h, uint64_t data_len, const char *path,
                         char *err, size_t errlen)
{
    const st_entry **order;
    uint64_t at = 0;
    char nb[128];
    int i;

    for (i = 0; i < h->ne; i++) {
        const st_entry *e = &h->e[i];
        int size = dtype_size(e->dtype), overflow;
        uint64_t bytes;
        char db[16];

        if (e->begin > e->end || e->end > data_len) {
            seterr(err, errlen,
                   "%s: tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64
                   "] outside the %" PRIu64 " data bytes of the file",
                   path, printable(e->name, nb, sizeof nb), e->begin, e->end,
                   data_len);
            return -1;
        }
        if (size == 0)
            continue; /* unknown dtype: rejected later if it is asked for */
        bytes = entry_bytes(e, size, &overflow);
        if (overflow || bytes != e->end - e->begin) {
            char shape[256];
            format_shape(shape, sizeof shape, e->rank, e->shape);
            if (overflow)
                seterr(err, errlen, "%s: tensor '%s' has shape %s, too large "
                       "to exist", path, printable(e->name, nb, sizeof nb),
                       shape);
            else
                seterr(err, errlen,
                       "%s: tensor '%s' (%s %s) should have %" PRIu64
                       " bytes of data, but its data_offsets span %" PRIu64,
                       path, printable(e->name, nb, sizeof nb),
                       printable(e->dtype, db, sizeof db), shape, bytes,
                       e->end - e->begin);
            return -1;
        }
    }

    order = malloc((h->ne > 0 ? (size_t)h->ne : 1) * sizeof *order);
    if (order == NULL) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (i = 0; i < h->ne; i++)
        order[i] = &h->e[i];
    qsort(order, (size_t)h->ne, sizeof *order, cmp_entry_offsets);
    for (i = 0; i < h->ne; i++) {
        if (order[i]->begin != at) {
            seterr(err, errlen,
                   "%s: tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64
                   "], but the previous tensor's data ends at %" PRIu64
                   " (tensors must be contiguous and must not overlap)",
                   path, printable(order[i]->name, nb, sizeof nb),
                   order[i]->begin, order[i]->end, at);
            free(order);
            return -1;
        }
        at = order[i]->end;
    }
    free(order);
    if (at != data_len) {
        seterr(err, errlen,
               "%s: the tensors cover %" PRIu64 " data bytes, but the file "
               "has %" PRIu64 " after the header",
               path, at, data_len);
        return -1;
    }

    if (h->ne > 1)
        qsort(h->e, (size_t)h->ne, sizeof *h->e, cmp_entry_names);
    for (i = 1; i < h->ne; i++) {
        if (strcmp(h->e[i - 1].name, h->e[i].name) == 0) {
            seterr(err, errlen, "%s: tensor '%s' appears twice in the header",
                   path, printable(h->e[i].name, nb, sizeof nb));
            return -1;
        }
    }
    if (h->nkv > 1) /* (qsort must not see NULL, even for 0 items) */
        qsort(h->kv, (size_t)h->nkv, sizeof *h->kv, cmp_kv_keys);
    for (i = 1; i < h->nkv; i++) {
        if (strcmp(h->kv[i - 1].key, h->kv[i].key) == 0) {
            seterr(err, errlen, "%s: metadata key '%s' appears twice in the "
                   "header", path, printable(h->kv[i].key, nb, sizeof nb));
            return -1;
        }
    }
    return 0;
}

static st_entry *find_entry(st_header *h, const char *name)
{
    st_entry key;

    memset(&key, 0, sizeof key);
    key.name = (char *)name;
    if (h->ne == 0)
        return NULL;
    return bsearch(&key, h->e, (size_t)h->ne, sizeof *h->e, cmp_entry_names);
}

/* Number of floats of a caller's tensor; -1 if its rank or shape is bad. */
static int64_t tensor_count(const lm_tensor *t)
{
    int64_t count = 1;
    int i;

    if (t->rank < 0 || t->rank > LM_MAX_RANK)
        return -1;
    for (i = 0; i < t->rank; i++) {
        if (t->shape[i] < 0)
            return -1;
        if (t->shape[i] != 0 && count > INT64_MAX / 4 / t->shape[i])
            return -1;
        count *= t->shape[i];
    }
    return count;
}

/* Check every requested tensor and metadata entry against the header. */
static int check_request(st_header *h, const lm_tensor *t, int n,
                         const lm_st_meta *meta, int nmeta, unsigned flags,
                         const char *path, char *err, size_t errlen)
{
    char nb[128];
    int i, j;

    for (i = 0; i < n; i++) {
        st_entry *e;
        char want[256], have[256];
        int same;
        int64_t count = tensor_count(&t[i]);

        if (t[i].name == NULL || count < 0 || (count > 0 && !t[i].data)) {
            seterr(err, errlen, "%s: model tensor %d has no name or a bad "
                   "shape (a bug in the caller)", path, i);
            return -1;
        }
        e = find_entry(h, t[i].name);
        if (e == NULL) {
            seterr(err, errlen, "%s: tensor '%s' is missing from the file",
                   path, t[i].name);
            return -1;
        }
        e->used = 1;
        if (strcmp(e->dtype, "F32") != 0) {
            seterr(err, errlen,
                   "%s: tensor '%s' has dtype %s; lamina reads only F32",
                   path, t[i].name, printable(e->dtype, nb, sizeof nb));
            return -1;
        }
        same = e->rank == t[i].rank;
        for (j = 0; same && j < e->rank; j++)
            same = e->shape[j] == t[i].shape[j];
        if (!same) {
            format_shape(have, sizeof have, e->rank, e->shape);
            format_shape(want, sizeof want, t[i].rank, t[i].shape);
            seterr(err, errlen,
                   "%s: tensor '%s' has shape %s, model expects %s", path,
                   t[i].name, have, want);
            return -1;
        }
    }
    if (!(flags & LM_ST_ALLOW_EXTRA)) {
        for (i = 0; i < h->ne; i++) {
            if (!h->e[i].used) {
                seterr(err, errlen,
                       "%s: tensor '%s' in the file is not part of the model",
                       path, printable(h->e[i].name, nb, sizeof nb));
                return -1;
            }
        }
    }
    for (i = 0; i < nmeta; i++) {
        if (meta[i].key == NULL || meta[i].value == NULL || meta[i].size == 0) {
            seterr(err, errlen, "%s: metadata request %d has no key or no "
                   "buffer (a bug in the caller)", path, i);
            return -1;
        }
        for (j = 0; j < h->nkv; j++) {
            if (strcmp(h->kv[j].key, meta[i].key) == 0 &&
                strlen(h->kv[j].value) >= meta[i].size) {
                seterr(err, errlen,
                       "%s: metadata '%s' is %zu bytes long, more than the "
                       "%zu the caller can hold",
                       path, meta[i].key, strlen(h->kv[j].value),
                       meta[i].size - 1);
                return -1;
            }
        }
    }
    return 0;
}

static uint32_t load_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static void store_le32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

/* Read exactly n bytes at offset off; message on failure. */
static int read_at(FILE *f, uint64_t off, void *buf, size_t n,
                   const char *path, char *err, size_t errlen)
{
    if (off > (uint64_t)INT64_MAX || fseeko(f, (off_t)off, SEEK_SET) != 0) {
        seterr(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
        return -1;
    }
    if (n > 0 && fread(buf, 1, n, f) != n) {
        if (ferror(f))
            seterr(err, errlen, "%s: read error: %s", path, strerror(errno));
        else
            seterr(err, errlen, "%s: file ended early (was it changed while "
                   "being read?)", path);
        return -1;
    }
    return 0;
}

int lm_st_load(const char *path, const lm_tensor *t, int n, lm_st_meta *meta,
               int nmeta, unsigned flags, char *err, size_t errlen)
{
    FILE *f;
    struct stat st;
    unsigned char len8[8];
    uint64_t hlen = 0, fsize, data_start;
    unsigned char *text = NULL, *stage = NULL;
    st_header h;
    st_parser p;
    size_t total = 0, at, bad;
    int i, j, rc = -1;

    memset(&h, 0, sizeof h);
    f = fopen(path, "rb");
    if (f == NULL) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0) {
        seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        seterr(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    fsize = (uint64_t)st.st_size;
    if (fsize < 8) {
        seterr(err, errlen, "%s: not a safetensors file: only %" PRIu64
               " bytes, less than the 8-byte header length", path, fsize);
        goto out;
    }
    if (read_at(f, 0, len8, 8, path, err, errlen) != 0)
        goto out;
    for (i = 7; i >= 0; i--)
        hlen = hlen << 8 | len8[i];
    if (hlen > fsize - 8 || hlen > ST_MAX_HEADER || hlen < 2) {
        seterr(err, errlen, "%s: not a safetensors file: header length %" PRIu64
               " does not fit the file (%" PRIu64 " bytes)", path, hlen, fsize);
        goto out;
    }
    data_start = 8 + hlen;
    text = malloc((size_t)hlen);
    if (text == NULL) {
        seterr(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (read_at(f, 8, text, (size_t)hlen, path, err, errlen) != 0)
        goto out;
    if (!valid_utf8(text, (size_t)hlen, &bad)) {
        seterr(err, errlen, "%s: bad safetensors header: invalid UTF-8 at "
               "byte %zu", path, bad);
        goto out;
    }

    memset(&p, 0, sizeof p);
    p.s = text;
    p.len = (size_t)hlen;
    p.path = path;
    p.err = err;
    p.errlen = errlen;
    if (!parse_header(&p, &h)) {
        perr(&p, "malformed JSON"); /* no-op if a message is set */
        goto out;
    }
    if (check_entries(&h, fsize - data_start, path, err, errlen) != 0)
        goto out;
    if (check_request(&h, t, n, meta, nmeta, flags, path, err, errlen) != 0)
        goto out;

    /* Stage all requested data; the checks above bound each tensor by the
     * file size. */
    for (i = 0; i < n; i++) {
        const st_entry *e = find_entry(&h, t[i].name);
        if (e->end - e->begin > (uint64_t)(SIZE_MAX - total)) {
            seterr(err, errlen, "%s: tensor data too large for memory", path);
            goto out;
        }
        total += (size_t)(e->end - e->begin);
    }
    stage = malloc(total ? total : 1);
    if (stage == NULL) {
        seterr(err, errlen, "%s: out of memory for %zu bytes of tensor data",
               path, total);
        goto out;
    }
    at = 0;
    for (i = 0; i < n; i++) {
        const st_entry *e = find_entry(&h, t[i].name);
        size_t bytes = (size_t)(e->end - e->begin);
        if (read_at(f, data_start + e->begin, stage + at, bytes, path, err,
                    errlen) != 0)
            goto out;
        at += bytes;
    }

    /* Everything is checked and read: now, and only now, write. */
    at = 0;
    for (i = 0; i < n; i++) {
        size_t count = (size_t)tensor_count(&t[i]), q;
        for (q = 0; q < count; q++) {
            uint32_t bits = load_le32(stage + at + 4 * q);
            memcpy(&t[i].data[q], &bits, 4);
        }
        at += 4 * count;
    }
    for (i = 0; i < nmeta; i++) {
        meta[i].found = 0;
        meta[i].value[0] = '\0';
        for (j = 0; j < h.nkv; j++) {
            if (strcmp(h.kv[j].key, meta[i].key) == 0) {
                strcpy(meta[i].value, h.kv[j].value);
                meta[i].found = 1;
            }
        }
    }
    rc = 0;

out:
    free(stage);
    free(text);
    header_free(&h);
    (void)fclose(f); /* opened read-only: nothing can be lost */
    return rc;
}

/* ---- saving ----------------------------------------------------------------- */

typedef struct st_buf {
    char *s;
    size_t len, cap;
    int oom;
} st_buf;

static void buf_add(st_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *ns;
        while (cap < b->len + n + 1)
            cap *= 2;
        ns = realloc(b->s, cap);
        if (ns == NULL) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_str(st_buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* s as a JSON string literal. */
static void buf_json_string(st_buf *b, const char *s)
{
    buf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, (const char *)&c, 1);
        }
    }
    buf_add(b, "\"", 1);
}

/* Check the caller's tensors and metadata; the header JSON into b. */
static int build_header(st_buf *b, const lm_tensor *t, int n,
                        const char *const *meta_kv, int nmeta,
                        const char *path, char *err, size_t errlen)
{
    uint64_t offset = 0;
    char num[64];
    int i, j;

    if (n < 0 || nmeta < 0 || (n > 0 && t == NULL) ||
        (nmeta > 0 && meta_kv == NULL)) {
        seterr(err, errlen, "%s: bad tensor or metadata count", path);
        return -1;
    }
    buf_str(b, "{");
    if (nmeta > 0) {
        buf_str(b, "\"__metadata__\":{");
        for (i = 0; i < nmeta; i++) {
            if (meta_kv[2 * i] == NULL || meta_kv[2 * i + 1] == NULL) {
                seterr(err, errlen, "%s: metadata entry %d has a NULL key or "
                       "value", path, i);
                return -1;
            }
            for (j = 0; j < i; j++) {
                if (strcmp(meta_kv[2 * j], meta_kv[2 * i]) == 0) {
                    seterr(err, errlen, "%s: metadata key '%s' given twice",
                           path, meta_kv[2 * i]);
                    return -1;
                }
            }
            if (i > 0)
                buf_str(b, ",");
            buf_json_string(b, meta_kv[2 * i]);
            buf_str(b, ":");
            buf_json_string(b, meta_kv[2 * i + 1]);
        }
        buf_str(b, "}");
    }
    for (i = 0; i < n; i++) {
        int64_t count = tensor_count(&t[i]);
        if (t[i].name == NULL || t[i].name[0] == '\0' ||
            strcmp(t[i].name, "__metadata__") == 0) {
            seterr(err, errlen, "%s: tensor %d has no usable name", path, i);
            return -1;
        }
        if (count < 0) {
            seterr(err, errlen, "%s: tensor '%s' has a bad rank or shape",
                   path, t[i].name);
            return -1;
        }
        if (count > 0 && t[i].data == NULL) {
            seterr(err, errlen, "%s: tensor '%s' has no data", path,
                   t[i].name);
            return -1;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(t[j].name, t[i].name) == 0) {
                seterr(err, errlen, "%s: tensor '%s' given twice", path,
                       t[i].name);
                return -1;
            }
        }
        if (nmeta > 0 || i > 0)
            buf_str(b, ",");
        buf_json_string(b, t[i].name);
        buf_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (j = 0; j < t[i].rank; j++) {
            snprintf(num, sizeof num, "%s%" PRId64, j ? "," : "",
                     t[i].shape[j]);
            buf_str(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64
                 "]}", offset, offset + 4 * (uint64_t)count);
        buf_str(b, num);
        offset += 4 * (uint64_t)count;
    }
    buf_str(b, "}");
    /* Pad with spaces so the data starts 8-byte aligned, as the reference
     * writer does. */
    while ((8 + b->len) % 8 != 0)
        buf_str(b, " ");
    if (b->oom) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

/* Write the whole file to f; message on failure. */
static int write_file(FILE *f, const st_buf *hdr, const lm_tensor *t, int n,
                      const char *path, const char *tmp, char *err,
                      size_t errlen)
{
    unsigned char chunk[4096 * 4];
    uint64_t hlen = hdr->len;
    int i;

    for (i = 0; i < 8; i++)
        chunk[i] = (unsigned char)(hlen >> (8 * i));
    if (fwrite(chunk, 1, 8, f) != 8 ||
        fwrite(hdr->s, 1, hdr->len, f) != hdr->len)
        goto io_error;
    for (i = 0; i < n; i++) {
        size_t count = (size_t)tensor_count(&t[i]), q = 0;
        while (q < count) {
            size_t m = count - q < 4096 ? count - q : 4096, r;
            for (r = 0; r < m; r++) {
                uint32_t bits;
                memcpy(&bits, &t[i].data[q + r], 4);
                store_le32(chunk + 4 * r, bits);
            }
            if (fwrite(chunk, 4, m, f) != m)
                goto io_error;
            q += m;
        }
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        goto io_error;
    return 0;

io_error:
    seterr(err, errlen, "%s: write error on %s: %s", path, tmp,
           strerror(errno));
    return -1;
}

/* Best effort: make the rename itself durable by syncing the directory.
 * The new file is complete either way, so a failure here is not reported. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;

    if (slash == NULL) {
        dir = malloc(2);
        if (dir)
            strcpy(dir, ".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(len + 1);
        if (dir) {
            memcpy(dir, path, len);
            dir[len] = '\0';
        }
    }
    if (dir == NULL)
        return;
    fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        if (fsync(fd) != 0) {
            /* ignored, see above */
        }
        if (close(fd) != 0) {
            /* ignored, see above */
        }
    }
    free(dir);
}

int lm_st_save(const char *path, const lm_tensor *t, int n,
               const char *const *meta_kv, int nmeta, char *err,
               size_t errlen)
{
    st_buf hdr;
    char *tmp = NULL;
    size_t tmplen;
    FILE *f;
    int rc = -1;

    memset(&hdr, 0, sizeof hdr);
    if (build_header(&hdr, t, n, meta_kv, nmeta, path, err, errlen) != 0)
        goto out;

    tmplen = strlen(path) + 32;
    tmp = malloc(tmplen);
    if (tmp == NULL) {
        seterr(err, errlen, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tmplen, "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    if (f == NULL) {
        seterr(err, errlen, "%s: cannot create %s: %s", path, tmp,
               strerror(errno));
        goto out;
    }
    if (write_file(f, &hdr, t, n, path, tmp, err, errlen) != 0) {
        /* Already failed and reported; the temp file goes either way. */
        (void)fclose(f);
        (void)remove(tmp);
        goto out;
    }
    if (fclose(f) != 0) {
        seterr(err, errlen, "%s: write error on %s: %s", path, tmp,
               strerror(errno));
        (void)remove(tmp); /* the error above is the one worth reporting */
        goto out;
    }
    if (rename(tmp, path) != 0) {
        seterr(err, errlen, "%s: cannot rename %s over it: %s", path, tmp,
               strerror(errno));
        (void)remove(tmp);
        goto out;
    }
    sync_dir(path);
    rc = 0;

out:
    free(tmp);
    free(hdr.s);
    return rc;
}
