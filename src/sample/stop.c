/*
 * stop.c - the incremental stop-string matcher (smp_stop_*, see sampler.h).
 *
 * The matcher keeps one byte buffer: the text held back at the previous call
 * followed by the new piece. Every stop string that could complete inside the
 * new bytes is looked for at each new end position, earliest end first, so a
 * stop string split over any number of pieces (even inside a UTF-8 character)
 * is caught exactly as if the text had arrived in one piece. Without a match,
 * everything is released except the longest suffix that is a proper prefix of
 * some stop string; since stop strings are whole UTF-8 text, that suffix starts
 * on a character boundary of valid input, so released text never ends inside
 * a character the detokenizer delivered whole. The released text is a prefix of
 * the buffer, returned in place and dropped at the next call.
 */
#include <stdlib.h>
#include <string.h>

#include "sample/sampler.h"

struct smp_stop {
    char *stops[SMP_MAX_STOP];
    size_t lens[SMP_MAX_STOP];
    int32_t n_stop;
    size_t max_len;
    char *buf;       /* held-back text, then the newest piece */
    size_t len, cap;
    size_t released; /* bytes at the front handed out by the last call */
    int32_t matched; /* -1 until a stop string completes */
};

vt_err smp_stop_create(const char *const *stops, int32_t n_stop, smp_stop **out)
{
    *out = NULL;
    if (n_stop < 0 || n_stop > SMP_MAX_STOP)
        return vt_fail(VT_ERR_INVALID, "stop: at most %d stop strings, got %d", SMP_MAX_STOP,
                       (int)n_stop);
    if (n_stop > 0 && !stops)
        return vt_fail(VT_ERR_INVALID, "stop: %d stop strings but no array", (int)n_stop);
    for (int32_t i = 0; i < n_stop; i++) {
        size_t n = stops[i] ? strnlen(stops[i], SMP_MAX_STOP_LEN + 1) : 0;
        if (n == 0 || n > SMP_MAX_STOP_LEN)
            return vt_fail(VT_ERR_INVALID, "stop[%d] must be a non-empty string of at most %d bytes",
                           (int)i, SMP_MAX_STOP_LEN);
    }
    smp_stop *m = calloc(1, sizeof *m);
    if (!m)
        return vt_fail(VT_ERR_NOMEM, "stop: out of memory");
    m->matched = -1;
    for (int32_t i = 0; i < n_stop; i++) {
        m->lens[i] = strlen(stops[i]);
        m->stops[i] = malloc(m->lens[i] + 1);
        if (!m->stops[i]) {
            smp_stop_destroy(m);
            return vt_fail(VT_ERR_NOMEM, "stop: out of memory");
        }
        memcpy(m->stops[i], stops[i], m->lens[i] + 1);
        m->n_stop = i + 1;
        if (m->lens[i] > m->max_len)
            m->max_len = m->lens[i];
    }
    *out = m;
    return VT_OK;
}

void smp_stop_destroy(smp_stop *m)
{
    if (!m)
        return;
    for (int32_t i = 0; i < m->n_stop; i++)
        free(m->stops[i]);
    free(m->buf);
    free(m);
}

/* Drops the text handed out by the previous call. */
static void drop_released(smp_stop *m)
{
    if (m->released) {
        memmove(m->buf, m->buf + m->released, m->len - m->released);
        m->len -= m->released;
        m->released = 0;
    }
}

/* Length of the longest suffix of buf that is a proper prefix of a stop string. */
static size_t held_suffix(const smp_stop *m)
{
    size_t h = m->max_len ? m->max_len - 1 : 0;
    if (h > m->len)
        h = m->len;
    for (; h > 0; h--) {
        const char *tail = m->buf + m->len - h;
        for (int32_t i = 0; i < m->n_stop; i++)
            if (m->lens[i] > h && memcmp(tail, m->stops[i], h) == 0)
                return h;
    }
    return 0;
}

vt_err smp_stop_feed(smp_stop *m, const char *piece, size_t len, bool last, const char **text,
                     size_t *text_len, int32_t *matched)
{
    drop_released(m);
    *text = m->buf ? m->buf : "";
    *text_len = 0;
    *matched = m->matched;
    if (m->matched >= 0)
        return VT_OK;
    if (len == 0) {
        if (last) {
            *text_len = m->len;
            m->released = m->len;
        }
        return VT_OK;
    }
    if (m->len + len > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < m->len + len)
            cap *= 2;
        char *nb = realloc(m->buf, cap);
        if (!nb)
            return vt_fail(VT_ERR_NOMEM, "stop: out of memory");
        m->buf = nb;
        m->cap = cap;
    }
    size_t old = m->len;
    memcpy(m->buf + old, piece, len);
    m->len += len;
    *text = m->buf;

    /* earliest end position first; on one end position, the longest string */
    for (size_t end = old + 1; end <= m->len; end++) {
        int32_t best = -1;
        for (int32_t i = 0; i < m->n_stop; i++) {
            size_t n = m->lens[i];
            if (n <= end && m->buf[end - 1] == m->stops[i][n - 1] &&
                memcmp(m->buf + end - n, m->stops[i], n) == 0 && (best < 0 || n > m->lens[best]))
                best = i;
        }
        if (best >= 0) {
            m->matched = best;
            *matched = best;
            *text_len = end - m->lens[best];
            m->released = m->len; /* nothing more is ever released */
            return VT_OK;
        }
    }
    *text_len = last ? m->len : m->len - held_suffix(m);
    m->released = *text_len;
    return VT_OK;
}

void smp_stop_flush(smp_stop *m, const char **text, size_t *text_len)
{
    int32_t matched;
    /* cannot fail: nothing is appended */
    (void)smp_stop_feed(m, NULL, 0, true, text, text_len, &matched);
}

int32_t smp_stop_matched(const smp_stop *m)
{
    return m->matched;
}
