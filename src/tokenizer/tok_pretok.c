/*
 * tok_pretok.c - the BPE pre-tokenizers: splitting text (as code points) into
 * the words that BPE merges within, with exactly the boundaries llama.cpp
 * produces for each tokenizer.ggml.pre.
 *
 * llama.cpp describes each pre-tokenizer as a list of regexes applied in
 * turn: the first splits the text into its matches and the unmatched gaps
 * between them; each further regex splits every piece the same way, and so
 * on. Four regexes (GPT-2's, Llama-3's, Qwen2's, Qwen3.5's) run through
 * hand-written matchers there, with their own small quirks (an unmatched
 * character becomes a piece of its own, Llama-3's letters take one leading
 * character of any kind but CR/LF/digits, ...); the others run through
 * std::regex (ECMAScript: leftmost match, greedy, first alternative that
 * succeeds). Both are reproduced here by hand: the "custom" stages follow
 * the quirks, the "regex" stages follow ECMAScript semantics through a
 * per-position matcher and a driver that turns matches and gaps into pieces.
 *
 * Character classes are real Unicode properties (unicode.h): \p{L} letters,
 * \p{N} numbers, \p{P} punctuation, \p{M} marks, \s White_Space. (llama.cpp
 * runs std::regex over a "collapsed" text where every non-ASCII code point
 * stands for its category; for the classes used here that gives the same
 * answers as the categories themselves.) The regexes written with explicit
 * non-ASCII ranges (DeepSeek's) see non-ASCII whitespace as \v, as
 * llama.cpp's std::wregex path does.
 */
#include "tok_internal.h"
#include "unicode.h"

#define FL_WS TOK_UC_WS
#define FL_L TOK_UC_LETTER
#define FL_N TOK_UC_NUMBER
#define FL_M TOK_UC_MARK
#define FL_P TOK_UC_PUNCT

typedef struct {
    const uint32_t *cpt;
    const uint8_t *fl;
    uint32_t *out; /* piece ends */
    size_t n_out;
} split_ctx;

static inline void emit(split_ctx *c, size_t end)
{
    c->out[c->n_out++] = (uint32_t)end;
}

/* ---- the hand-written matchers of llama.cpp ---- */

/* 's|'t|'re|'ve|'m|'ll|'d at pos (case-insensitive when fold): its length or 0. */
static size_t contraction(const uint32_t *cpt, size_t pos, size_t e, bool fold)
{
    if (cpt[pos] != '\'' || pos + 1 >= e)
        return 0;
    uint32_t a = fold ? tok_uc_tolower(cpt[pos + 1]) : cpt[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= e)
        return 0;
    uint32_t b = fold ? tok_uc_tolower(cpt[pos + 2]) : cpt[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(split_ctx *c, size_t s, size_t e)
{
    const uint32_t *cpt = c->cpt;
    const uint8_t *fl = c->fl;
    size_t pos = s;
    while (pos < e) {
        size_t k = contraction(cpt, pos, e, false);
        if (k) {
            pos += k;
            emit(c, pos);
            continue;
        }
        bool sp = cpt[pos] == ' ';
        size_t p = pos + sp;
        uint8_t f2 = p < e ? fl[p] : 0;
        bool in2 = p < e;
        uint8_t cls = 0;
        if (f2 & FL_L)
            cls = FL_L;
        else if (f2 & FL_N)
            cls = FL_N;
        if (cls) {
            while (p < e && (fl[p] & cls))
                p++;
            emit(c, pos = p);
            continue;
        }
        if (in2 && !(f2 & (FL_WS | FL_L | FL_N))) {
            while (p < e && !(fl[p] & (FL_WS | FL_L | FL_N)))
                p++;
            emit(c, pos = p);
            continue;
        }
        size_t nws = 0;
        while (pos + nws < e && (fl[pos + nws] & FL_WS))
            nws++;
        if (nws > 1 && pos + nws < e)
            pos += nws - 1;
        else if (nws > 0)
            pos += nws;
        else
            pos += 1;
        emit(c, pos);
    }
}

/* Llama-3 (digits 3 at a time), Qwen2 (digits one by one) and Qwen3.5 (as
 * Qwen2, letters and marks together):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3_like(split_ctx *c, size_t s, size_t e, size_t max_digits, bool marks)
{
    const uint32_t *cpt = c->cpt;
    const uint8_t *fl = c->fl;
    const uint8_t word = marks ? (FL_L | FL_M) : FL_L;
    const uint8_t notpunct = FL_WS | FL_N | word;
    size_t pos = s;
    while (pos < e) {
        uint32_t ch = cpt[pos];
        uint8_t f = fl[pos];
        size_t k = contraction(cpt, pos, e, true);
        if (k) {
            pos += k;
            emit(c, pos);
            continue;
        }
        if (!(ch == '\r' || ch == '\n' || (f & FL_N))) {
            if ((f & word) || (pos + 1 < e && (fl[pos + 1] & word))) {
                pos++;
                while (pos < e && (fl[pos] & word))
                    pos++;
                emit(c, pos);
                continue;
            }
        }
        if (f & FL_N) {
            size_t ini = pos;
            while (pos < e && (fl[pos] & FL_N)) {
                pos++;
                if (pos - ini >= max_digits) {
                    emit(c, pos);
                    ini = pos;
                }
            }
            if (pos > ini)
                emit(c, pos);
            continue;
        }
        bool sp = ch == ' ';
        size_t p = pos + sp;
        uint8_t f2 = p < e ? fl[p] : 0;
        if (!(f2 & notpunct)) {
            /* (llama.cpp tests the class on the next character but "is
             * assigned" on this one, so a lone space at the end gets here) */
            while (p < e && !(fl[p] & notpunct))
                p++;
            while (p < e && (cpt[p] == '\r' || cpt[p] == '\n'))
                p++;
            emit(c, pos = p);
            continue;
        }
        size_t nws = 0, last_nl = 0;
        while (pos + nws < e && (fl[pos + nws] & FL_WS)) {
            if (cpt[pos + nws] == '\r' || cpt[pos + nws] == '\n')
                last_nl = pos + nws + 1;
            nws++;
        }
        if (last_nl)
            pos = last_nl;
        else if (nws > 1 && pos + nws < e)
            pos += nws - 1;
        else if (nws > 0)
            pos += nws;
        else
            pos += 1;
        emit(c, pos);
    }
}

/* ---- regex stages: a matcher per position, and the driver ---- */

/* Returns the end of the match starting at i (> i), or 0 if none does. */
typedef size_t (*match_fn)(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e);

static void split_regex(split_ctx *c, size_t s, size_t e, match_fn m)
{
    size_t gap = s, i = s;
    while (i < e) {
        size_t end = m(c->cpt, c->fl, i, e);
        if (!end) {
            i++;
            continue;
        }
        if (i > gap)
            emit(c, i);
        emit(c, end);
        i = gap = end;
    }
    if (gap < e)
        emit(c, e);
}

/* What std::wregex sees: non-ASCII whitespace replaced by \v. */
static inline uint32_t wide(const uint32_t *cpt, const uint8_t *fl, size_t i)
{
    return cpt[i] > 0x7F && (fl[i] & FL_WS) ? 0x0B : cpt[i];
}

static inline bool in_ranges(uint32_t c, const uint32_t (*r)[2], size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (c >= r[k][0] && c <= r[k][1])
            return true;
    return false;
}

/* [\r\n] */
static size_t m_newline(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)fl;
    (void)e;
    return cpt[i] == '\r' || cpt[i] == '\n' ? i + 1 : 0;
}

/* \p{N} */
static size_t m_digit(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)cpt;
    (void)e;
    return (fl[i] & FL_N) ? i + 1 : 0;
}

/* \p{N}+ */
static size_t m_digits(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)cpt;
    if (!(fl[i] & FL_N))
        return 0;
    while (i < e && (fl[i] & FL_N))
        i++;
    return i;
}

/* [0-9][0-9][0-9] */
static size_t m_three_digits(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)fl;
    if (i + 3 > e)
        return 0;
    for (size_t k = i; k < i + 3; k++)
        if (cpt[k] < '0' || cpt[k] > '9')
            return 0;
    return i + 3;
}

/* [\p{P}\$\+<=>\^~\|]+ (default) and the same with ` (falcon) */
static inline bool punct_default(const uint32_t *cpt, const uint8_t *fl, size_t i, bool tick)
{
    uint32_t ch = cpt[i];
    if (fl[i] & FL_P)
        return true;
    return ch == '$' || ch == '+' || ch == '<' || ch == '=' || ch == '>' || ch == '^' ||
           ch == '~' || ch == '|' || (tick && ch == '`');
}

static size_t m_punct_default(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    if (!punct_default(cpt, fl, i, false))
        return 0;
    while (i < e && punct_default(cpt, fl, i, false))
        i++;
    return i;
}

static size_t m_punct_falcon(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    if (!punct_default(cpt, fl, i, true))
        return 0;
    while (i < e && punct_default(cpt, fl, i, true))
        i++;
    return i;
}

/* \s?CLASS+ for a class given by flag bits */
static inline size_t ws_opt_run(const uint8_t *fl, size_t i, size_t e, uint8_t cls)
{
    size_t p = i;
    if ((fl[p] & FL_WS) && p + 1 < e && (fl[p + 1] & cls))
        p++;
    if (!(fl[p] & cls))
        return 0;
    while (p < e && (fl[p] & cls))
        p++;
    return p;
}

/* \s?\p{L}+ */
static size_t m_ws_letters(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)cpt;
    return ws_opt_run(fl, i, e, FL_L);
}

/* \s?\p{P}+ */
static size_t m_ws_punct(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    (void)cpt;
    return ws_opt_run(fl, i, e, FL_P);
}

/* [一-龥ࠀ-一가-퟿]+ : U+4E00-U+9FA5, U+0800-U+4E00, U+AC00-U+D7FF */
static inline bool cjk(uint32_t w)
{
    return (w >= 0x0800 && w <= 0x9FA5) || (w >= 0xAC00 && w <= 0xD7FF);
}

static size_t m_cjk(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    if (!cjk(wide(cpt, fl, i)))
        return 0;
    while (i < e && cjk(wide(cpt, fl, i)))
        i++;
    return i;
}

/* DeepSeek LLM's letters: the ranges of \s?[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]+ */
static const uint32_t dsl_letters[][2] = {
    {0x0041, 0x005A},   {0x0061, 0x007A},   {0x00B5, 0x00B5},   {0x00C0, 0x00D6},
    {0x00D8, 0x00F6},   {0x00F8, 0x01BA},   {0x01BC, 0x01BF},   {0x01C4, 0x0293},
    {0x0295, 0x02AF},   {0x0370, 0x0373},   {0x0376, 0x0377},   {0x037B, 0x037D},
    {0x037F, 0x037F},   {0x0386, 0x0386},   {0x0388, 0x038A},   {0x038C, 0x038C},
    {0x038E, 0x03A1},   {0x03A3, 0x03F5},   {0x03F7, 0x0481},   {0x048A, 0x052F},
    {0x0531, 0x0556},   {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* DeepSeek LLM's punctuation: [!-/:-~！-／：-～‘-‟　-。] */
static const uint32_t dsl_punct[][2] = {
    {0x0021, 0x002F}, {0x003A, 0x007E}, {0xFF01, 0xFF0F},
    {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
};

static inline size_t ws_opt_ranges(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e,
                                   const uint32_t (*r)[2], size_t nr)
{
    size_t p = i;
    /* \s in std::wregex: ASCII whitespace and the \v standing for the rest */
    if ((fl[p] & FL_WS) && p + 1 < e && in_ranges(wide(cpt, fl, p + 1), r, nr))
        p++;
    if (!in_ranges(wide(cpt, fl, p), r, nr))
        return 0;
    while (p < e && in_ranges(wide(cpt, fl, p), r, nr))
        p++;
    return p;
}

static size_t m_dsl_letters(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    /* fast path: ASCII letters are the common case */
    uint32_t ch = cpt[i];
    if (ch < 0x80 && !((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') && !(fl[i] & FL_WS))
        return 0;
    return ws_opt_ranges(cpt, fl, i, e, dsl_letters, VT_ARRAY_LEN(dsl_letters));
}

static size_t m_dsl_punct(const uint32_t *cpt, const uint8_t *fl, size_t i, size_t e)
{
    return ws_opt_ranges(cpt, fl, i, e, dsl_punct, VT_ARRAY_LEN(dsl_punct));
}

/* \s+$ : the whitespace run that ends the piece, if any. */
static void split_ws_end(split_ctx *c, size_t s, size_t e)
{
    size_t t = e;
    while (t > s && (c->fl[t - 1] & FL_WS))
        t--;
    if (t > s)
        emit(c, t);
    if (t < e)
        emit(c, e);
}

/* ---- pre-tokenizers as lists of stages ---- */

typedef enum {
    ST_GPT2,
    ST_LLAMA3,
    ST_QWEN2,
    ST_QWEN35,
    ST_WS_END,
    ST_REGEX,
} stage_kind;

typedef struct {
    stage_kind kind;
    match_fn m; /* ST_REGEX */
} stage;

#define STAGES_MAX 6

static size_t stages_of(tok_pre_kind kind, stage st[STAGES_MAX])
{
    size_t n = 0;
#define ADD(k, f) (st[n].kind = (k), st[n].m = (f), n++)
    switch (kind) {
    case TOK_PRE_DEFAULT:
        ADD(ST_REGEX, m_punct_default);
        ADD(ST_GPT2, NULL);
        ADD(ST_REGEX, m_digits);
        ADD(ST_REGEX, m_three_digits);
        break;
    case TOK_PRE_GPT2:
        ADD(ST_GPT2, NULL);
        break;
    case TOK_PRE_LLAMA3:
        ADD(ST_LLAMA3, NULL);
        break;
    case TOK_PRE_QWEN2:
        ADD(ST_QWEN2, NULL);
        break;
    case TOK_PRE_QWEN35:
        ADD(ST_QWEN35, NULL);
        break;
    case TOK_PRE_DEEPSEEK_LLM:
        ADD(ST_REGEX, m_newline);
        ADD(ST_REGEX, m_dsl_letters);
        ADD(ST_REGEX, m_dsl_punct);
        ADD(ST_WS_END, NULL);
        ADD(ST_REGEX, m_cjk);
        ADD(ST_REGEX, m_digits);
        break;
    case TOK_PRE_DEEPSEEK_CODER:
        ADD(ST_REGEX, m_newline);
        ADD(ST_REGEX, m_ws_letters);
        ADD(ST_REGEX, m_ws_punct);
        ADD(ST_REGEX, m_cjk);
        ADD(ST_REGEX, m_digit);
        break;
    case TOK_PRE_FALCON:
        ADD(ST_REGEX, m_punct_falcon);
        ADD(ST_GPT2, NULL);
        ADD(ST_REGEX, m_three_digits);
        break;
    case TOK_PRE_STARCODER:
        ADD(ST_REGEX, m_digit);
        ADD(ST_GPT2, NULL);
        break;
    case TOK_PRE_NONE:
        break;
    }
#undef ADD
    return n;
}

size_t tok_pretok_split(tok_pre_kind kind, const uint32_t *cpt, const uint8_t *fl, size_t n,
                        uint32_t *ends, uint32_t *scratch)
{
    if (n == 0)
        return 0;
    stage st[STAGES_MAX];
    size_t ns = stages_of(kind, st);
    /* Pieces alternate between the two buffers; the last stage must write
     * into ends, so start in whichever makes that come out right. */
    uint32_t *cur = (ns % 2) ? scratch : ends;
    uint32_t *nxt = (ns % 2) ? ends : scratch;
    cur[0] = (uint32_t)n;
    size_t n_cur = 1;
    for (size_t k = 0; k < ns; k++) {
        split_ctx c = {cpt, fl, nxt, 0};
        size_t s = 0;
        for (size_t j = 0; j < n_cur; j++) {
            size_t e = cur[j];
            switch (st[k].kind) {
            case ST_GPT2:
                split_gpt2(&c, s, e);
                break;
            case ST_LLAMA3:
                split_llama3_like(&c, s, e, 3, false);
                break;
            case ST_QWEN2:
                split_llama3_like(&c, s, e, 1, false);
                break;
            case ST_QWEN35:
                split_llama3_like(&c, s, e, 1, true);
                break;
            case ST_WS_END:
                split_ws_end(&c, s, e);
                break;
            case ST_REGEX:
                split_regex(&c, s, e, st[k].m);
                break;
            }
            s = e;
        }
        uint32_t *t = cur;
        cur = nxt;
        nxt = t;
        n_cur = c.n_out;
    }
    if (ns == 0) /* no stages: the whole text is one word */
        ends[0] = (uint32_t)n;
    return n_cur;
}
