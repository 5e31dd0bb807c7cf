/*
 * progress.c — the training progress line and the monotonic clock.
 *
 * Owns lm_now and lm_progress_*.  On a terminal it redraws one line in
 * place with '\r', at most about ten times a second; anywhere else (a log
 * file, a pipe, CI) it prints one line per epoch, at the end.  All state is
 * in the caller's lm_progress; this file must keep none of its own, and
 * must never make training fail: output errors are ignored.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno, isatty */
#endif
#include "lamina_rt.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 20
#define MIN_REDRAW 0.1 /* seconds between redraws on a terminal */

double lm_now(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0; /* cannot happen on POSIX systems with a monotonic clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* v with thousands separators: 12345 -> "12,345". */
static void format_count(char *buf, size_t len, double v)
{
    char digits[32];
    size_t n, i, o = 0;

    if (!(v >= 0.0) || v > 1e15)
        v = 0.0;
    snprintf(digits, sizeof digits, "%.0f", v);
    n = strlen(digits);
    for (i = 0; i < n && o + 2 < len; i++) {
        buf[o++] = digits[i];
        if ((n - 1 - i) % 3 == 0 && i + 1 < n)
            buf[o++] = ',';
    }
    buf[o] = '\0';
}

/* Seconds as "m:ss" or "h:mm:ss". */
static void format_duration(char *buf, size_t len, double seconds)
{
    long s;

    if (!(seconds >= 0.0) || seconds > 1e8)
        seconds = 0.0;
    s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
}

void lm_progress_begin(lm_progress *p, FILE *f, int epoch, int nepochs,
                       int nbatches)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    p->tty = f != NULL && isatty(fileno(f));
    p->epoch = epoch;
    p->nepochs = nepochs;
    p->nbatches = nbatches;
    p->t_begin = lm_now();
    p->t_last = p->t_begin - 2 * MIN_REDRAW; /* draw the first update */
}

/* Print line, padded over the previous one on a terminal. */
static void draw(lm_progress *p, const char *line, int newline)
{
    int len = (int)strlen(line);
    int pad = p->tty && p->last_len > len ? p->last_len - len : 0;

    (void)fprintf(p->f, "%s%s%*s%s", p->tty ? "\r" : "", line, pad, "",
            newline ? "\n" : "");
    (void)fflush(p->f);
    p->last_len = newline ? 0 : len;
}

void lm_progress_update(lm_progress *p, int batch, float running_loss,
                        long samples)
{
    char line[256], bar[BAR_WIDTH + 1], rate[32], eta[32];
    double now, elapsed;
    int i, filled;

    if (p->f == NULL || !p->tty)
        return;
    now = lm_now();
    if (now - p->t_last < MIN_REDRAW && batch < p->nbatches)
        return;
    p->t_last = now;
    elapsed = now - p->t_begin;

    filled = p->nbatches > 0 ? (int)((long long)BAR_WIDTH * batch / p->nbatches)
                             : 0;
    if (filled < 0)
        filled = 0;
    if (filled > BAR_WIDTH)
        filled = BAR_WIDTH;
    for (i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    format_count(rate, sizeof rate, elapsed > 0 ? samples / elapsed : 0.0);
    format_duration(eta, sizeof eta,
                    batch > 0 ? elapsed * (p->nbatches - batch) / batch : 0.0);
    snprintf(line, sizeof line,
             "epoch %d/%d [%s] %d/%d loss %.4f %s samples/s ETA %s", p->epoch,
             p->nepochs, bar, batch, p->nbatches, (double)running_loss, rate,
             eta);
    draw(p, line, 0);
}

void lm_progress_end(lm_progress *p, float loss, long samples,
                     const char *extra)
{
    char line[512], rate[32], took[32];
    double elapsed;

    if (p->f == NULL)
        return;
    elapsed = lm_now() - p->t_begin;
    format_count(rate, sizeof rate, elapsed > 0 ? samples / elapsed : 0.0);
    format_duration(took, sizeof took, elapsed);
    snprintf(line, sizeof line,
             "epoch %d/%d %d/%d loss %.4f %s samples/s %s%s%s", p->epoch,
             p->nepochs, p->nbatches, p->nbatches, (double)loss, rate, took,
             extra ? " " : "", extra ? extra : "");
    draw(p, line, 1);
}
