/*
 * template_parse.c - tokens to a syntax tree, by recursive descent with the
 * oracle's grammar and precedence (lowest first): `x if c else y` (without
 * `else`, a select that is undefined when c is false, also the filter of a
 * for loop), `or`, `and`, `not`, comparisons and `in`/`not in` (one level,
 * left to right), `+ - ~`, `* / // %`, `**`, tests (`is [not] name[(args)]`),
 * filters (`| name[(args)]`), unary `-`/`+`, then calls, attribute/index
 * access and slices on a primary (literal, name, parenthesised expression or
 * tuple, list, dict). Statements: if/elif/else, for (tuple targets, `if`
 * filter, else), set (=, tuples, attributes, block form), macro, call blocks
 * (with caller arguments), filter blocks, break, continue. Anything else
 * (include, extends, block, raw, with, ...) is an error naming the statement.
 * Nesting is limited so that a hostile template cannot exhaust the stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

#define MAX_PARSE_DEPTH 200

typedef struct {
    const ttoken *t;
    int n, cur;
    tpl_arena *a;
    int depth;
    vt_err err;
} parser;

static const char *tk_name(int type)
{
    switch (type) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "text";
    case TK_NUM: return "number";
    case TK_STR: return "string";
    case TK_IDENT: return "name";
    case TK_EQUALS: return "'='";
    case TK_LPAREN: return "'('";
    case TK_RPAREN: return "')'";
    case TK_OPEN_STMT: return "'{%'";
    case TK_CLOSE_STMT: return "'%}'";
    case TK_OPEN_EXPR: return "'{{'";
    case TK_CLOSE_EXPR: return "'}}'";
    case TK_LBRACKET: return "'['";
    case TK_RBRACKET: return "']'";
    case TK_LBRACE: return "'{'";
    case TK_RBRACE: return "'}'";
    case TK_COMMA: return "','";
    case TK_DOT: return "'.'";
    case TK_COLON: return "':'";
    case TK_PIPE: return "'|'";
    case TK_COMMENT: return "comment";
    default: return "operator";
    }
}

static void *perr(parser *P, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *perr(parser *P, int line, const char *fmt, ...)
{
    if (P->err)
        return NULL;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->err = vt_fail(VT_ERR_FORMAT, "template line %d: %s", line, msg);
    return NULL;
}

static void *nomem(parser *P)
{
    if (!P->err)
        P->err = vt_fail(VT_ERR_NOMEM, "template: out of memory");
    return NULL;
}

static const ttoken *tok(const parser *P, int k)
{
    int i = P->cur + k;
    return i < P->n ? &P->t[i] : &P->t[P->n - 1]; /* the last token is TK_EOF */
}

static bool is(const parser *P, int type) { return tok(P, 0)->type == type; }

static bool tok_is(const ttoken *t, const char *s)
{
    size_t n = strlen(s);
    return t->len == n && !memcmp(t->p, s, n);
}

static bool is_ident(const parser *P, int k, const char *name)
{
    const ttoken *t = tok(P, k);
    return t->type == TK_IDENT && tok_is(t, name);
}

/* {% name ... where name is one of the NULL-terminated list */
static bool is_stmt(const parser *P, const char *const *names)
{
    if (!is(P, TK_OPEN_STMT) || tok(P, 1)->type != TK_IDENT)
        return false;
    for (; *names; names++)
        if (tok_is(tok(P, 1), *names))
            return true;
    return false;
}

static const char *desc(const ttoken *t, char *buf, size_t n)
{
    if (t->type == TK_IDENT || (t->type >= TK_ADD && t->type <= TK_UNARY) || t->type == TK_NUM)
        snprintf(buf, n, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->p);
    else
        snprintf(buf, n, "%s", tk_name(t->type));
    return buf;
}

static const ttoken *expect(parser *P, int type, const char *what)
{
    const ttoken *t = tok(P, 0);
    if (t->type != type) {
        char b[64];
        return perr(P, t->line, "expected %s %s, found %s", tk_name(type), what,
                    desc(t, b, sizeof b));
    }
    P->cur++;
    return t;
}

static bool expect_ident(parser *P, const char *name)
{
    if (!is_ident(P, 0, name)) {
        char b[64];
        perr(P, tok(P, 0)->line, "expected '%s', found %s", name, desc(tok(P, 0), b, sizeof b));
        return false;
    }
    P->cur++;
    return true;
}

static tnode *mk(parser *P, int kind, int line)
{
    tnode *n = tpl_arena_alloc(P->a, sizeof *n);
    if (!n)
        return nomem(P);
    n->kind = (uint8_t)kind;
    n->line = line;
    return n;
}

static tstr *mkstr(parser *P, const char *p, size_t len)
{
    tstr *s = tpl_str_immortal(P->a, p, len);
    if (!s)
        nomem(P);
    return s;
}

static bool push_node(parser *P, tnlist *l, tnode *x)
{
    if (!x)
        return false;
    /* capacity is the next power of two >= n */
    if ((l->n & (l->n - 1)) == 0) {
        int cap = l->n ? l->n * 2 : 2;
        tnode **nv = tpl_arena_alloc(P->a, (size_t)cap * sizeof *nv);
        if (!nv)
            return nomem(P), false;
        if (l->n)
            memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        l->v = nv;
    }
    l->v[l->n++] = x;
    return true;
}

static bool enter(parser *P)
{
    if (++P->depth > MAX_PARSE_DEPTH) {
        perr(P, tok(P, 0)->line, "template nested more than %d levels deep", MAX_PARSE_DEPTH);
        return false;
    }
    return true;
}

static tnode *parse_expr(parser *P);
static tnode *parse_primary(parser *P);
static tnode *parse_any(parser *P);

/* ---------------------------------------------------------------- expressions */

enum { ARGS_CALL, ARGS_PARAMS };

static bool parse_args(parser *P, tnlist *out, int mode)
{
    if (!expect(P, TK_LPAREN, "to open the argument list"))
        return false;
    bool saw_kw = false, saw_spread = false;
    while (!is(P, TK_RPAREN)) {
        const ttoken *t = tok(P, 0);
        if (t->type == TK_EOF)
            return perr(P, t->line, "unexpected end of template in an argument list"), false;
        bool kwspread = t->type == TK_POW, spread = t->type == TK_MUL && tok_is(t, "*");
        if (mode == ARGS_PARAMS && (kwspread || spread))
            return perr(P, t->line, "argument unpacking is not allowed in parameters"), false;
        if (kwspread) {
            P->cur++;
            tnode *x = mk(P, N_KWSPREAD, t->line);
            if (!x || !(x->a = parse_expr(P)) || !push_node(P, out, x))
                return false;
            if (is(P, TK_COMMA))
                P->cur++;
            if (!is(P, TK_RPAREN))
                return perr(P, t->line, "'**' must be applied to the final argument"), false;
            break;
        }
        tnode *arg;
        if (spread) {
            if (saw_spread)
                return perr(P, t->line, "only one '*' argument unpacking is allowed"), false;
            saw_spread = true;
            P->cur++;
            if (!(arg = mk(P, N_SPREAD, t->line)) || !(arg->a = parse_expr(P)))
                return false;
        } else {
            if (!(arg = parse_expr(P)))
                return false;
            if (is(P, TK_EQUALS)) {
                P->cur++;
                if (arg->kind != N_NAME)
                    return perr(P, t->line, "expected a name before '='"), false;
                tnode *kw = mk(P, N_KWARG, t->line);
                if (!kw || !(kw->a = parse_expr(P)))
                    return false;
                kw->s = arg->s;
                arg = kw;
            }
            if (mode == ARGS_PARAMS) {
                if (arg->kind != N_NAME && arg->kind != N_KWARG)
                    return perr(P, t->line, "expected a parameter name"), false;
                for (int i = 0; i < out->n; i++)
                    if (out->v[i]->s->len == arg->s->len &&
                        !memcmp(out->v[i]->s->p, arg->s->p, arg->s->len))
                        return perr(P, t->line, "duplicate parameter '%s'", arg->s->p), false;
            }
            if (arg->kind == N_KWARG)
                saw_kw = true;
            else if (saw_kw)
                return perr(P, t->line,
                            mode == ARGS_CALL ? "positional argument after a keyword argument"
                                              : "parameter without default after one with"),
                       false;
            else if (saw_spread)
                return perr(P, t->line, "positional argument after '*' unpacking"), false;
        }
        if (!push_node(P, out, arg))
            return false;
        if (is(P, TK_COMMA))
            P->cur++;
    }
    P->cur++;
    return true;
}

static tnode *parse_member_args(parser *P, int line)
{
    tnode *sl[3] = {0};
    int n = 0;
    bool slice = false;
    while (!is(P, TK_RBRACKET)) {
        if (is(P, TK_EOF))
            return perr(P, line, "unexpected end of template in '[...]'");
        if (n == 3)
            return perr(P, line, "a slice takes at most 3 parts");
        if (is(P, TK_COLON)) {
            sl[n++] = NULL;
            P->cur++;
            slice = true;
        } else {
            if (!(sl[n++] = parse_expr(P)))
                return NULL;
            if (is(P, TK_COLON)) {
                P->cur++;
                slice = true;
            }
        }
    }
    if (n == 0)
        return perr(P, line, "expected an index in '[]'");
    if (!slice)
        return sl[0];
    tnode *s = mk(P, N_SLICE, line);
    if (s) {
        s->a = sl[0];
        s->b = sl[1];
        s->c = sl[2];
    }
    return s;
}

static tnode *parse_member(parser *P, tnode *obj)
{
    while (obj && (is(P, TK_DOT) || is(P, TK_LBRACKET))) {
        const ttoken *op = tok(P, 0);
        P->cur++;
        tnode *m = mk(P, N_MEMBER, op->line);
        if (!m)
            return NULL;
        m->a = obj;
        if (op->type == TK_LBRACKET) {
            m->flag = 1;
            if (!(m->b = parse_member_args(P, op->line)) ||
                !expect(P, TK_RBRACKET, "to close '['"))
                return NULL;
        } else {
            if (!(m->b = parse_primary(P)))
                return NULL;
            if (m->b->kind != N_NAME && m->b->kind != N_INT)
                return perr(P, op->line, "expected a name or an integer after '.'");
        }
        obj = m;
    }
    return obj;
}

static tnode *parse_call(parser *P, tnode *callee)
{
    while (callee && is(P, TK_LPAREN)) {
        tnode *c = mk(P, N_CALL, tok(P, 0)->line);
        if (!c)
            return NULL;
        c->a = callee;
        if (!parse_args(P, &c->l1, ARGS_CALL))
            return NULL;
        callee = parse_member(P, c);
    }
    return callee;
}

static tnode *parse_seq(parser *P, bool primary)
{
    int line = tok(P, 0)->line;
    tnode *first = primary ? parse_primary(P) : parse_expr(P);
    if (!first || !is(P, TK_COMMA))
        return first;
    tnode *t = mk(P, N_TUPLE, line);
    if (!t || !push_node(P, &t->l1, first))
        return NULL;
    while (is(P, TK_COMMA)) {
        P->cur++;
        if (!push_node(P, &t->l1, primary ? parse_primary(P) : parse_expr(P)))
            return NULL;
    }
    return t;
}

static tnode *parse_primary(parser *P)
{
    const ttoken *t = tok(P, 0);
    P->cur++;
    tnode *n;
    switch (t->type) {
    case TK_NUM: {
        bool fl = memchr(t->p, '.', t->len) != NULL;
        if (!(n = mk(P, fl ? N_FLOAT : N_INT, t->line)))
            return NULL;
        char buf[64];
        size_t k = t->len < sizeof buf - 1 ? t->len : sizeof buf - 1;
        memcpy(buf, t->p, k);
        buf[k] = 0;
        n->num = strtod(buf, NULL);
        return n;
    }
    case TK_STR: {
        size_t len = t->len;
        int j = P->cur;
        while (j < P->n && P->t[j].type == TK_STR)
            len += P->t[j++].len;
        if (!(n = mk(P, N_STR, t->line)))
            return NULL;
        if (j == P->cur) {
            n->s = mkstr(P, t->p, t->len);
        } else { /* adjacent literals concatenate */
            char *buf = tpl_arena_alloc(P->a, len + 1);
            if (!buf)
                return nomem(P);
            size_t o = 0;
            for (int i = P->cur - 1; i < j; i++) {
                memcpy(buf + o, P->t[i].p, P->t[i].len);
                o += P->t[i].len;
            }
            n->s = mkstr(P, buf, len);
            P->cur = j;
        }
        return n->s ? n : NULL;
    }
    case TK_IDENT:
        if (!(n = mk(P, N_NAME, t->line)) || !(n->s = mkstr(P, t->p, t->len)))
            return NULL;
        return n;
    case TK_LPAREN:
        if (!(n = parse_seq(P, false)) || !expect(P, TK_RPAREN, "to close '('"))
            return NULL;
        return n;
    case TK_LBRACKET:
        if (!(n = mk(P, N_LIST, t->line)))
            return NULL;
        while (!is(P, TK_RBRACKET)) {
            if (is(P, TK_EOF))
                return perr(P, t->line, "unexpected end of template in a list");
            if (!push_node(P, &n->l1, parse_expr(P)))
                return NULL;
            if (is(P, TK_COMMA))
                P->cur++;
        }
        P->cur++;
        return n;
    case TK_LBRACE:
        if (!(n = mk(P, N_DICT, t->line)))
            return NULL;
        while (!is(P, TK_RBRACE)) {
            if (is(P, TK_EOF))
                return perr(P, t->line, "unexpected end of template in a dict");
            if (!push_node(P, &n->l1, parse_expr(P)) ||
                !expect(P, TK_COLON, "between a key and its value") ||
                !push_node(P, &n->l2, parse_expr(P)))
                return NULL;
            if (is(P, TK_COMMA))
                P->cur++;
        }
        P->cur++;
        return n;
    default: {
        char b[64];
        return perr(P, t->line, "unexpected %s in an expression", desc(t, b, sizeof b));
    }
    }
}

static tnode *parse_unary_sign(parser *P)
{
    const ttoken *t = tok(P, 0);
    if ((t->type == TK_UNARY || t->type == TK_ADD) && (tok_is(t, "-") || tok_is(t, "+"))) {
        if (!enter(P))
            return NULL;
        P->cur++;
        tnode *u = mk(P, N_UNARY, t->line);
        if (!u || !(u->a = parse_unary_sign(P)))
            return NULL;
        u->op = tok_is(t, "-") ? OP_NEG : OP_POS;
        P->depth--;
        return u;
    }
    return parse_call(P, parse_member(P, parse_primary(P)));
}

static tnode *parse_filter(parser *P)
{
    tnode *x = parse_unary_sign(P);
    while (x && is(P, TK_PIPE)) {
        int line = tok(P, 0)->line;
        P->cur++;
        tnode *name = parse_primary(P);
        if (!name)
            return NULL;
        if (name->kind != N_NAME)
            return perr(P, line, "expected a filter name after '|'");
        tnode *f = mk(P, N_FILTER, line);
        if (!f)
            return NULL;
        f->a = x;
        f->s = name->s;
        if (is(P, TK_LPAREN)) {
            f->flag = 1;
            if (!parse_args(P, &f->l1, ARGS_CALL))
                return NULL;
            if (is(P, TK_DOT) || is(P, TK_LBRACKET) || is(P, TK_LPAREN))
                return perr(P, line, "attribute access or call on the result of filter '%s' "
                                     "needs parentheses around it", f->s->p);
        }
        x = f;
    }
    return x;
}

static tnode *parse_test(parser *P)
{
    tnode *x = parse_filter(P);
    while (x && is_ident(P, 0, "is")) {
        int line = tok(P, 0)->line;
        P->cur++;
        bool neg = is_ident(P, 0, "not");
        if (neg)
            P->cur++;
        tnode *name = parse_primary(P);
        if (!name)
            return NULL;
        if (name->kind != N_NAME)
            return perr(P, line, "expected a test name after 'is'");
        tnode *t = mk(P, N_TEST, line);
        if (!t)
            return NULL;
        t->a = x;
        t->s = name->s;
        t->flag = neg;
        if (is(P, TK_LPAREN) && !parse_args(P, &t->l1, ARGS_CALL))
            return NULL;
        x = t;
    }
    return x;
}

static tnode *binary(parser *P, int op, int line, tnode *a, tnode *b)
{
    if (!a || !b)
        return NULL;
    tnode *n = mk(P, N_BINARY, line);
    if (n) {
        n->op = (uint8_t)op;
        n->a = a;
        n->b = b;
    }
    return n;
}

static tnode *parse_pow(parser *P)
{
    tnode *x = parse_test(P);
    while (x && is(P, TK_POW)) {
        int line = tok(P, 0)->line;
        P->cur++;
        x = binary(P, OP_POW, line, x, parse_test(P));
    }
    return x;
}

static tnode *parse_mul(parser *P)
{
    tnode *x = parse_pow(P);
    while (x && is(P, TK_MUL)) {
        const ttoken *t = tok(P, 0);
        P->cur++;
        int op = tok_is(t, "*") ? OP_MUL : tok_is(t, "/") ? OP_DIV : tok_is(t, "//") ? OP_FDIV
                                                                                      : OP_MOD;
        x = binary(P, op, t->line, x, parse_pow(P));
    }
    return x;
}

static tnode *parse_add(parser *P)
{
    tnode *x = parse_mul(P);
    while (x && is(P, TK_ADD)) {
        const ttoken *t = tok(P, 0);
        P->cur++;
        int op = tok_is(t, "+") ? OP_ADD : tok_is(t, "-") ? OP_SUB : OP_CAT;
        x = binary(P, op, t->line, x, parse_mul(P));
    }
    return x;
}

static tnode *parse_cmp(parser *P)
{
    tnode *x = parse_add(P);
    while (x) {
        const ttoken *t = tok(P, 0);
        int op;
        if (is_ident(P, 0, "not") && is_ident(P, 1, "in")) {
            op = OP_NOTIN;
            P->cur += 2;
        } else if (is_ident(P, 0, "in")) {
            op = OP_IN;
            P->cur++;
        } else if (t->type == TK_CMP) {
            op = tok_is(t, "==") ? OP_EQ : tok_is(t, "!=") ? OP_NE : tok_is(t, "<") ? OP_LT
                 : tok_is(t, ">") ? OP_GT : tok_is(t, "<=") ? OP_LE : OP_GE;
            P->cur++;
        } else {
            break;
        }
        x = binary(P, op, t->line, x, parse_add(P));
    }
    return x;
}

static tnode *parse_not(parser *P)
{
    if (!is_ident(P, 0, "not"))
        return parse_cmp(P);
    if (!enter(P))
        return NULL;
    tnode *u = mk(P, N_UNARY, tok(P, 0)->line);
    P->cur++;
    if (!u || !(u->a = parse_not(P)))
        return NULL;
    u->op = OP_NOT;
    P->depth--;
    return u;
}

static tnode *parse_and(parser *P)
{
    tnode *x = parse_not(P);
    while (x && is_ident(P, 0, "and")) {
        int line = tok(P, 0)->line;
        P->cur++;
        x = binary(P, OP_AND, line, x, parse_not(P));
    }
    return x;
}

static tnode *parse_or(parser *P)
{
    tnode *x = parse_and(P);
    while (x && is_ident(P, 0, "or")) {
        int line = tok(P, 0)->line;
        P->cur++;
        x = binary(P, OP_OR, line, x, parse_and(P));
    }
    return x;
}

static tnode *parse_expr(parser *P)
{
    if (!enter(P))
        return NULL;
    tnode *a = parse_or(P);
    if (a && is_ident(P, 0, "if")) {
        int line = tok(P, 0)->line;
        P->cur++;
        tnode *test = parse_or(P);
        if (!test)
            return NULL;
        tnode *n;
        if (is_ident(P, 0, "else")) {
            P->cur++;
            if (!(n = mk(P, N_TERNARY, line)) || !(n->c = parse_expr(P)))
                return NULL;
            n->a = test;
            n->b = a;
        } else {
            if (!(n = mk(P, N_SELECT, line)))
                return NULL;
            n->a = a;
            n->b = test;
        }
        a = n;
    }
    P->depth--;
    return a;
}

/* ---------------------------------------------------------------- statements */

/* Parses statements until {% one-of-names %}; the opener is named in errors. */
static bool parse_body(parser *P, tnlist *body, const char *const *names, const char *opener,
                       int line)
{
    while (!is_stmt(P, names)) {
        if (is(P, TK_EOF))
            return perr(P, line, "missing {%% %s %%} for the '%s' on line %d", names[0], opener,
                        line),
                   false;
        tnode *s = parse_any(P);
        if (!s)
            return false;
        if (s->kind != N_COMMENT && !push_node(P, body, s))
            return false;
    }
    return true;
}

static bool end_tag(parser *P, const char *name)
{
    return expect(P, TK_OPEN_STMT, "") && expect_ident(P, name) &&
           expect(P, TK_CLOSE_STMT, "to close the tag");
}

static tnode *parse_if(parser *P, int line)
{
    static const char *const stop[] = {"endif", "elif", "else", NULL}, *const endif[] = {"endif", NULL};
    tnode *n = mk(P, N_IF, line);
    if (!n || !(n->a = parse_expr(P)) || !expect(P, TK_CLOSE_STMT, "after the 'if' condition") ||
        !parse_body(P, &n->l1, stop, "if", line))
        return NULL;
    if (is_stmt(P, (const char *const[]){"elif", NULL})) {
        int l2 = tok(P, 1)->line;
        P->cur += 2;
        if (!enter(P) || !push_node(P, &n->l2, parse_if(P, l2)))
            return NULL;
        P->depth--;
    } else if (is_stmt(P, (const char *const[]){"else", NULL})) {
        P->cur += 2;
        if (!expect(P, TK_CLOSE_STMT, "after 'else'") || !parse_body(P, &n->l2, endif, "if", line))
            return NULL;
    }
    return n;
}

/* Does any identifier kwargs/varargs appear in tokens [from, to)? */
static int special_args(const parser *P, int from, int to)
{
    int f = 0;
    for (int i = from; i < to; i++)
        if (P->t[i].type == TK_IDENT)
            f |= tok_is(&P->t[i], "kwargs") ? 1 : tok_is(&P->t[i], "varargs") ? 2 : 0;
    return f;
}

static tnode *parse_stmt(parser *P)
{
    int line = tok(P, 0)->line;
    P->cur++; /* {% */
    const ttoken *kw = tok(P, 0);
    if (kw->type != TK_IDENT) {
        char b[64];
        return perr(P, kw->line, "expected a statement name after '{%%', found %s",
                    desc(kw, b, sizeof b));
    }
    line = kw->line;
    P->cur++;
    tnode *n;
    if (tok_is(kw, "set")) {
        if (!(n = mk(P, N_SET, line)) || !(n->a = parse_seq(P, false)))
            return NULL;
        if (is(P, TK_EQUALS)) {
            P->cur++;
            if (!(n->b = parse_seq(P, false)))
                return NULL;
        } else {
            static const char *const endset[] = {"endset", NULL};
            if (!expect(P, TK_CLOSE_STMT, "after 'set' target") ||
                !parse_body(P, &n->l1, endset, "set", line) || !expect(P, TK_OPEN_STMT, "") ||
                !expect_ident(P, "endset"))
                return NULL;
        }
        if (!expect(P, TK_CLOSE_STMT, "to close 'set'"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "if")) {
        if (!(n = parse_if(P, line)) || !end_tag(P, "endif"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "for")) {
        static const char *const stop[] = {"endfor", "else", NULL}, *const endfor[] = {"endfor", NULL};
        if (!(n = mk(P, N_FOR, line)) || !(n->a = parse_seq(P, true)))
            return NULL;
        if (n->a->kind != N_NAME && n->a->kind != N_TUPLE)
            return perr(P, line, "expected a name or names after 'for'");
        for (int i = 0; n->a->kind == N_TUPLE && i < n->a->l1.n; i++)
            if (n->a->l1.v[i]->kind != N_NAME)
                return perr(P, line, "expected names to unpack after 'for'");
        if (!expect_ident(P, "in") || !(n->b = parse_expr(P)) ||
            !expect(P, TK_CLOSE_STMT, "after the 'for' iterable"))
            return NULL;
        if (n->b->kind == N_SELECT) {
            n->c = n->b->b;
            n->b = n->b->a;
        }
        if (!parse_body(P, &n->l1, stop, "for", line))
            return NULL;
        if (is_stmt(P, (const char *const[]){"else", NULL})) {
            P->cur += 2;
            if (!expect(P, TK_CLOSE_STMT, "after 'else'") ||
                !parse_body(P, &n->l2, endfor, "for", line))
                return NULL;
        }
        if (!end_tag(P, "endfor"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "macro")) {
        static const char *const endm[] = {"endmacro", NULL};
        tnode *name;
        if (!(n = mk(P, N_MACRO, line)) || !(name = parse_primary(P)))
            return NULL;
        if (name->kind != N_NAME)
            return perr(P, line, "expected a name after 'macro'");
        n->s = name->s;
        int from = P->cur;
        if (!parse_args(P, &n->l1, ARGS_PARAMS) || !expect(P, TK_CLOSE_STMT, "after the macro") ||
            !parse_body(P, &n->l2, endm, "macro", line))
            return NULL;
        n->flag = (uint8_t)special_args(P, from, P->cur);
        if (!end_tag(P, "endmacro"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "call")) {
        static const char *const endc[] = {"endcall", NULL};
        if (!(n = mk(P, N_CALLBLOCK, line)))
            return NULL;
        int from = P->cur;
        if (is(P, TK_LPAREN) && !parse_args(P, &n->l1, ARGS_PARAMS))
            return NULL;
        tnode *callee = parse_primary(P);
        if (!callee)
            return NULL;
        if (callee->kind != N_NAME)
            return perr(P, line, "expected a macro name after 'call'");
        if (!(n->a = mk(P, N_CALL, line)))
            return NULL;
        n->a->a = callee;
        if (!parse_args(P, &n->a->l1, ARGS_CALL) || !expect(P, TK_CLOSE_STMT, "after 'call'") ||
            !parse_body(P, &n->l2, endc, "call", line))
            return NULL;
        n->flag = (uint8_t)special_args(P, from, P->cur);
        if (!end_tag(P, "endcall"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "filter")) {
        static const char *const endf[] = {"endfilter", NULL};
        tnode *name;
        if (!(n = mk(P, N_FILTERBLOCK, line)) || !(n->a = mk(P, N_FILTER, line)) ||
            !(name = parse_primary(P)))
            return NULL;
        if (name->kind != N_NAME)
            return perr(P, line, "expected a filter name after 'filter'");
        n->a->s = name->s;
        if (is(P, TK_LPAREN)) {
            n->a->flag = 1;
            if (!parse_args(P, &n->a->l1, ARGS_CALL))
                return NULL;
        }
        if (!expect(P, TK_CLOSE_STMT, "after 'filter'") ||
            !parse_body(P, &n->l1, endf, "filter", line) || !end_tag(P, "endfilter"))
            return NULL;
        return n;
    }
    if (tok_is(kw, "break") || tok_is(kw, "continue")) {
        if (!(n = mk(P, tok_is(kw, "break") ? N_BREAK : N_CONTINUE, line)) ||
            !expect(P, TK_CLOSE_STMT, "after break/continue"))
            return NULL;
        return n;
    }
    static const char *const known_end[] = {"endif", "endfor", "endset", "endmacro", "endcall",
                                            "endfilter", "elif", "else", NULL};
    for (const char *const *e = known_end; *e; e++)
        if (tok_is(kw, *e))
            return perr(P, line, "unexpected {%% %s %%} without an opening statement", *e);
    return perr(P, line, "unsupported statement '{%% %.*s %%}'", (int)(kw->len > 40 ? 40 : kw->len),
                kw->p);
}

static tnode *parse_any(parser *P)
{
    const ttoken *t = tok(P, 0);
    tnode *n;
    switch (t->type) {
    case TK_COMMENT:
        P->cur++;
        return mk(P, N_COMMENT, t->line);
    case TK_TEXT:
        P->cur++;
        if (!(n = mk(P, N_TEXT, t->line)) || !(n->s = mkstr(P, t->p, t->len)))
            return NULL;
        return n;
    case TK_OPEN_STMT:
        if (!enter(P))
            return NULL;
        n = parse_stmt(P);
        P->depth--;
        return n;
    case TK_OPEN_EXPR:
        P->cur++;
        if (!(n = parse_expr(P)) || !expect(P, TK_CLOSE_EXPR, "to close the expression"))
            return NULL;
        return n;
    default: {
        char b[64];
        return perr(P, t->line, "unexpected %s outside of a tag", desc(t, b, sizeof b));
    }
    }
}

vt_err tpl_parse(const ttoken *toks, int ntoks, tpl_arena *a, tnode **root)
{
    parser P = {.t = toks, .n = ntoks, .a = a};
    tnode *r = mk(&P, N_BLOCK, 1);
    while (r && !is(&P, TK_EOF)) {
        tnode *s = parse_any(&P);
        if (!s || (s->kind != N_COMMENT && !push_node(&P, &r->l1, s)))
            break;
    }
    if (P.err) {
        *root = NULL;
        return P.err;
    }
    *root = r;
    return VT_OK;
}
