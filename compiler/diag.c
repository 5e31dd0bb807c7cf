/*
 * diag.c — reading source files and reporting problems in them.
 *
 * Every message has the compiler convention
 *     file:line:col: error: message
 *        4 | dens f5(120);
 *          | ^~~~
 * followed by optional notes. This file only formats; it decides nothing
 * about what is wrong. Source lines are shown as stored, with CR dropped,
 * control bytes shown as '?', and very long lines cut to a window around
 * the column so the caret still points at the right byte.
 */
#include "lamina.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW = 100 }; /* bytes of a long line shown either side */

void diag_init(Diag *d, const Source *src, FILE *out)
{
    memset(d, 0, sizeof *d);
    d->src = src;
    d->out = out;
    d->max_errors = 100;
}

bool source_read(Source *src, Arena *a, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "laminac: cannot read '%s': %s\n", path, strerror(errno));
        return false;
    }
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : 65536;
            text = xrealloc(text, cap + 1);
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    int err = errno;
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "laminac: cannot read '%s': %s\n", path, strerror(err));
        free(text);
        return false;
    }
    /* The lexer sees the bytes as they are, NULs included (it rejects them). */
    char *copy = arena_alloc(a, len + 1);
    memcpy(copy, text, len);
    free(text);
    src->path = arena_strdup(a, path);
    src->text = copy;
    src->len = len;
    return true;
}

/* Start and length of line number `line` (1-based), without CR/LF. */
static const char *line_span(const Source *src, int line, size_t *len)
{
    const char *p = src->text, *end = src->text + src->len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n')
            l++;
    const char *q = p;
    while (q < end && *q != '\n')
        q++;
    if (q > p && q[-1] == '\r')
        q--;
    *len = (size_t)(q - p);
    return p;
}

static void show_line(Diag *d, Loc at)
{
    if (!d->src || at.line <= 0)
        return;
    size_t len;
    const char *s = line_span(d->src, at.line, &len);
    size_t col = at.col > 0 ? (size_t)at.col - 1 : 0;
    size_t end = at.end_col > at.col ? (size_t)at.end_col - 1 : col + 1;
    if (col > len)
        col = len;
    if (end > len + 1)
        end = len + 1;
    size_t from = col > WINDOW ? col - WINDOW : 0;
    size_t to = len - from > 2 * WINDOW ? from + 2 * WINDOW : len;
    if (end > to + 1)
        end = to + 1;
    /* Window edges must not split a UTF-8 sequence. */
    while (from > 0 && ((unsigned char)s[from] & 0xc0) == 0x80)
        from--;
    while (to < len && ((unsigned char)s[to] & 0xc0) == 0x80)
        to++;
    const char *lead = from ? "..." : "";
    fprintf(d->out, "%5d | %s", at.line, lead);
    for (size_t i = from; i < to;) {
        const unsigned char *c = (const unsigned char *)s + i;
        int n = utf8_len(c, to - i);
        if (n > 1)
            fwrite(c, 1, (size_t)n, d->out);
        else
            fputc(*c == '\t' || (*c >= 0x20 && *c < 0x7f) ? *c : '?', d->out), n = 1;
        i += (size_t)n;
    }
    fprintf(d->out, "%s\n      | %s", to < len ? "..." : "", lead);
    /* One column per character as shown above: a UTF-8 sequence or, where
     * the bytes are not UTF-8, each byte (shown as '?'). */
    for (size_t i = from; i < col;) {
        int n = utf8_len((const unsigned char *)s + i, col - i);
        fputc(s[i] == '\t' ? '\t' : ' ', d->out);
        i += n > 1 ? (size_t)n : 1;
    }
    fputc('^', d->out);
    for (size_t i = col + 1; i < end; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            fputc('~', d->out);
    fputc('\n', d->out);
}

static bool suppressed(Diag *d)
{
    return d->errors > d->max_errors;
}

static void report(Diag *d, Loc at, const char *kind, const char *fmt, va_list ap)
{
    if (at.line > 0)
        fprintf(d->out, "%s:%d:%d: %s: ", d->src->path, at.line, at.col, kind);
    else
        fprintf(d->out, "%s: %s: ", d->src ? d->src->path : "laminac", kind);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    show_line(d, at);
}

void diag_error(Diag *d, Loc at, const char *fmt, ...)
{
    d->errors++;
    if (d->errors == d->max_errors + 1)
        fprintf(d->out, "%s: note: too many errors; stopping the report here\n",
                d->src->path);
    if (suppressed(d))
        return;
    va_list ap;
    va_start(ap, fmt);
    report(d, at, "error", fmt, ap);
    va_end(ap);
}

void diag_warning(Diag *d, Loc at, const char *fmt, ...)
{
    d->warnings++;
    if (suppressed(d))
        return;
    va_list ap;
    va_start(ap, fmt);
    report(d, at, "warning", fmt, ap);
    va_end(ap);
}

void diag_note(Diag *d, Loc at, const char *fmt, ...)
{
    if (suppressed(d))
        return;
    va_list ap;
    va_start(ap, fmt);
    if (at.line > 0) {
        report(d, at, "note", fmt, ap);
    } else {
        fputs("note: ", d->out);
        vfprintf(d->out, fmt, ap);
        fputc('\n', d->out);
    }
    va_end(ap);
}
