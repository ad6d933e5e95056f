/*
 * text.c - the text processing behind recall: what full-text search indexes
 * for a memory, and the terms of a query.
 *
 * Latin (and other space-separated) scripts go to FTS5 as words; its
 * `porter unicode61` tokenizer folds case and diacritics and stems them.
 * Korean, Japanese and Chinese are not separated into words the same way
 * (Korean attaches particles: 사과를 is 사과 + 를), so a run of those
 * characters is indexed as its overlapping character bigrams and its last
 * character (사과를 -> 를 사과 과를), and a query word becomes the bigrams of its stem: 사과는 ->
 * 사과 finds 사과를. A one-character query word matches any bigram it
 * starts (a prefix term). Query words are split here on anything that is
 * not a letter or digit and handed on as quoted strings, so no query text is
 * ever read as FTS5 syntax; English stop words and Korean question words,
 * particles and verb endings are dropped.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "memory/memory_int.h"

/* ---- code points ---- */

static uint32_t next_cp(const unsigned char *s, size_t len, size_t *i)
{
    unsigned c = s[*i];
    size_t n = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1f) : n == 2 ? (c & 0x0f) : (c & 0x07);
    if (n && *i + n >= len) { /* a cut sequence (the input is checked before) */
        (*i)++;
        return 0xfffd;
    }
    for (size_t k = 1; k <= n; k++)
        cp = cp << 6 | (s[*i + k] & 0x3f);
    *i += n + 1;
    return cp;
}

static bool is_cjk(uint32_t c)
{
    return (c >= 0xac00 && c <= 0xd7af) || (c >= 0x1100 && c <= 0x11ff) ||
           (c >= 0x3130 && c <= 0x318f) || (c >= 0x3040 && c <= 0x30ff) ||
           (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0xff66 && c <= 0xff9f) ||
           (c >= 0x20000 && c <= 0x2ffff);
}

static bool is_hangul(uint32_t c)
{
    return c >= 0xac00 && c <= 0xd7af;
}

/* a separator between words: ASCII other than letters and digits, Latin-1
 * punctuation, general and CJK punctuation, fullwidth punctuation */
static bool is_sep(uint32_t c)
{
    if (c < 0x80)
        return !isalnum((int)c);
    return (c >= 0x80 && c <= 0xbf) || c == 0xd7 || c == 0xf7 || (c >= 0x2000 && c <= 0x206f) ||
           (c >= 0x2190 && c <= 0x2bff) || (c >= 0x3000 && c <= 0x303f) ||
           (c >= 0xff00 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20) ||
           (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65) || c == 0xfffd ||
           (c >= 0x1f000 && c <= 0x1faff) || (c >= 0xfe00 && c <= 0xfe0f);
}

static void put_cp(vt_buf *b, uint32_t c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xc0 | c >> 6);
        u[1] = (char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xe0 | c >> 12);
        u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | c >> 18);
        u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
        u[3] = (char)(0x80 | (c & 0x3f));
        n = 4;
    }
    vt_buf_add(b, u, n);
}

/* A word of the text: a run of CJK or of other word characters. */
typedef struct {
    uint32_t cp[64];
    int n;       /* code points (a longer run comes in pieces) */
    bool cjk;
} word;

/* Calls fn for each word of s. */
static void each_word(const char *s, void (*fn)(void *, const word *), void *ctx)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    word w = {.n = 0};
    while (i <= len) {
        uint32_t c = i < len ? next_cp(u, len, &i) : (i++, ' ');
        bool sep = is_sep(c), cjk = !sep && is_cjk(c);
        if (w.n && (sep || cjk != w.cjk)) {
            fn(ctx, &w);
            w.n = 0;
        }
        if (sep)
            continue;
        w.cjk = cjk;
        if (w.n == (int)VT_ARRAY_LEN(w.cp)) {
            /* a long run (CJK text has no spaces): on in pieces, a CJK
             * piece starting with the last character of the one before so
             * that no bigram is lost */
            fn(ctx, &w);
            w.cp[0] = w.cp[w.n - 1];
            w.n = cjk ? 1 : 0;
        }
        w.cp[w.n++] = c;
    }
}

static void bigrams(vt_buf *b, const uint32_t *cp, int n)
{
    /* the last character alone too, so a one-character query (a prefix
     * term) finds it in any position */
    if (n >= 1) {
        put_cp(b, cp[n - 1]);
        vt_buf_add(b, " ", 1);
    }
    for (int i = 0; i + 1 < n; i++) {
        put_cp(b, cp[i]);
        put_cp(b, cp[i + 1]);
        vt_buf_add(b, " ", 1);
    }
}

static void index_word(void *ctx, const word *w)
{
    vt_buf *b = ctx;
    if (w->cjk) {
        bigrams(b, w->cp, w->n);
        return;
    }
    for (int i = 0; i < w->n; i++)
        put_cp(b, w->cp[i]);
    vt_buf_add(b, " ", 1);
}

void mem_index_text(const char *text, vt_buf *b)
{
    each_word(text, index_word, b);
}

void mem_index_time(int64_t ms, vt_buf *b)
{
    static const char *const months[12] = {"january", "february", "march",     "april",
                                           "may",     "june",     "july",      "august",
                                           "september", "october", "november", "december"};
    static const char *const days[7] = {"thursday", "friday",  "saturday", "sunday",
                                        "monday",   "tuesday", "wednesday"};
    if (ms == MEM_TIME_NONE)
        return;
    char iso[40], out[96];
    mem_time_format(ms, iso, sizeof iso);
    int64_t d = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int mo = (iso[5] - '0') * 10 + (iso[6] - '0');
    snprintf(out, sizeof out, "%.4s %s %d %s ", iso, months[(mo - 1) % 12],
             (iso[8] - '0') * 10 + (iso[9] - '0'), days[((d % 7) + 7) % 7]);
    vt_buf_add(b, out, strlen(out));
}

/* ---- queries ---- */

static const char *const stop_en[] = {
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "done", "down", "during", "each",
    "ever", "few", "for", "from", "further", "get", "got", "had", "has", "have", "having", "he",
    "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "itself", "just", "kind", "know", "like", "ll", "me", "might", "more",
    "most", "much", "must", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once",
    "one", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "re",
    "really", "s", "said", "same", "say", "she", "should", "so", "some", "such", "t", "tell",
    "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
    "they", "thing", "things", "this", "those", "through", "to", "too", "under", "until", "up",
    "us", "ve", "very", "was", "we", "were", "what", "whats", "when", "where", "which", "while",
    "who", "whom", "whose", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves", "d", "m", "let", "lets", "go", "going", "recently", "yes", "yeah", "oh",
};

/* Korean question words and pronouns (after particles are stripped) */
static const char *const stop_ko[] = {
    "언제", "어디", "누구", "무엇", "뭐", "무슨", "어떤", "어떻게", "왜", "몇", "얼마나", "얼마",
    "그", "이", "저", "그녀", "그들", "우리", "나", "너", "제", "내", "것", "거", "무엇을", "어느",
    "최근", "최근에", "정말", "그리고", "하지만", "그래서", "네", "아",
};

/* particles (josa), longest first within each first character's group
 * does not matter: the longest matching one is stripped */
static const char *const particles[] = {
    "에게서", "한테서", "으로서", "으로써", "이라고", "에서는", "에서도", "으로는", "에게는",
    "까지", "부터", "에서", "에게", "한테", "으로", "처럼", "보다", "라고", "이랑", "하고",
    "이나", "마다", "조차", "밖에", "이며", "과는", "와는", "에는", "에도", "로는", "께서",
    "은", "는", "이", "가", "을", "를", "에", "의", "와", "과", "도", "로", "만", "랑", "나", "요",
};

/* verb and adjective endings: a word ending in one loses it when the rest
 * is at least 2 syllables */
static const char *const endings[] = {
    "했었나요", "하셨나요", "했습니까", "하였나요", "했었어요", "했던가요", "했나요", "했어요",
    "했는지", "했었니", "했을까", "하나요", "하는지", "했다고", "인가요", "였나요", "이었나요",
    "합니까", "했니", "했다", "한다", "하는", "했던", "하고", "해서", "하기", "하러", "나요", "어요",
    "았나요", "었나요", "았어요", "었어요", "았다", "었다", "는지", "을까", "ㄴ가요", "던가요",
    "인지", "이야", "일까", "니까", "했", "한", "할", "하", "던", "는", "은", "을", "된", "될",
};

static bool in_list(const char *const *list, size_t n, const char *w)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], w))
            return true;
    return false;
}

typedef struct {
    mem_term *t;
    size_t n, cap;
    bool oom;
} terms;

static void add_term(terms *ts, const char *s, size_t len, bool prefix)
{
    if (ts->oom || !len)
        return;
    for (size_t i = 0; i < ts->n; i++)
        if (strlen(ts->t[i].text) == len && !memcmp(ts->t[i].text, s, len) &&
            ts->t[i].prefix == prefix)
            return;
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        mem_term *nt = realloc(ts->t, cap * sizeof *nt);
        if (!nt) {
            ts->oom = true;
            return;
        }
        ts->t = nt;
        ts->cap = cap;
    }
    char *c = strndup(s, len);
    if (!c) {
        ts->oom = true;
        return;
    }
    ts->t[ts->n].text = c;
    ts->t[ts->n++].prefix = prefix;
}

/* the code points of a UTF-8 string (at most max); returns the count */
static int decode(const char *s, uint32_t *cp, int max)
{
    size_t len = strlen(s), i = 0;
    int n = 0;
    while (i < len && n < max)
        cp[n++] = next_cp((const unsigned char *)s, len, &i);
    return n;
}

/* strips the longest suffix of w (n code points) in list, leaving >= keep */
static int strip(const uint32_t *w, int n, const char *const *list, size_t nl, int keep)
{
    int best = 0;
    for (size_t i = 0; i < nl; i++) {
        uint32_t cp[8];
        int k = decode(list[i], cp, 8);
        if (k <= best || n - k < keep)
            continue;
        if (!memcmp(w + n - k, cp, (size_t)k * sizeof *cp))
            best = k;
    }
    return n - best;
}

static void query_word(void *ctx, const word *w)
{
    terms *ts = ctx;
    vt_buf b = {0};
    if (!w->cjk) {
        for (int i = 0; i < w->n; i++)
            put_cp(&b, w->cp[i] < 0x80 ? (uint32_t)tolower((int)w->cp[i]) : w->cp[i]);
        if (b.oom) {
            ts->oom = true;
        } else if (b.len && !in_list(stop_en, VT_ARRAY_LEN(stop_en), b.p) &&
                   !(b.len == 1 && !isdigit((unsigned char)b.p[0]))) {
            /* "'s" and "n't" split off as words of their own above */
            add_term(ts, b.p, b.len, false);
        }
        free(b.p);
        return;
    }
    int n = w->n;
    bool hangul = true;
    for (int i = 0; i < n; i++)
        hangul &= is_hangul(w->cp[i]);
    if (hangul) {
        /* the whole word may be a question word; else strip a particle,
         * then an ending */
        for (int i = 0; i < n; i++)
            put_cp(&b, w->cp[i]);
        if (b.p && (in_list(stop_ko, VT_ARRAY_LEN(stop_ko), b.p) ||
                    in_list(particles, VT_ARRAY_LEN(particles), b.p))) {
            free(b.p); /* a question word, or a particle left by a name taken out */
            return;
        }
        free(b.p);
        b = (vt_buf){0};
        n = strip(w->cp, n, particles, VT_ARRAY_LEN(particles), 1);
        n = strip(w->cp, n, endings, VT_ARRAY_LEN(endings), 2);
        for (int i = 0; i < n; i++)
            put_cp(&b, w->cp[i]);
        if (b.p && in_list(stop_ko, VT_ARRAY_LEN(stop_ko), b.p)) {
            free(b.p);
            return;
        }
        free(b.p);
        b = (vt_buf){0};
    }
    if (n == 1) {
        put_cp(&b, w->cp[0]);
        if (b.oom)
            ts->oom = true;
        else
            add_term(ts, b.p, b.len, true);
        free(b.p);
        return;
    }
    for (int i = 0; i + 1 < n; i++) {
        b.len = 0;
        put_cp(&b, w->cp[i]);
        put_cp(&b, w->cp[i + 1]);
        if (b.oom)
            ts->oom = true;
        else
            add_term(ts, b.p, b.len, false);
    }
    free(b.p);
}

static bool word_byte(unsigned char c)
{
    return c >= 0x80 || isalnum(c);
}

vt_err mem_query_terms_named(const char *q, char *const *names, size_t nn, bool *named,
                             mem_term **t, size_t *n)
{
    *t = NULL;
    *n = 0;
    if (!q)
        return VT_OK;
    char *w = strdup(q);
    if (!w)
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    size_t len = strlen(w);
    for (size_t i = 0; i < nn; i++) {
        if (named)
            named[i] = false;
        size_t k = strlen(names[i]);
        if (k < 2 || k > len)
            continue;
        bool latin = !((unsigned char)names[i][k - 1] & 0x80);
        for (size_t p = 0; p + k <= len; p++) {
            if (strncasecmp(w + p, names[i], k) || (p && word_byte((unsigned char)w[p - 1])) ||
                (latin && p + k < len && word_byte((unsigned char)w[p + k])))
                continue;
            memset(w + p, ' ', k);
            if (named)
                named[i] = true;
        }
    }
    vt_err e = mem_query_terms(w, t, n);
    free(w);
    return e;
}

vt_err mem_query_terms(const char *q, mem_term **t, size_t *n)
{
    terms ts = {0};
    *t = NULL;
    *n = 0;
    if (!q)
        return VT_OK;
    each_word(q, query_word, &ts);
    if (ts.oom) {
        mem_terms_free(ts.t, ts.n);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    *t = ts.t;
    *n = ts.n;
    return VT_OK;
}

void mem_terms_free(mem_term *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        free(t[i].text);
    free(t);
}

static void key_word(void *ctx, const word *w)
{
    vt_buf *b = ctx;
    if (b->len)
        vt_buf_add(b, " ", 1);
    for (int i = 0; i < w->n; i++)
        put_cp(b, w->cp[i] < 0x80 ? (uint32_t)tolower((int)w->cp[i]) : w->cp[i]);
}

char *mem_dedup_key(const char *text)
{
    vt_buf b = {0};
    each_word(text, key_word, &b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

/* ---- vectors ---- */

float mem_quantize_i8(const float *x, int32_t n, int8_t *out)
{
    float mx = 0;
    for (int32_t i = 0; i < n; i++)
        mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    float sc = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / sc;
    for (int32_t i = 0; i < n; i++)
        out[i] = (int8_t)lrintf(x[i] * inv);
    return sc;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* s8 x s8 as |a| (u8) x (b with a's sign) (s8), the form the instructions take */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static int32_t dot_vnni(const int8_t *a,
                                                                              const int8_t *b,
                                                                              int32_t n)
{
    __m512i acc = _mm512_setzero_si512(), zero = _mm512_setzero_si512();
    int32_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i va = _mm512_loadu_si512(a + i), vb = _mm512_loadu_si512(b + i);
        __mmask64 neg = _mm512_movepi8_mask(va);
        vb = _mm512_mask_sub_epi8(vb, neg, zero, vb);
        acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(va), vb);
    }
    int32_t r = _mm512_reduce_add_epi32(acc);
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

__attribute__((target("avx2"))) static int32_t dot_avx2(const int8_t *a, const int8_t *b,
                                                       int32_t n)
{
    __m256i acc = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i vb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(va), _mm256_sign_epi8(vb, va));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t r = _mm_cvtsi128_si32(s);
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}
#endif

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float dot_f32_i8_avx2(const float *a, const int8_t *b,
                                                                int32_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(b + i));
        __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), f0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), f1, acc1);
    }
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++)
        r += a[i] * (float)b[i];
    return r;
}
#endif

float mem_dot_f32_i8(const float *a, const int8_t *b, int32_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return dot_f32_i8_avx2(a, b, n);
#endif
    float acc[8] = {0};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * (float)b[i + k];
    float r = 0;
    for (int k = 0; k < 8; k++)
        r += acc[k];
    for (; i < n; i++)
        r += a[i] * (float)b[i];
    return r;
}

int32_t mem_dot_i8(const int8_t *a, const int8_t *b, int32_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        return dot_vnni(a, b, n);
    if (__builtin_cpu_supports("avx2"))
        return dot_avx2(a, b, n);
#endif
    int32_t acc[8] = {0};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    int32_t r = 0;
    for (int k = 0; k < 8; k++)
        r += acc[k];
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}
