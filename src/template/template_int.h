/*
 * template_int.h - internals shared by the template_*.c files: tokens, the
 * syntax tree, runtime values and the render state. Nothing here is part of
 * the public API (see template.h).
 *
 * Memory: a compiled template owns an arena (tokens, nodes, literal strings;
 * literal strings are "immortal" objects whose reference count is never
 * touched, so a template can be rendered by several threads at once). A
 * render owns a heap: every runtime object (string, list, dict, namespace,
 * function, scope) is reference counted and also linked into the render's
 * list of live objects, so that whatever is still alive when the render ends
 * (reference cycles through namespaces, references dropped on an error path)
 * is freed in one sweep. Error paths therefore just return -1.
 */
#ifndef VT_TEMPLATE_INT_H
#define VT_TEMPLATE_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "template/template.h"

/* ---------------------------------------------------------------- arena */

typedef struct tpl_ablock tpl_ablock;
typedef struct {
    tpl_ablock *head;
    size_t bytes;
} tpl_arena;

void *tpl_arena_alloc(tpl_arena *a, size_t n); /* zeroed; NULL on OOM */
void tpl_arena_free(tpl_arena *a);

/* ---------------------------------------------------------------- values */

enum { TV_UNDEF, TV_NONE, TV_BOOL, TV_INT, TV_FLOAT, TV_STR, TV_LIST, TV_DICT, TV_NS, TV_FUNC };
enum { TO_STR = 1, TO_LIST, TO_DICT, TO_FUNC, TO_ENV };

typedef struct tobj {
    struct tobj *prev, *next; /* the render's list of live objects */
    size_t bytes;             /* accounted against max_memory */
    uint32_t rc;
    uint8_t kind;     /* TO_* */
    uint8_t immortal; /* owned by a template: never counted, never freed by a render */
} tobj;

typedef struct tstr {
    tobj h;
    size_t len, cap;
    int64_t u16; /* length in UTF-16 units, -1 until computed */
    char *p;     /* len bytes + NUL */
} tstr;

typedef struct tval {
    uint8_t t; /* TV_* */
    union {
        bool b;
        double n; /* TV_INT and TV_FLOAT: JavaScript numbers */
        struct tstr *s;
        struct tlist *l;
        struct tdict *d; /* TV_DICT and TV_NS */
        struct tfunc *f;
        tobj *o;
    } u;
} tval;

typedef struct tlist {
    tobj h;
    size_t n, cap;
    tval *v;
    bool tuple;
} tlist;

typedef struct tdict {
    tobj h;
    size_t n, cap;
    tstr **k;
    tval *v;
    uint32_t *ix; /* open-addressing index (slot = entry+1) once n > 16 */
    size_t ixcap;
    bool ns;     /* a namespace() */
    bool kwargs; /* keyword arguments of a call */
} tdict;

enum { FN_GLOBAL, FN_METHOD, FN_MACRO, FN_CALLER };
/* FN_METHOD ids: string methods, then dict methods */
enum {
    M_UPPER, M_LOWER, M_STRIP, M_TITLE, M_CAPITALIZE, M_RSTRIP, M_LSTRIP, M_STARTSWITH,
    M_ENDSWITH, M_SPLIT, M_REPLACE, M_STR_END,
    M_GET = 32, M_ITEMS, M_KEYS, M_VALUES, M_DICTSORT, M_DICT_END
};
/* FN_GLOBAL ids */
enum { G_NAMESPACE, G_RAISE, G_RANGE, G_STRFTIME };

typedef struct tenv {
    tobj h;
    struct tenv *parent;
    tdict *vars;
} tenv;

typedef struct tfunc {
    tobj h;
    uint8_t kind; /* FN_* */
    int id;       /* FN_GLOBAL: G_*; FN_METHOD: method id */
    tval self;    /* FN_METHOD: the receiver */
    const struct tnode *node; /* FN_MACRO: the macro; FN_CALLER: the call block */
    tenv *env;                /* FN_CALLER: the scope of the call block */
} tfunc;

/* ---------------------------------------------------------------- render state */

typedef struct trender {
    tobj live; /* sentinel */
    size_t mem, max_mem, max_out;
    uint64_t steps, max_steps;
    int depth, max_depth;
    int64_t now;
    vt_err err;
} trender;

static inline tval tv_undef(void) { return (tval){.t = TV_UNDEF}; }
static inline tval tv_none(void) { return (tval){.t = TV_NONE}; }
static inline tval tv_bool(bool b) { return (tval){.t = TV_BOOL, .u.b = b}; }
static inline tval tv_int(double n) { return (tval){.t = TV_INT, .u.n = n}; }
static inline tval tv_float(double n) { return (tval){.t = TV_FLOAT, .u.n = n}; }
static inline tval tv_str(tstr *s) { return (tval){.t = TV_STR, .u.s = s}; }
static inline tval tv_list(tlist *l) { return (tval){.t = TV_LIST, .u.l = l}; }
static inline tval tv_dict(tdict *d) { return (tval){.t = d->ns ? TV_NS : TV_DICT, .u.d = d}; }
static inline tval tv_func(tfunc *f) { return (tval){.t = TV_FUNC, .u.f = f}; }
static inline bool tv_is_num(tval v) { return v.t == TV_INT || v.t == TV_FLOAT; }
static inline bool tv_is_obj(tval v) { return v.t >= TV_STR; }

/* Errors: record the message (prefixed with the template line when line > 0)
 * and the class, return -1. */
int tpl_fail(trender *r, vt_err e, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int tpl_nomem(trender *r);

/* Heap (template_value.c). Constructors return NULL after tpl_fail. */
void tpl_heap_init(trender *r, const tpl_options *opt);
void tpl_heap_free_all(trender *r);
void tpl_incref(tval v);
void tpl_decref(trender *r, tval v);
void tpl_obj_decref(trender *r, tobj *o);
tstr *tpl_str_new(trender *r, const char *p, size_t n);
/* An empty string to append to (a growable buffer). */
tstr *tpl_buf_new(trender *r, size_t cap);
int tpl_buf_put(trender *r, tstr *s, const char *p, size_t n);
int tpl_buf_putc(trender *r, tstr *s, char c);
tstr *tpl_str_immortal(tpl_arena *a, const char *p, size_t n);
tlist *tpl_list_new(trender *r, size_t cap);
int tpl_list_push(trender *r, tlist *l, tval v); /* takes the reference */
tdict *tpl_dict_new(trender *r, bool ns);
/* Sets key (incref'd) to v (reference taken); an existing key keeps its place. */
int tpl_dict_set(trender *r, tdict *d, tstr *key, tval v);
tval *tpl_dict_get(const tdict *d, const char *k, size_t n); /* borrowed, NULL if absent */
bool tpl_dict_del(trender *r, tdict *d, const char *k, size_t n);
tfunc *tpl_func_new(trender *r, int kind, int id);
tenv *tpl_env_new(trender *r, tenv *parent);
/* Looks a name up through the scopes; borrowed, NULL if undefined. */
tval *tpl_env_lookup(tenv *e, const char *k, size_t n);
int tpl_check_steps(trender *r, int line);

/* Conversions (template_value.c). */
int tpl_from_json(trender *r, const json_t *j, tval *out, int depth);
/* RuntimeValue.toString(): what {{ v }} prints (v not none/undefined). */
int tpl_to_string(trender *r, tval v, tstr *buf, int line);
/* String(v.value): JavaScript's conversion of the raw value (for ~, +, join). */
int tpl_to_raw_string(trender *r, tval v, tstr *buf, int line);
typedef struct {
    int indent;               /* 0: one line */
    bool ensure_ascii, sort_keys;
    const char *item_sep, *key_sep; /* NULL: the defaults */
    size_t item_sep_len, key_sep_len;
    bool undef_as_null;
} tjson_opts;
int tpl_to_json(trender *r, tval v, const tjson_opts *o, tstr *buf, int depth, int line);
bool tpl_truthy(tval v);     /* __bool__ */
bool tpl_raw_truthy(tval v); /* !!v.value in JavaScript */
int tpl_loose_eq(trender *r, tval a, tval b, bool *res); /* JavaScript ==; -1 on OOM */
bool tpl_strict_eq(tval a, tval b);            /* JavaScript === */
/* compareRuntimeValues: -1/0/1 in *res, or -1 after tpl_fail. */
int tpl_compare(trender *r, tval a, tval b, bool case_sensitive, int *res, int line);
const char *tpl_type_name(tval v);

/* Text (template_text.c). */
int tpl_utf8_decode(const char *s, size_t n, size_t *i); /* next code point, U+FFFD if bad */
int tpl_utf8_encode(uint32_t cp, char out[4]);
bool tpl_js_space(uint32_t cp);
int64_t tpl_u16_len(tstr *s);
size_t tpl_trim_start(const char *s, size_t n); /* bytes of leading JS whitespace */
size_t tpl_trim_end(const char *s, size_t n);   /* bytes left after stripping trailing */
/* Case mapping of a whole string into buf. */
int tpl_case_map(trender *r, const char *s, size_t n, bool upper, tstr *buf);
uint32_t tpl_cp_upper(uint32_t cp);
uint32_t tpl_cp_lower(uint32_t cp);
/* JavaScript's Number::toString into buf (at least 32 bytes); returns length. */
int tpl_js_number(double x, char *buf);
double tpl_js_to_number(const char *s, size_t n); /* ToNumber(string), NaN if not a number */
double tpl_js_parse_int(const char *s, size_t n);
double tpl_js_parse_float(const char *s, size_t n);
/* Appends JSON.stringify(s); ascii: escape every unit >= 0x7f as \uXXXX. */
int tpl_json_quote_into(trender *r, const char *s, size_t n, bool ascii, tstr *buf);
int tpl_u16_cmp(const char *a, size_t an, const char *b, size_t bn);

/* ---------------------------------------------------------------- tokens */

enum {
    TK_EOF, TK_TEXT, TK_NUM, TK_STR, TK_IDENT, TK_EQUALS, TK_LPAREN, TK_RPAREN, TK_OPEN_STMT,
    TK_CLOSE_STMT, TK_OPEN_EXPR, TK_CLOSE_EXPR, TK_LBRACKET, TK_RBRACKET, TK_LBRACE, TK_RBRACE,
    TK_COMMA, TK_DOT, TK_COLON, TK_PIPE, TK_ADD, TK_MUL, TK_POW, TK_CMP, TK_UNARY, TK_COMMENT
};

typedef struct {
    uint8_t type;
    int line;
    const char *p; /* text of the token (string literals unescaped) */
    size_t len;
} ttoken;

/* Preprocesses and tokenizes; tokens end with TK_EOF. VT_ERR_FORMAT with a
 * message naming the line on a lexical error. */
vt_err tpl_lex(const char *src, size_t len, tpl_arena *a, ttoken **toks, int *ntoks);

/* ---------------------------------------------------------------- syntax tree */

enum {
    /* statements */
    N_BLOCK, N_TEXT, N_IF, N_FOR, N_SET, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_BREAK, N_CONTINUE,
    N_COMMENT,
    /* expressions */
    N_STR, N_INT, N_FLOAT, N_LIST, N_TUPLE, N_DICT, N_NAME, N_CALL, N_MEMBER, N_SLICE, N_UNARY,
    N_BINARY, N_FILTER, N_TEST, N_SELECT, N_TERNARY, N_KWARG, N_SPREAD, N_KWSPREAD
};

enum {
    OP_ADD = 1, OP_SUB, OP_CAT, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_EQ, OP_NE, OP_LT,
    OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN, OP_AND, OP_OR, OP_NOT, OP_NEG, OP_POS
};

typedef struct tnode tnode;
typedef struct {
    tnode **v;
    int n;
} tnlist;

/*
 * N_TEXT/N_STR: s.  N_INT/N_FLOAT: num.  N_NAME: s.
 * N_IF: a test, l1 body, l2 else.  N_FOR: a target (N_NAME or N_TUPLE), b iterable,
 *   c select condition or NULL, l1 body, l2 else.  N_SET: a target, b value or NULL with l1 body.
 * N_MACRO: s name, l1 params (N_NAME or N_KWARG), l2 body, flag: uses varargs/kwargs.
 * N_CALLBLOCK: a the N_CALL, l1 caller params, l2 body.  N_FILTERBLOCK: a the N_FILTER
 *   (operand NULL), l1 body.
 * N_LIST/N_TUPLE: l1.  N_DICT: l1 keys, l2 values.  N_CALL: a callee, l1 args.
 * N_MEMBER: a object, b property, flag 1 if computed ([...]).  N_SLICE: a, b, c (any NULL).
 * N_UNARY: op, a.  N_BINARY: op, a, b.  N_FILTER: a operand, s name, l1 args, flag 1 if
 *   written with parentheses.  N_TEST: a operand, s name, l1 args, flag 1 if negated.
 * N_SELECT: a value, b condition.  N_TERNARY: a condition, b then, c else.
 * N_KWARG: s name, a value.  N_SPREAD/N_KWSPREAD: a.
 */
struct tnode {
    uint8_t kind, op, flag;
    int line;
    tstr *s;
    double num;
    tnode *a, *b, *c;
    tnlist l1, l2;
};

vt_err tpl_parse(const ttoken *toks, int ntoks, tpl_arena *a, tnode **root);

struct tpl_template {
    tpl_arena arena;
    tnode *root;
};

/* ---------------------------------------------------------------- evaluation */

/* template_eval.c */
int tpl_eval(trender *r, tenv *env, const tnode *n, tval *out);
int tpl_exec_block(trender *r, tenv *env, const tnlist *body, tstr *buf);
/* Evaluates call arguments: positional values into args (a new list) and
 * keyword arguments into *kw (a new dict, or NULL if there are none). */
int tpl_eval_args(trender *r, tenv *env, const tnlist *argn, tlist **args, tdict **kw);
int tpl_call(trender *r, tenv *env, tval fn, tlist *args, tdict *kw, tval *out, int line);

/* template_filters.c */
int tpl_filter(trender *r, tenv *env, const tnode *f, tval operand, tval *out);
int tpl_test(trender *r, tenv *env, const tnode *t, tval operand, bool *res);
int tpl_test_named(trender *r, int line, const char *name, tval a, const tval *args, int nargs,
                   bool *res);

/* template_methods.c */
int tpl_member(trender *r, tval obj, tval prop, tval *out, int line);
int tpl_call_builtin(trender *r, tfunc *f, tlist *args, tdict *kw, tval *out, int line);
int tpl_define_globals(trender *r, tenv *g);
/* Python-style slice of a list or string. */
int tpl_slice(trender *r, tval obj, tval start, tval stop, tval step, tval *out, int line);
/* Stable sort of n values by tpl_compare: of v itself, of element `index`
 * of each (a pair, index >= 0), or of a dotted attribute path (attr). */
int tpl_sort_values(trender *r, tval *v, size_t n, bool cs, bool rev, const char *attr,
                    size_t attr_len, int index, int line);
/* getAttributeValue: a dotted path through dicts (keys) and lists (indices);
 * borrowed, undefined if absent. */
tval tpl_attr_path(tval item, const char *path, size_t len);
/* Replace (count < 0: all) as the oracle does. */
int tpl_str_replace(trender *r, tstr *s, tstr *from, tstr *to, double count, tval *out);

#endif
