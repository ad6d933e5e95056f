/*
 * toolcall.c - tool calls in the families' formats (see toolcall.h): the
 * family of a template and the incremental parser of outputs (the request
 * side, tools and messages and forced calls, is toolcall_req.c). The parser keeps
 * the text not yet resolved in a pending buffer and moves between two
 * states: content (released at once, except a tail that may begin a start
 * marker and trailing whitespace that may precede one) and a block (from a
 * start marker to where the family's format says the block ends: an end
 * marker, or the end of a JSON value, read by an incremental JSON scanner
 * that also rejects non-JSON at the first bad byte). Searches remember how
 * far they got, so feeding a long block token by token stays linear.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "chat/toolcall.h"
#include "chat/toolcall_int.h"
#include "util/util.h"

#define JS_MAX_DEPTH 128

static const char *const family_names[CHAT_TOOLS_N_FAMILIES] = {"hermes", "llama3", "mistral",
                                                               "granite", "deepseek"};

static bool contains(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle)) != NULL;
}

chat_tool_family chat_tool_family_detect(const char *src, size_t len)
{
    if (!src)
        return CHAT_TOOLS_HERMES;
    if (contains(src, len, DS_CALLS_BEGIN) || contains(src, len, DS_CALL_BEGIN))
        return CHAT_TOOLS_DEEPSEEK;
    if (contains(src, len, "[TOOL_CALLS]"))
        return CHAT_TOOLS_MISTRAL;
    if (contains(src, len, "<|tool_call|>"))
        return CHAT_TOOLS_GRANITE;
    if (contains(src, len, "<|python_tag|>") ||
        (contains(src, len, "<|start_header_id|>") && contains(src, len, "\"parameters\"")))
        return CHAT_TOOLS_LLAMA3;
    return CHAT_TOOLS_HERMES;
}

const char *chat_tool_family_name(chat_tool_family f)
{
    return f >= 0 && f < CHAT_TOOLS_N_FAMILIES ? family_names[f] : "?";
}

const char *const *chat_tool_markers(chat_tool_family f)
{
    static const char *const m[CHAT_TOOLS_N_FAMILIES][6] = {
        [CHAT_TOOLS_HERMES] = {"<tool_call>", "</tool_call>", NULL},
        [CHAT_TOOLS_LLAMA3] = {"<|python_tag|>", NULL},
        [CHAT_TOOLS_MISTRAL] = {"[TOOL_CALLS]", NULL},
        [CHAT_TOOLS_GRANITE] = {"<|tool_call|>", NULL},
        [CHAT_TOOLS_DEEPSEEK] = {DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_SEP, DS_CALL_END, DS_CALLS_END,
                                 NULL},
    };
    return m[f >= 0 && f < CHAT_TOOLS_N_FAMILIES ? f : CHAT_TOOLS_HERMES];
}

/* ---- an incremental JSON scanner (RFC 8259; the top level must be an
 * object or an array) ---- */

enum {
    J_VALUE, J_ARR1, J_KEY1, J_KEY, J_COLON, J_AFTER, J_STR, J_ESC, J_HEX, J_MINUS, J_ZERO, J_INT,
    J_DOT, J_FRAC, J_E, J_ESIGN, J_EXP, J_LIT, J_DONE
};

typedef struct {
    uint8_t st, hex, lit_pos;
    bool key;
    const char *lit;
    int depth;
    char stack[JS_MAX_DEPTH];
} jscan;

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int js_close(jscan *j, char kind)
{
    if (j->depth == 0 || j->stack[j->depth - 1] != kind)
        return -1;
    j->depth--;
    j->st = j->depth ? J_AFTER : J_DONE;
    return j->depth ? 0 : 1;
}

static int js_push(jscan *j, char kind)
{
    if (j->depth == JS_MAX_DEPTH)
        return -1;
    j->stack[j->depth++] = kind;
    j->st = kind == 'o' ? J_KEY1 : J_ARR1;
    return 0;
}

/* One byte: 0 continue, 1 the top-level value ended with this byte, -1 the
 * text is not JSON (or nests past JS_MAX_DEPTH). */
static int js_feed(jscan *j, unsigned char c)
{
    for (;;) {
        switch (j->st) {
        case J_VALUE:
        case J_ARR1:
            if (is_ws(c))
                return 0;
            if (j->st == J_ARR1 && c == ']')
                return js_close(j, 'a');
            if (j->depth == 0 && c != '{' && c != '[')
                return -1;
            switch (c) {
            case '{':
                return js_push(j, 'o');
            case '[':
                return js_push(j, 'a');
            case '"':
                j->key = false;
                j->st = J_STR;
                return 0;
            case '-':
                j->st = J_MINUS;
                return 0;
            case '0':
                j->st = J_ZERO;
                return 0;
            case 't':
            case 'f':
            case 'n':
                j->lit = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
                j->lit_pos = 0;
                j->st = J_LIT;
                return 0;
            default:
                if (c >= '1' && c <= '9') {
                    j->st = J_INT;
                    return 0;
                }
                return -1;
            }
        case J_KEY1:
        case J_KEY:
            if (is_ws(c))
                return 0;
            if (j->st == J_KEY1 && c == '}')
                return js_close(j, 'o');
            if (c != '"')
                return -1;
            j->key = true;
            j->st = J_STR;
            return 0;
        case J_COLON:
            if (is_ws(c))
                return 0;
            if (c != ':')
                return -1;
            j->st = J_VALUE;
            return 0;
        case J_AFTER:
            if (is_ws(c))
                return 0;
            if (c == ',') {
                j->st = j->stack[j->depth - 1] == 'o' ? J_KEY : J_VALUE;
                return 0;
            }
            if (c == ']')
                return js_close(j, 'a');
            if (c == '}')
                return js_close(j, 'o');
            return -1;
        case J_STR:
            if (c == '"')
                j->st = j->key ? J_COLON : J_AFTER;
            else if (c == '\\')
                j->st = J_ESC;
            else if (c < 0x20)
                return -1;
            return 0;
        case J_ESC:
            if (c == 'u') {
                j->hex = 4;
                j->st = J_HEX;
                return 0;
            }
            if (!strchr("\"\\/bfnrt", c) || !c)
                return -1;
            j->st = J_STR;
            return 0;
        case J_HEX:
            if (!isxdigit(c))
                return -1;
            if (--j->hex == 0)
                j->st = J_STR;
            return 0;
        case J_MINUS:
            if (c == '0')
                j->st = J_ZERO;
            else if (c >= '1' && c <= '9')
                j->st = J_INT;
            else
                return -1;
            return 0;
        case J_ZERO:
        case J_INT:
        case J_FRAC:
        case J_EXP:
            if (c >= '0' && c <= '9' && j->st != J_ZERO)
                return 0;
            if (c == '.' && (j->st == J_ZERO || j->st == J_INT)) {
                j->st = J_DOT;
                return 0;
            }
            if ((c == 'e' || c == 'E') && j->st != J_EXP) {
                j->st = J_E;
                return 0;
            }
            j->st = J_AFTER; /* the number ended: this byte follows it */
            continue;
        case J_DOT:
            if (c < '0' || c > '9')
                return -1;
            j->st = J_FRAC;
            return 0;
        case J_E:
            if (c == '+' || c == '-') {
                j->st = J_ESIGN;
                return 0;
            }
            if (c < '0' || c > '9')
                return -1;
            j->st = J_EXP;
            return 0;
        case J_ESIGN:
            if (c < '0' || c > '9')
                return -1;
            j->st = J_EXP;
            return 0;
        case J_LIT:
            if ((unsigned char)j->lit[j->lit_pos] != c)
                return -1;
            if (!j->lit[++j->lit_pos])
                j->st = J_AFTER;
            return 0;
        default:
            return -1;
        }
    }
}

/* True if s[a..b) is exactly one JSON object or array, whitespace around
 * it allowed; *va, *vb its span. */
static bool json_exact(const char *s, size_t a, size_t b, size_t *va, size_t *vb)
{
    while (a < b && is_ws((unsigned char)s[a]))
        a++;
    while (b > a && is_ws((unsigned char)s[b - 1]))
        b--;
    if (a == b)
        return false;
    jscan j = {0};
    for (size_t i = a; i < b; i++) {
        int r = js_feed(&j, (unsigned char)s[i]);
        if (r < 0 || (r == 1 && i + 1 != b))
            return false;
        if (r == 1) {
            *va = a;
            *vb = b;
            return true;
        }
    }
    return false;
}

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = chat_utf8_len((const unsigned char *)s + i, n - i);
        if (!k || (k == 1 && !s[i]))
            return false;
        i += k;
    }
    return true;
}

/* On valid JSON: the end of the value starting at s[i]. */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    if (s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++)
            if (s[i] == '\\')
                i++;
        return i + 1;
    }
    if (s[i] == '{' || s[i] == '[') {
        int d = 0;
        for (; i < n; i++) {
            char c = s[i];
            if (c == '"') {
                i = skip_value(s, i, n) - 1;
            } else if (c == '{' || c == '[') {
                d++;
            } else if (c == '}' || c == ']') {
                if (--d == 0)
                    return i + 1;
            }
        }
        return n;
    }
    while (i < n && !strchr(",]} \t\n\r", s[i]))
        i++;
    return i;
}

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && is_ws((unsigned char)s[i]))
        i++;
    return i;
}

/* A JSON string literal's value (malloc'd), or NULL. */
static char *decode_string(const char *s, size_t n)
{
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, NULL);
    char *out = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    if (out && strlen(out) != json_string_length(v)) { /* a NUL inside */
        free(out);
        out = NULL;
    }
    json_decref(v);
    return out;
}

/* ---- the parser ---- */

typedef struct {
    chat_tool_event_kind kind;
    size_t off, len; /* CONTENT: in p->content */
    int32_t call;
} event_rec;

typedef enum { B_MORE, B_OK, B_BAD, B_DROP } block_result;

enum { THINK_UNKNOWN = 0, THINK_IN, THINK_NONE };
enum { FS_OFF = 0, FS_HEAD, FS_NAME, FS_MID, FS_ARGS, FS_TAIL, FS_FALLBACK };

struct chat_tool_parser {
    chat_tool_family fam;
    char **names;
    size_t n_names;
    bool parallel;
    uint64_t rng;
    vt_buf buf; /* pending text: buf.p[off..buf.len) */
    size_t off;
    vt_buf content;
    chat_tool_call *calls;
    int32_t n_calls, cap_calls, kept_from; /* kept_from: first call of the block being read */
    event_rec *rec;
    chat_tool_event *ev;
    size_t n_ev, cap_ev;
    bool in_block, after_call, may_start, final, oom;
    int think; /* THINK_*: reasoning before the answer is never parsed for calls */
    size_t block_ws, marker_len, memo;
    bool js_on, bad;
    size_t js_start, js_end;
    jscan js;
    /* a forced call (chat_tool_parser_set_forced), streamed as it comes */
    bool forced;
    int fs;         /* FS_*, per block */
    size_t fs_pos;  /* where the stage reads next, in the block */
    size_t fs_rel;  /* arguments released up to here */
    int32_t fs_call;
};

chat_tool_parser *chat_tool_parser_create(chat_tool_family f, const json_t *tools, bool parallel,
                                          uint64_t seed)
{
    chat_tool_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->fam = f >= 0 && f < CHAT_TOOLS_N_FAMILIES ? f : CHAT_TOOLS_HERMES;
    p->parallel = parallel;
    p->rng = seed ^ 0x9e3779b97f4a7c15ull;
    size_t n = json_array_size(tools);
    if (n && !(p->names = calloc(n, sizeof *p->names))) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *nm = json_string_value(
            json_object_get(json_object_get(json_array_get(tools, i), "function"), "name"));
        if (!nm)
            continue;
        if (!(p->names[p->n_names] = strdup(nm))) {
            chat_tool_parser_destroy(p);
            return NULL;
        }
        p->n_names++;
    }
    return p;
}

static void call_free(chat_tool_call *c)
{
    free(c->name);
    free(c->arguments);
}

void chat_tool_parser_destroy(chat_tool_parser *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_names; i++)
        free(p->names[i]);
    free(p->names);
    for (int32_t i = 0; i < p->n_calls; i++)
        call_free(&p->calls[i]);
    free(p->calls);
    free(p->buf.p);
    free(p->content.p);
    free(p->rec);
    free(p->ev);
    free(p);
}

void chat_tool_parser_set_forced(chat_tool_parser *p)
{
    p->forced = true;
}

void chat_tool_parser_set_think(chat_tool_parser *p, bool in_think)
{
    if (p->buf.len == 0 && p->content.len == 0)
        p->think = in_think ? THINK_IN : THINK_UNKNOWN;
}

int32_t chat_tool_parser_n_calls(const chat_tool_parser *p)
{
    return p->n_calls;
}

const chat_tool_call *chat_tool_parser_call(const chat_tool_parser *p, int32_t i)
{
    return i >= 0 && i < p->n_calls ? &p->calls[i] : NULL;
}

const char *chat_tool_parser_content(const chat_tool_parser *p, size_t *len)
{
    *len = p->content.len;
    return p->content.p ? p->content.p : "";
}

static bool add_event(chat_tool_parser *p, event_rec r)
{
    if ((r.kind == CHAT_TEV_CONTENT || r.kind == CHAT_TEV_CALL_ARGS) && p->n_ev &&
        p->rec[p->n_ev - 1].kind == r.kind && p->rec[p->n_ev - 1].call == r.call &&
        p->rec[p->n_ev - 1].off + p->rec[p->n_ev - 1].len == r.off) {
        p->rec[p->n_ev - 1].len += r.len;
        return true;
    }
    if (p->n_ev == p->cap_ev) {
        size_t cap = p->cap_ev ? p->cap_ev * 2 : 8;
        event_rec *nr = realloc(p->rec, cap * sizeof *nr);
        if (!nr)
            return false;
        p->rec = nr;
        chat_tool_event *ne = realloc(p->ev, cap * sizeof *ne);
        if (!ne)
            return false;
        p->ev = ne;
        p->cap_ev = cap;
    }
    p->rec[p->n_ev++] = r;
    return true;
}

static void emit_content(chat_tool_parser *p, const char *s, size_t n)
{
    if (!n)
        return;
    size_t off = p->content.len;
    vt_buf_add(&p->content, s, n);
    if (p->content.oom || !add_event(p, (event_rec){CHAT_TEV_CONTENT, off, n, -1}))
        p->oom = true;
    p->may_start = false;
}

static bool known_name(const chat_tool_parser *p, const char *name)
{
    for (size_t i = 0; i < p->n_names; i++)
        if (!strcmp(p->names[i], name))
            return true;
    return false;
}

static uint64_t next_rand(chat_tool_parser *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Appends a call (name and arguments copied); false on a bad name or OOM
 * (p->oom set for OOM). */
static bool add_call(chat_tool_parser *p, const char *name, const char *args, size_t args_len)
{
    if (!known_name(p, name))
        return false;
    if (p->n_calls == p->cap_calls) {
        int32_t cap = p->cap_calls ? p->cap_calls * 2 : 4;
        chat_tool_call *nc = realloc(p->calls, (size_t)cap * sizeof *nc);
        if (!nc) {
            p->oom = true;
            return false;
        }
        p->calls = nc;
        p->cap_calls = cap;
    }
    chat_tool_call *c = &p->calls[p->n_calls];
    memset(c, 0, sizeof *c);
    static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(c->id, "call_", 5);
    for (int i = 0; i < 24; i++)
        c->id[5 + i] = an[next_rand(p) % 62];
    c->id[29] = 0;
    c->name = strdup(name);
    c->arguments = malloc(args_len + 1);
    if (!c->name || !c->arguments) {
        call_free(c);
        p->oom = true;
        return false;
    }
    memcpy(c->arguments, args, args_len);
    c->arguments[args_len] = 0;
    c->arguments_len = args_len;
    p->n_calls++;
    return true;
}

/* A call object s[a..b) (valid JSON): {"name": N, "arguments"|"parameters":
 * {...}, ...}. */
static bool object_call(chat_tool_parser *p, const char *s, size_t a, size_t b)
{
    if (s[a] != '{')
        return false;
    char *name = NULL;
    size_t as = 0, ae = 0;
    bool bad = false;
    for (size_t i = skip_ws(s, a + 1, b); i < b && s[i] != '}' && !bad;) {
        size_t ke = skip_value(s, i, b);
        char *key = decode_string(s + i, ke - i);
        size_t vs = skip_ws(s, skip_ws(s, ke, b) + 1, b), ve = skip_value(s, vs, b);
        if (!key) {
            bad = true;
        } else if (!strcmp(key, "name") && !name) {
            name = s[vs] == '"' ? decode_string(s + vs, ve - vs) : NULL;
            bad = !name;
        } else if ((!strcmp(key, "arguments") || !strcmp(key, "parameters")) && !ae) {
            bad = s[vs] != '{';
            as = vs;
            ae = ve;
        }
        free(key);
        i = skip_ws(s, ve, b);
        if (i < b && s[i] == ',')
            i = skip_ws(s, i + 1, b);
    }
    bool ok = !bad && name && add_call(p, name, ae ? s + as : "{}", ae ? ae - as : 2);
    free(name);
    return ok;
}

/* A JSON object or array of call objects s[a..b) (valid JSON). */
static bool json_calls(chat_tool_parser *p, const char *s, size_t a, size_t b, bool array_ok)
{
    if (!utf8_ok(s + a, b - a))
        return false;
    if (s[a] == '{')
        return object_call(p, s, a, b);
    if (s[a] != '[' || !array_ok)
        return false;
    size_t n = 0;
    for (size_t i = skip_ws(s, a + 1, b); i < b && s[i] != ']'; n++) {
        size_t e = skip_value(s, i, b);
        if (!object_call(p, s, i, e))
            return false;
        i = skip_ws(s, e, b);
        if (i < b && s[i] == ',')
            i = skip_ws(s, i + 1, b);
    }
    return n > 0;
}

static const char *start_markers[CHAT_TOOLS_N_FAMILIES][3] = {
    [CHAT_TOOLS_HERMES] = {"<tool_call>", NULL},
    [CHAT_TOOLS_LLAMA3] = {"<|python_tag|>", NULL},
    [CHAT_TOOLS_MISTRAL] = {"[TOOL_CALLS]", NULL},
    [CHAT_TOOLS_GRANITE] = {"<|tool_call|>", NULL},
    [CHAT_TOOLS_DEEPSEEK] = {DS_CALLS_BEGIN, DS_CALL_BEGIN, NULL},
};

static bool is_prefix_of(const char *s, size_t n, const char *m)
{
    return n < strlen(m) && !memcmp(s, m, n);
}

/* Searches s[from..n) for the first occurrence of any of the markers:
 * its position (or n) and length in *mlen. */
static size_t find_first(const char *s, size_t from, size_t n, const char *const *ms,
                         size_t *mlen)
{
    size_t best = n;
    *mlen = 0;
    for (int k = 0; ms[k]; k++) {
        size_t ml = strlen(ms[k]);
        if (from >= n)
            break;
        const char *hit = memmem(s + from, n - from, ms[k], ml);
        if (hit && (size_t)(hit - s) < best) {
            best = (size_t)(hit - s);
            *mlen = ml;
        }
    }
    return best;
}

/* The content state: releases what cannot start a call, finds a block.
 * Returns false when it needs more text. */
/* Reasoning: an output that opens with <think> (or one that starts inside
 * it, chat_tool_parser_set_think) is content up to and including </think>,
 * with no markers looked for: a call the model only plans there is not
 * made. False when it needs more text. */
static bool step_think(chat_tool_parser *p, const char *s, size_t n)
{
    static const char OPEN[] = "<think>", CLOSE[] = "</think>";
    size_t ol = sizeof OPEN - 1, cl = sizeof CLOSE - 1;
    if (p->think == THINK_UNKNOWN) {
        size_t j = skip_ws(s, 0, n);
        if (!p->final && (j == n || is_prefix_of(s + j, n - j, OPEN)))
            return false;
        p->think = n - j >= ol && !memcmp(s + j, OPEN, ol) ? THINK_IN : THINK_NONE;
        return true;
    }
    const char *hit = memmem(s, n, CLOSE, cl);
    size_t keep = 0;
    if (hit) {
        size_t end = (size_t)(hit - s) + cl;
        emit_content(p, s, end);
        p->off += end;
        p->think = THINK_NONE;
        return true;
    }
    for (size_t l = VT_MIN(cl - 1, n); !p->final && l > 0; l--)
        if (!memcmp(s + n - l, CLOSE, l)) {
            keep = l;
            break;
        }
    emit_content(p, s, n - keep);
    p->off += n - keep;
    return false;
}

static bool step_content(chat_tool_parser *p, const char *s, size_t n)
{
    size_t i = 0;
    if (p->think != THINK_NONE)
        return step_think(p, s, n);
    if (p->after_call) { /* whitespace (and separators) after a call are dropped */
        for (;;) {
            while (i < n && (is_ws((unsigned char)s[i]) ||
                             (p->fam == CHAT_TOOLS_LLAMA3 && s[i] == ';')))
                i++;
            if (p->fam == CHAT_TOOLS_DEEPSEEK && n - i >= strlen(DS_CALLS_END) &&
                !memcmp(s + i, DS_CALLS_END, strlen(DS_CALLS_END))) {
                i += strlen(DS_CALLS_END);
                continue;
            }
            break;
        }
        p->off += i;
        if (i == n || (p->fam == CHAT_TOOLS_DEEPSEEK && !p->final &&
                       is_prefix_of(s + i, n - i, DS_CALLS_END)))
            return false;
        s += i;
        n -= i;
        p->after_call = false;
        p->may_start = true;
    }
    size_t mlen;
    size_t m = find_first(s, 0, n, start_markers[p->fam], &mlen);
    if (p->fam == CHAT_TOOLS_LLAMA3 && (p->may_start || p->content.len == 0)) {
        size_t j = skip_ws(s, 0, n);
        if (j < n && s[j] == '{' && j < m) {
            m = j;
            mlen = 0;
        }
    }
    if (m < n) {
        size_t w = m;
        while (w > 0 && is_ws((unsigned char)s[w - 1]))
            w--;
        emit_content(p, s, w);
        p->off += w;
        p->in_block = true;
        p->block_ws = m - w;
        p->marker_len = mlen;
        p->memo = 0;
        p->js_on = p->bad = false;
        p->fs = FS_OFF;
        return true;
    }
    size_t keep = 0;
    if (!p->final) {
        for (int k = 0; start_markers[p->fam][k]; k++) {
            const char *mk = start_markers[p->fam][k];
            size_t ml = strlen(mk);
            for (size_t l = VT_MIN(ml - 1, n); l > keep; l--)
                if (!memcmp(s + n - l, mk, l)) {
                    keep = l;
                    break;
                }
        }
        size_t w = n - keep;
        while (w > 0 && is_ws((unsigned char)s[w - 1]))
            w--;
        keep = n - w;
        if (p->fam == CHAT_TOOLS_LLAMA3 && p->content.len == 0 && w == 0)
            keep = n;
    }
    emit_content(p, s, n - keep);
    p->off += n - keep;
    return false;
}

/* HERMES: <tool_call> JSON </tool_call>. The JSON is read by the scanner,
 * so markers inside its strings are text; after it come whitespace and the
 * end marker (or the next call's start marker, or the end of the output).
 * A block that turns out bad runs to the next end marker (or the end). */
static block_result block_hermes(chat_tool_parser *p, const char *s, size_t n, size_t *used)
{
    static const char END[] = "</tool_call>", START[] = "<tool_call>";
    size_t b = p->block_ws + p->marker_len, el = sizeof END - 1, sl = sizeof START - 1;
    if (!p->bad) {
        if (!p->js_on) {
            size_t j = skip_ws(s, b, n);
            if (j == n) {
                *used = n;
                return p->final ? B_BAD : B_MORE;
            }
            memset(&p->js, 0, sizeof p->js);
            p->js_on = true;
            p->js_start = p->memo = j;
            p->js_end = 0;
        }
        for (size_t i = p->memo; !p->js_end && i < n; i++) {
            int r = js_feed(&p->js, (unsigned char)s[i]);
            if (r < 0) {
                p->bad = true;
                p->memo = i;
                break;
            }
            if (r == 1)
                p->js_end = i + 1;
        }
        if (!p->bad && !p->js_end) {
            p->memo = n;
            *used = n;
            return p->final ? B_BAD : B_MORE;
        }
    }
    if (!p->bad) {
        size_t k = skip_ws(s, p->js_end, n);
        bool at_end = n - k >= el && !memcmp(s + k, END, el);
        bool at_next = n - k >= sl && !memcmp(s + k, START, sl);
        if (!at_end && !at_next && k < n && !p->final &&
            (is_prefix_of(s + k, n - k, END) || is_prefix_of(s + k, n - k, START)))
            return B_MORE;
        if (k == n && !p->final)
            return B_MORE;
        if (at_end || at_next || k == n) {
            *used = at_end ? k + el : k;
            return json_calls(p, s, p->js_start, p->js_end, false) ? B_OK : B_BAD;
        }
        p->bad = true; /* something else after the JSON */
        p->memo = k;
    }
    const char *hit = p->memo < n ? memmem(s + p->memo, n - p->memo, END, el) : NULL;
    if (hit) {
        *used = (size_t)(hit - s) + el;
        return B_BAD;
    }
    p->memo = VT_MAX(p->memo, n >= el ? n - el + 1 : 0);
    *used = n;
    return p->final ? B_BAD : B_MORE;
}

/* LLAMA3's built-in tool form after <|python_tag|>: NAME.call(ARG="text",
 * ARG=1, ...) as its template writes built-in calls; the arguments become a
 * JSON object (strings, numbers, True/False/None). Read again from the
 * start at each feed (such calls are short; one past 64 KiB is refused). */
static block_result block_builtin(chat_tool_parser *p, const char *s, size_t j, size_t n,
                                  size_t *used)
{
    size_t i = j;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
        i++;
    size_t name_end = i;
    static const char CALL[] = ".call(";
    size_t cl = sizeof CALL - 1;
    if (name_end == j || (n - i < cl ? memcmp(s + i, CALL, n - i) : memcmp(s + i, CALL, cl))) {
        *used = j;
        return B_BAD;
    }
    if (n - i < cl) {
        *used = n;
        return p->final ? B_BAD : B_MORE;
    }
    i += cl;
    vt_buf args = {0};
    vt_buf_add(&args, "{", 1);
    bool ok = true, closed = false;
    for (int k = 0; ok && !closed; k++) {
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ')' && k == 0) {
            closed = true;
            i++;
            break;
        }
        size_t ka = i;
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_'))
            i++;
        size_t ke = i;
        i = skip_ws(s, i, n);
        if (i >= n)
            break;
        if (ke == ka || s[i] != '=') {
            ok = false;
            break;
        }
        i = skip_ws(s, i + 1, n);
        if (i >= n)
            break;
        json_t *val = NULL;
        if (s[i] == '"' || s[i] == '\'') {
            char q = s[i];
            vt_buf str = {0};
            for (i++; i < n && s[i] != q; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    char c = s[++i];
                    c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
                    vt_buf_add(&str, &c, 1);
                    continue;
                }
                vt_buf_add(&str, s + i, 1);
            }
            if (i < n) {
                i++;
                val = utf8_ok(str.p ? str.p : "", str.len) ? json_stringn(str.p ? str.p : "", str.len)
                                                        : NULL;
                ok = val != NULL;
            }
            free(str.p);
        } else {
            size_t va = i;
            while (i < n && !strchr(",) \t\n\r", s[i]))
                i++;
            if (i < n) {
                char lit[64];
                size_t ll = VT_MIN(i - va, sizeof lit - 1);
                memcpy(lit, s + va, ll);
                lit[ll] = 0;
                val = !strcmp(lit, "True")    ? json_true()
                      : !strcmp(lit, "False") ? json_false()
                      : !strcmp(lit, "None")  ? json_null()
                                              : json_loads(lit, JSON_DECODE_ANY, NULL);
                ok = json_is_number(val) || json_is_boolean(val) || json_is_null(val);
            }
        }
        if (!val) {
            if (ok && i >= n)
                break; /* more to come */
            ok = false;
            break;
        }
        char *vt = ok ? json_dumps(val, JSON_ENCODE_ANY) : NULL;
        json_t *key = json_stringn(s + ka, ke - ka);
        char *kt = key ? json_dumps(key, JSON_ENCODE_ANY) : NULL;
        if (k)
            vt_buf_add(&args, ", ", 2);
        if (vt && kt) {
            vt_buf_add(&args, kt, strlen(kt));
            vt_buf_add(&args, ": ", 2);
            vt_buf_add(&args, vt, strlen(vt));
        } else {
            ok = false;
        }
        free(vt);
        free(kt);
        json_decref(key);
        json_decref(val);
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',')
            i++;
        else if (i < n && s[i] == ')') {
            closed = true;
            i++;
        } else if (i < n) {
            ok = false;
        }
    }
    vt_buf_add(&args, "}", 1);
    block_result r;
    if (!ok || (!closed && (p->final || n - j > 65536))) {
        *used = ok ? n : VT_MIN(i + 1, n);
        r = B_BAD;
    } else if (!closed) {
        *used = n;
        r = B_MORE;
    } else {
        char name[80];
        size_t nl = VT_MIN(name_end - j, sizeof name - 1);
        memcpy(name, s + j, nl);
        name[nl] = 0;
        *used = i;
        r = !args.oom && name_end - j < sizeof name && add_call(p, name, args.p, args.len) ? B_OK
                                                                                          : B_BAD;
    }
    if (args.oom)
        p->oom = true;
    free(args.p);
    return r;
}

/* MISTRAL, GRANITE, LLAMA3: a JSON value after the marker. */
static block_result block_json(chat_tool_parser *p, const char *s, size_t n, size_t *used)
{
    size_t b = p->block_ws + p->marker_len;
    if (!p->js_on) {
        size_t j = skip_ws(s, b, n);
        if (j == n) {
            *used = n;
            return p->final ? B_BAD : B_MORE;
        }
        bool arr = p->fam != CHAT_TOOLS_LLAMA3;
        if (p->fam == CHAT_TOOLS_LLAMA3 && p->marker_len && s[j] != '{')
            return block_builtin(p, s, j, n, used);
        if (s[j] != '{' && !(arr && s[j] == '[')) {
            *used = j;
            return B_BAD;
        }
        memset(&p->js, 0, sizeof p->js);
        p->js_on = true;
        p->js_start = j;
        p->memo = j;
    }
    for (size_t i = p->memo; i < n; i++) {
        int r = js_feed(&p->js, (unsigned char)s[i]);
        if (r < 0) {
            *used = i + 1;
            return B_BAD;
        }
        if (r == 1) {
            *used = i + 1;
            return json_calls(p, s, p->js_start, i + 1, p->fam != CHAT_TOOLS_LLAMA3) ? B_OK
                                                                                   : B_BAD;
        }
    }
    p->memo = n;
    *used = n;
    return p->final ? B_BAD : B_MORE;
}

/* DEEPSEEK: the calls section's start (dropped), or one call:
 * <｜tool▁call▁begin｜>TYPE<｜tool▁sep｜>NAME\n[```json\n]{...}[\n```]
 * <｜tool▁call▁end｜> */
static block_result block_deepseek(chat_tool_parser *p, const char *s, size_t n, size_t *used)
{
    size_t b = p->block_ws + p->marker_len;
    if (p->marker_len == strlen(DS_CALLS_BEGIN) &&
        !memcmp(s + p->block_ws, DS_CALLS_BEGIN, p->marker_len)) {
        *used = b;
        return B_DROP;
    }
    static const char *const ends[] = {DS_CALL_END, DS_CALL_BEGIN, DS_CALLS_END, NULL};
    size_t mlen;
    size_t e = find_first(s, VT_MAX(b, p->memo), n, ends, &mlen);
    if (e == n) {
        if (!p->final) { /* a marker may straddle the end: search its length back */
            size_t back = strlen(DS_CALL_BEGIN);
            p->memo = n > b + back ? n - back : b;
            return B_MORE;
        }
        mlen = 0;
    }
    *used = e + (mlen == strlen(DS_CALL_END) && !memcmp(s + e, DS_CALL_END, mlen) ? mlen : 0);
    const char *sep = memmem(s + b, e - b, DS_SEP, strlen(DS_SEP));
    if (!sep)
        return B_BAD;
    size_t ta = skip_ws(s, b, n), tb = (size_t)(sep - s);
    while (tb > ta && is_ws((unsigned char)s[tb - 1]))
        tb--;
    if (tb > ta && (tb - ta != 8 || memcmp(s + ta, "function", 8)))
        return B_BAD;
    size_t na = (size_t)(sep - s) + strlen(DS_SEP);
    const char *nl = memchr(s + na, '\n', e - na);
    if (!nl)
        return B_BAD;
    size_t nb = (size_t)(nl - s), ja = nb + 1, jb = e;
    while (na < nb && is_ws((unsigned char)s[na]))
        na++;
    while (nb > na && is_ws((unsigned char)s[nb - 1]))
        nb--;
    ja = skip_ws(s, ja, jb);
    if (jb - ja >= 7 && !memcmp(s + ja, "```json", 7))
        ja += 7;
    else if (jb - ja >= 3 && !memcmp(s + ja, "```", 3))
        ja += 3;
    while (jb > ja && is_ws((unsigned char)s[jb - 1]))
        jb--;
    if (jb - ja >= 3 && !memcmp(s + jb - 3, "```", 3))
        jb -= 3;
    size_t va, vb;
    if (nb == na || !utf8_ok(s + na, nb - na) || !json_exact(s, ja, jb, &va, &vb) ||
        s[va] != '{' || !utf8_ok(s + va, vb - va))
        return B_BAD;
    char *name = malloc(nb - na + 1);
    if (!name) {
        p->oom = true;
        return B_BAD;
    }
    memcpy(name, s + na, nb - na);
    name[nb - na] = 0;
    bool ok = !memchr(name, 0, nb - na) && add_call(p, name, s + va, vb - va);
    free(name);
    return ok ? B_OK : B_BAD;
}

/* Appends args[0..n) to call i's arguments, as a CALL_ARGS event. */
static void stream_args(chat_tool_parser *p, int32_t i, const char *args, size_t n)
{
    chat_tool_call *c = &p->calls[i];
    if (!n)
        return;
    char *a = realloc(c->arguments, c->arguments_len + n + 1);
    if (!a) {
        p->oom = true;
        return;
    }
    memcpy(a + c->arguments_len, args, n);
    c->arguments = a;
    size_t off = c->arguments_len;
    c->arguments_len += n;
    a[c->arguments_len] = 0;
    if (!add_event(p, (event_rec){CHAT_TEV_CALL_ARGS, off, n, i}))
        p->oom = true;
}

/* A forced call (its opening from the prompt, the rest under the grammar of
 * chat_tool_forced): the envelope is known, so the call is released as soon
 * as its name is read (CALL_BEGIN) and its arguments as they come
 * (CALL_ARGS), complete at the end of the output (CALL). B_BAD before the
 * name means "not that shape" (nothing was released; the normal reading
 * takes over); B_DROP: not a call block at all. */
static block_result block_forced(chat_tool_parser *p, const char *s, size_t n, size_t *used)
{
    static const char *const heads[CHAT_TOOLS_N_FAMILIES] = {
        [CHAT_TOOLS_HERMES] = "{\"name\": \"", [CHAT_TOOLS_LLAMA3] = "{\"name\": \"",
        [CHAT_TOOLS_MISTRAL] = "[{\"name\": \"", [CHAT_TOOLS_GRANITE] = "[{\"name\": \"",
        [CHAT_TOOLS_DEEPSEEK] = "function" DS_SEP};
    static const char *const mids[CHAT_TOOLS_N_FAMILIES] = {
        [CHAT_TOOLS_HERMES] = "\", \"arguments\": ", [CHAT_TOOLS_LLAMA3] = "\", \"parameters\": ",
        [CHAT_TOOLS_MISTRAL] = "\", \"arguments\": ", [CHAT_TOOLS_GRANITE] = "\", \"arguments\": ",
        [CHAT_TOOLS_DEEPSEEK] = "\n```json\n"};
    if (p->fam == CHAT_TOOLS_DEEPSEEK && p->marker_len == strlen(DS_CALLS_BEGIN) &&
        !memcmp(s + p->block_ws, DS_CALLS_BEGIN, p->marker_len))
        return B_DROP;
    if (p->fs == FS_OFF) {
        p->fs = FS_HEAD;
        p->fs_pos = skip_ws(s, p->block_ws + p->marker_len, n);
        if (p->fs_pos == n)
            return p->final ? B_BAD : B_MORE;
    }
    const char *lit = p->fs == FS_HEAD ? heads[p->fam] : mids[p->fam];
    if (p->fs == FS_HEAD || p->fs == FS_MID) {
        size_t ll = strlen(lit), avail = n - p->fs_pos;
        if (memcmp(s + p->fs_pos, lit, VT_MIN(avail, ll)))
            return B_BAD;
        if (avail < ll)
            return p->final ? B_BAD : B_MORE;
        if (p->fs == FS_HEAD) {
            p->fs_pos += ll;
            p->memo = p->fs_pos; /* the name starts here */
            p->fs = FS_NAME;
        }
    }
    if (p->fs == FS_NAME) {
        char end = p->fam == CHAT_TOOLS_DEEPSEEK ? '\n' : '"';
        const char *e = memchr(s + p->fs_pos, end, n - p->fs_pos);
        if (!e) {
            p->fs_pos = n;
            return p->final || n - p->memo > 64 ? B_BAD : B_MORE;
        }
        p->fs_pos = (size_t)(e - s);
        p->fs = FS_MID;
        return block_forced(p, s, n, used);
    }
    if (p->fs == FS_MID) { /* the whole mid literal is there: the call begins */
        char name[80];
        size_t nl = p->fs_pos - p->memo;
        if (nl == 0 || nl >= sizeof name)
            return B_BAD;
        memcpy(name, s + p->memo, nl);
        name[nl] = 0;
        if (!add_call(p, name, "", 0))
            return B_BAD;
        p->fs_call = p->n_calls - 1;
        if (!add_event(p, (event_rec){CHAT_TEV_CALL_BEGIN, 0, 0, p->fs_call}))
            p->oom = true;
        p->calls[p->fs_call].streamed = true;
        p->fs_pos += strlen(lit);
        p->fs_rel = p->fs_pos;
        p->fs = FS_ARGS;
        memset(&p->js, 0, sizeof p->js);
    }
    if (p->fs == FS_ARGS) {
        size_t i = p->fs_pos;
        for (; i < n; i++) {
            int r = js_feed(&p->js, (unsigned char)s[i]);
            if (r < 0) { /* cannot happen under the grammar: the arguments end here */
                p->fs = FS_TAIL;
                break;
            }
            if (r == 1) {
                i++;
                p->fs = FS_TAIL;
                break;
            }
        }
        p->fs_pos = i;
        /* a piece never ends inside a UTF-8 character (it becomes a JSON
         * string on its own) until the arguments are over */
        size_t rel = i;
        if (p->fs == FS_ARGS && !p->final) {
            size_t lead = i, back = 0;
            while (lead > p->fs_rel && back < 3 && ((unsigned char)s[lead - 1] & 0xc0) == 0x80)
                lead--, back++;
            if (lead > p->fs_rel && (unsigned char)s[lead - 1] >= 0xc0) {
                unsigned char L = (unsigned char)s[lead - 1];
                size_t want = L >= 0xf0 ? 4 : L >= 0xe0 ? 3 : 2;
                if (back + 1 < want)
                    rel = lead - 1;
            }
        }
        stream_args(p, p->fs_call, s + p->fs_rel, rel - p->fs_rel);
        p->fs_rel = rel;
    }
    /* the envelope's rest; the call is complete at the end of the output */
    if (!p->final && n - p->fs_pos < 16)
        return B_MORE;
    if (p->fs_rel < p->fs_pos) /* a cut-short character */
        stream_args(p, p->fs_call, s + p->fs_rel, p->fs_pos - p->fs_rel);
    *used = p->final ? n : p->fs_pos;
    if (!add_event(p, (event_rec){CHAT_TEV_CALL, 0, 0, p->fs_call}))
        p->oom = true;
    p->forced = false;
    return B_OK;
}

/* The block state; false when it needs more text. */
static bool step_block(chat_tool_parser *p, const char *s, size_t n)
{
    size_t used = n;
    p->kept_from = p->n_calls;
    if (p->forced && p->fs != FS_FALLBACK) {
        block_result f = block_forced(p, s, n, &used);
        if (f == B_MORE)
            return false;
        if (f == B_OK) {
            p->off += used;
            p->in_block = false;
            p->after_call = true;
            return true;
        }
        if (f == B_BAD && p->fs >= FS_ARGS)
            p->oom = true; /* cannot be: B_BAD only comes before the call begins */
        p->fs = FS_FALLBACK;
        used = n;
    }
    block_result r = p->fam == CHAT_TOOLS_HERMES     ? block_hermes(p, s, n, &used)
                     : p->fam == CHAT_TOOLS_DEEPSEEK ? block_deepseek(p, s, n, &used)
                                                     : block_json(p, s, n, &used);
    if (r == B_MORE)
        return false;
    if (r == B_BAD) { /* the block stays in the content as written */
        while (p->n_calls > p->kept_from)
            call_free(&p->calls[--p->n_calls]);
        size_t min = p->block_ws + VT_MAX(p->marker_len, 1);
        used = VT_MAX(used, VT_MIN(min, n));
        emit_content(p, s, used);
    } else {
        int32_t first = p->kept_from;
        if (!p->parallel && first > 0) /* only the first call is kept */
            while (p->n_calls > first)
                call_free(&p->calls[--p->n_calls]);
        if (!p->parallel)
            while (p->n_calls > 1)
                call_free(&p->calls[--p->n_calls]);
        for (int32_t i = first; i < p->n_calls; i++)
            if (!add_event(p, (event_rec){CHAT_TEV_CALL, 0, 0, i}))
                p->oom = true;
        p->after_call = true;
    }
    p->off += used;
    p->in_block = false;
    p->js_on = p->bad = false;
    return true;
}

vt_err chat_tool_parser_feed(chat_tool_parser *p, const char *text, size_t len, bool final,
                             const chat_tool_event **ev, size_t *n_ev)
{
    *ev = NULL;
    *n_ev = 0;
    if (p->oom)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    if (p->final)
        return vt_fail(VT_ERR_INVALID, "tool-call parser: fed after the end of the output");
    p->n_ev = 0;
    if (!p->in_block && p->off > 4096 && p->off * 2 > p->buf.len) {
        memmove(p->buf.p, p->buf.p + p->off, p->buf.len - p->off);
        p->buf.len -= p->off;
        p->off = 0;
    }
    vt_buf_add(&p->buf, text, len);
    if (p->buf.oom)
        p->oom = true;
    p->final = final;
    while (!p->oom && p->off < p->buf.len) {
        const char *s = p->buf.p + p->off;
        size_t n = p->buf.len - p->off;
        if (!(p->in_block ? step_block(p, s, n) : step_content(p, s, n)))
            break;
    }
    if (p->oom)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n_ev; i++) {
        event_rec *r = &p->rec[i];
        const char *t = r->kind == CHAT_TEV_CONTENT     ? p->content.p + r->off
                        : r->kind == CHAT_TEV_CALL_ARGS ? p->calls[r->call].arguments + r->off
                                                        : NULL;
        p->ev[i] = (chat_tool_event){r->kind, t, r->len, r->call};
    }
    *ev = p->ev;
    *n_ev = p->n_ev;
    return VT_OK;
}
