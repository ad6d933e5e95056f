/*
 * template_eval.c - the evaluator: runs a syntax tree against a scope chain
 * and appends the text it produces to a buffer, with the oracle's semantics.
 * Scopes: the global scope holds the context and the built-ins; a for loop
 * runs its body in one new scope (so `set` inside a loop is not seen after
 * it, but is seen by later iterations); a macro runs in a new scope whose
 * parent is the scope of the *call* (dynamic scoping, as the oracle does).
 * Loops precompute their items (applying an `if` filter first), expose
 * loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem,
 * and on break/continue drop what the interrupted iteration printed (the
 * oracle discards it too); the else branch runs when no iteration finished.
 * Operators follow JavaScript where the oracle does (== is loose equality,
 * + concatenates as soon as one side is a string, numbers are doubles that
 * remember whether they are integers). Every statement and expression counts
 * a step and a nesting level against the render's limits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

enum { EX_OK = 0, EX_BREAK = 1, EX_CONTINUE = 2 };

#define IMMORTAL(name, text)                                                                       \
    static tstr name = {.h = {.rc = 1, .kind = TO_STR, .immortal = 1},                             \
                        .len = sizeof(text) - 1,                                                   \
                        .cap = sizeof(text) - 1,                                                   \
                        .u16 = -1,                                                                 \
                        .p = (char *)(text)}

IMMORTAL(k_loop, "loop");
IMMORTAL(k_index, "index");
IMMORTAL(k_index0, "index0");
IMMORTAL(k_revindex, "revindex");
IMMORTAL(k_revindex0, "revindex0");
IMMORTAL(k_first, "first");
IMMORTAL(k_last, "last");
IMMORTAL(k_length, "length");
IMMORTAL(k_previtem, "previtem");
IMMORTAL(k_nextitem, "nextitem");
IMMORTAL(k_caller, "caller");
IMMORTAL(k_kwargs, "kwargs");
IMMORTAL(k_varargs, "varargs");

static const char *op_name(int op)
{
    static const char *const names[] = {"?", "+", "-", "~", "*", "/", "//", "%", "**", "==", "!=",
                                        "<", ">", "<=", ">=", "in", "not in", "and", "or", "not",
                                        "-", "+"};
    return op > 0 && op <= OP_POS ? names[op] : "?";
}

static int enter(trender *r, int line)
{
    if (++r->depth > r->max_depth)
        return tpl_fail(r, VT_ERR_RANGE, line, "nesting deeper than %d (recursion?)", r->max_depth);
    return tpl_check_steps(r, line);
}

/* ---------------------------------------------------------------- calls */

int tpl_eval_args(trender *r, tenv *env, const tnlist *argn, tlist **args, tdict **kw)
{
    *kw = NULL;
    if (!(*args = tpl_list_new(r, (size_t)argn->n)))
        return -1;
    for (int i = 0; i < argn->n; i++) {
        const tnode *a = argn->v[i];
        if (a->kind == N_KWARG || a->kind == N_KWSPREAD)
            continue;
        tval v;
        if (tpl_eval(r, env, a->kind == N_SPREAD ? a->a : a, &v))
            return -1;
        if (a->kind == N_SPREAD) {
            if (v.t != TV_LIST)
                return tpl_fail(r, VT_ERR_FORMAT, a->line, "Cannot unpack non-iterable type: %s",
                                tpl_type_name(v));
            for (size_t j = 0; j < v.u.l->n; j++) {
                tpl_incref(v.u.l->v[j]);
                if (tpl_list_push(r, *args, v.u.l->v[j]))
                    return -1;
            }
            tpl_decref(r, v);
        } else if (tpl_list_push(r, *args, v)) {
            return -1;
        }
    }
    for (int i = 0; i < argn->n; i++) {
        const tnode *a = argn->v[i];
        if (a->kind != N_KWARG && a->kind != N_KWSPREAD)
            continue;
        if (!*kw) {
            if (!(*kw = tpl_dict_new(r, false)))
                return -1;
            (*kw)->kwargs = true;
        }
        tval v;
        if (tpl_eval(r, env, a->a, &v))
            return -1;
        if (a->kind == N_KWARG) {
            if (tpl_dict_get(*kw, a->s->p, a->s->len))
                return tpl_fail(r, VT_ERR_FORMAT, a->line,
                                "Got multiple values for keyword argument '%s'", a->s->p);
            if (tpl_dict_set(r, *kw, a->s, v))
                return -1;
            continue;
        }
        if (v.t != TV_DICT)
            return tpl_fail(r, VT_ERR_FORMAT, a->line, "Argument after ** must be a mapping, not %s",
                            tpl_type_name(v));
        for (size_t j = 0; j < v.u.d->n; j++) {
            tstr *k = v.u.d->k[j];
            if (tpl_dict_get(*kw, k->p, k->len))
                return tpl_fail(r, VT_ERR_FORMAT, a->line,
                                "Got multiple values for keyword argument '%s'", k->p);
            tpl_incref(v.u.d->v[j]);
            if (tpl_dict_set(r, *kw, k, v.u.d->v[j]))
                return -1;
        }
        tpl_decref(r, v);
    }
    return 0;
}

/* Binds a macro's (or a call block's) parameters in scope. */
static int bind_params(trender *r, tenv *scope, const tnlist *params, int special,
                       const char *name, tlist *args, tdict *kw, int line)
{
    size_t nargs = args->n;
    if (!kw && nargs && args->v[nargs - 1].t == TV_DICT && args->v[nargs - 1].u.d->kwargs) {
        kw = args->v[nargs - 1].u.d; /* a kwargs dict passed on as the last argument */
        nargs--;
    }
    tdict *rest = tpl_dict_new(r, false);
    if (!rest)
        return -1;
    rest->kwargs = true;
    for (size_t i = 0; kw && i < kw->n; i++) {
        tpl_incref(kw->v[i]);
        if (tpl_dict_set(r, rest, kw->k[i], kw->v[i]))
            return -1;
    }
    for (int i = 0; i < params->n; i++) {
        const tnode *p = params->v[i];
        tval v = tv_undef();
        if ((size_t)i < nargs) {
            v = args->v[i];
            tpl_incref(v);
        } else {
            tval *k = tpl_dict_get(rest, p->s->p, p->s->len);
            if (k) {
                v = *k;
                tpl_incref(v);
                tpl_dict_del(r, rest, p->s->p, p->s->len);
            }
        }
        if (tpl_dict_set(r, scope->vars, p->s, v))
            return -1;
    }
    if (special & 1) {
        if (tpl_dict_set(r, scope->vars, &k_kwargs, tv_dict(rest)))
            return -1;
    } else {
        if (rest->n)
            return tpl_fail(r, VT_ERR_FORMAT, line, "macro %s takes no keyword argument '%s'", name,
                            rest->k[0]->p);
        tpl_obj_decref(r, &rest->h);
    }
    if (special & 2) {
        tlist *va = tpl_list_new(r, 0);
        if (!va)
            return -1;
        for (size_t i = (size_t)params->n; i < nargs; i++) {
            tpl_incref(args->v[i]);
            if (tpl_list_push(r, va, args->v[i]))
                return -1;
        }
        if (tpl_dict_set(r, scope->vars, &k_varargs, tv_list(va)))
            return -1;
    } else if (nargs > (size_t)params->n) {
        return tpl_fail(r, VT_ERR_FORMAT, line, "macro %s takes not more than %d argument(s)", name,
                        params->n);
    }
    /* defaults of parameters not passed are evaluated last, in the macro's scope */
    for (int i = 0; i < params->n; i++) {
        const tnode *p = params->v[i];
        if (p->kind != N_KWARG || (size_t)i < nargs || (kw && tpl_dict_get(kw, p->s->p, p->s->len)))
            continue;
        tval v;
        if (tpl_eval(r, scope, p->a, &v) || tpl_dict_set(r, scope->vars, p->s, v))
            return -1;
    }
    return 0;
}

static int run_body(trender *r, tenv *scope, const tnlist *body, tval *out, int line)
{
    tstr *buf = tpl_buf_new(r, 64);
    if (!buf)
        return -1;
    int rc = tpl_exec_block(r, scope, body, buf);
    if (rc < 0)
        return -1;
    if (rc)
        return tpl_fail(r, VT_ERR_FORMAT, line, "'break' or 'continue' outside of a loop");
    *out = tv_str(buf);
    return 0;
}

int tpl_call(trender *r, tenv *env, tval fn, tlist *args, tdict *kw, tval *out, int line)
{
    if (fn.t != TV_FUNC)
        return tpl_fail(r, VT_ERR_FORMAT, line,
                        "Cannot call something that is not a function: got %s", tpl_type_name(fn));
    tfunc *f = fn.u.f;
    if (f->kind == FN_GLOBAL || f->kind == FN_METHOD)
        return tpl_call_builtin(r, f, args, kw, out, line);
    if (enter(r, line))
        return -1;
    const tnode *n = f->node;
    tenv *scope = tpl_env_new(r, f->kind == FN_MACRO ? env : f->env);
    if (!scope)
        return -1;
    char name[80];
    if (f->kind == FN_MACRO)
        snprintf(name, sizeof name, "'%s'", n->s->p);
    else
        snprintf(name, sizeof name, "None");
    /* a macro and a call block both keep parameters in l1 and the body in l2 */
    if (bind_params(r, scope, &n->l1, n->flag, name, args, kw, line) ||
        run_body(r, scope, &n->l2, out, line))
        return -1;
    tpl_obj_decref(r, &scope->h);
    r->depth--;
    return 0;
}

/* ---------------------------------------------------------------- expressions */

static int eval_list(trender *r, tenv *env, const tnode *n, tval *out)
{
    tlist *l = tpl_list_new(r, (size_t)n->l1.n);
    if (!l)
        return -1;
    l->tuple = n->kind == N_TUPLE;
    *out = tv_list(l);
    for (int i = 0; i < n->l1.n; i++) {
        tval v;
        if (tpl_eval(r, env, n->l1.v[i], &v) || tpl_list_push(r, l, v))
            return -1;
    }
    return 0;
}

static int eval_dict(trender *r, tenv *env, const tnode *n, tval *out)
{
    tdict *d = tpl_dict_new(r, false);
    if (!d)
        return -1;
    *out = tv_dict(d);
    for (int i = 0; i < n->l1.n; i++) {
        tval k, v;
        if (tpl_eval(r, env, n->l1.v[i], &k))
            return -1;
        if (k.t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, n->line, "Object keys must be strings: got %s",
                            tpl_type_name(k));
        if (tpl_eval(r, env, n->l2.v[i], &v) || tpl_dict_set(r, d, k.u.s, v))
            return -1;
        tpl_decref(r, k);
    }
    return 0;
}

static int eval_member(trender *r, tenv *env, const tnode *n, tval *out)
{
    tval obj, prop;
    if (tpl_eval(r, env, n->a, &obj))
        return -1;
    const tnode *p = n->b;
    if (n->flag && p->kind == N_SLICE) {
        tval sl[3] = {tv_undef(), tv_undef(), tv_undef()};
        const tnode *parts[3] = {p->a, p->b, p->c};
        for (int i = 0; i < 3; i++)
            if (parts[i] && tpl_eval(r, env, parts[i], &sl[i]))
                return -1;
        if (tpl_slice(r, obj, sl[0], sl[1], sl[2], out, n->line))
            return -1;
        for (int i = 0; i < 3; i++)
            tpl_decref(r, sl[i]);
    } else {
        if (n->flag) {
            if (tpl_eval(r, env, p, &prop))
                return -1;
        } else {
            prop = p->kind == N_INT ? tv_int(p->num) : tv_str(p->s);
        }
        if (tpl_member(r, obj, prop, out, n->line))
            return -1;
        tpl_decref(r, prop);
    }
    tpl_decref(r, obj);
    return 0;
}

static int eval_unary(trender *r, tenv *env, const tnode *n, tval *out)
{
    tval v;
    if (tpl_eval(r, env, n->a, &v))
        return -1;
    if (n->op == OP_NOT) {
        *out = tv_bool(!tpl_truthy(v));
    } else if (v.t == TV_INT || v.t == TV_FLOAT || v.t == TV_BOOL) {
        double x = v.t == TV_BOOL ? (double)v.u.b : v.u.n;
        x = n->op == OP_NEG ? -x : x;
        *out = v.t == TV_FLOAT ? tv_float(x) : tv_int(x);
    } else {
        return tpl_fail(r, VT_ERR_FORMAT, n->line, "Unknown operator \"%s\" for %s",
                        op_name(n->op), tpl_type_name(v));
    }
    tpl_decref(r, v);
    return 0;
}

static int concat_raw(trender *r, tval a, tval b, tval *out, int line)
{
    tstr *s = tpl_buf_new(r, (a.t == TV_STR ? a.u.s->len : 16) + (b.t == TV_STR ? b.u.s->len : 16));
    if (!s || tpl_to_raw_string(r, a, s, line) || tpl_to_raw_string(r, b, s, line))
        return -1;
    *out = tv_str(s);
    return 0;
}

static int arith(trender *r, int op, tval a, tval b, tval *out)
{
    double x = a.u.n, y = b.u.n, z;
    bool fl = a.t == TV_FLOAT || b.t == TV_FLOAT;
    switch (op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV: *out = tv_float(x / y); return 1;
    case OP_FDIV: z = floor(x / y); break;
    case OP_MOD: z = fmod(x, y); break;
    case OP_LT: *out = tv_bool(x < y); return 1;
    case OP_GT: *out = tv_bool(x > y); return 1;
    case OP_LE: *out = tv_bool(x <= y); return 1;
    case OP_GE: *out = tv_bool(x >= y); return 1;
    default: return 0;
    }
    (void)r;
    *out = fl ? tv_float(z) : tv_int(z);
    return 1;
}

static bool in_list(tlist *l, tval x)
{
    for (size_t i = 0; i < l->n; i++)
        if (tpl_strict_eq(l->v[i], x))
            return true;
    return false;
}

static int eval_binary(trender *r, tenv *env, const tnode *n, tval *out)
{
    tval a, b;
    int op = n->op, line = n->line;
    if (tpl_eval(r, env, n->a, &a))
        return -1;
    if (op == OP_AND || op == OP_OR) {
        if (tpl_truthy(a) == (op == OP_OR)) {
            *out = a;
            return 0;
        }
        tpl_decref(r, a);
        return tpl_eval(r, env, n->b, out);
    }
    if (tpl_eval(r, env, n->b, &b))
        return -1;
    int done = 0;
    if (op == OP_EQ || op == OP_NE) {
        bool eq;
        if (tpl_loose_eq(r, a, b, &eq))
            return -1;
        *out = tv_bool(eq == (op == OP_EQ));
        done = 1;
    } else if (a.t == TV_UNDEF || b.t == TV_UNDEF) {
        if (b.t != TV_UNDEF || (op != OP_IN && op != OP_NOTIN))
            return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot perform operation %s on undefined values",
                            op_name(op));
        *out = tv_bool(op == OP_NOTIN);
        done = 1;
    } else if (a.t == TV_NONE || b.t == TV_NONE) {
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot perform operation %s on null values",
                        op_name(op));
    } else if (op == OP_CAT) {
        if (concat_raw(r, a, b, out, line))
            return -1;
        done = 1;
    } else if (op == OP_POW && (tv_is_num(a) || a.t == TV_BOOL) && (tv_is_num(b) || b.t == TV_BOOL)) {
        double x = a.t == TV_BOOL ? a.u.b : a.u.n, y = b.t == TV_BOOL ? b.u.b : b.u.n;
        if (x == 0 && y < 0)
            return tpl_fail(r, VT_ERR_FORMAT, line, "0.0 cannot be raised to a negative power");
        double z = (isnan(x) || isnan(y)) ? NAN : pow(x, y);
        if (!isfinite(z))
            return tpl_fail(r, VT_ERR_FORMAT, line,
                            "Exponentiation result is not a finite real number");
        *out = (a.t == TV_FLOAT || b.t == TV_FLOAT || y < 0) ? tv_float(z) : tv_int(z);
        done = 1;
    } else if (tv_is_num(a) && tv_is_num(b)) {
        done = arith(r, op, a, b, out);
    } else if (a.t == TV_LIST && b.t == TV_LIST) {
        if (op == OP_ADD) {
            tlist *l = tpl_list_new(r, a.u.l->n + b.u.l->n);
            if (!l)
                return -1;
            for (int k = 0; k < 2; k++) {
                tlist *src = k ? b.u.l : a.u.l;
                for (size_t i = 0; i < src->n; i++) {
                    tpl_incref(src->v[i]);
                    if (tpl_list_push(r, l, src->v[i]))
                        return -1;
                }
            }
            *out = tv_list(l);
            done = 1;
        }
    } else if (b.t == TV_LIST && (op == OP_IN || op == OP_NOTIN)) {
        *out = tv_bool(in_list(b.u.l, a) == (op == OP_IN));
        done = 1;
    }
    if (!done && (a.t == TV_STR || b.t == TV_STR) && op == OP_ADD) {
        if (concat_raw(r, a, b, out, line))
            return -1;
        done = 1;
    }
    if (!done && a.t == TV_STR && b.t == TV_STR && (op == OP_IN || op == OP_NOTIN)) {
        bool has = a.u.s->len == 0 || memmem(b.u.s->p, b.u.s->len, a.u.s->p, a.u.s->len);
        *out = tv_bool(has == (op == OP_IN));
        done = 1;
    }
    if (!done && a.t == TV_STR && b.t == TV_DICT && (op == OP_IN || op == OP_NOTIN)) {
        bool has = tpl_dict_get(b.u.d, a.u.s->p, a.u.s->len) != NULL;
        *out = tv_bool(has == (op == OP_IN));
        done = 1;
    }
    if (!done)
        return tpl_fail(r, VT_ERR_FORMAT, line, "Unknown operator \"%s\" between %s and %s",
                        op_name(op), tpl_type_name(a), tpl_type_name(b));
    tpl_decref(r, a);
    tpl_decref(r, b);
    return 0;
}

static int eval_call(trender *r, tenv *env, const tnode *n, tval *out)
{
    tlist *args;
    tdict *kw;
    tval fn;
    if (tpl_eval_args(r, env, &n->l1, &args, &kw) || tpl_eval(r, env, n->a, &fn) ||
        tpl_call(r, env, fn, args, kw, out, n->line))
        return -1;
    tpl_decref(r, fn);
    tpl_obj_decref(r, &args->h);
    if (kw)
        tpl_obj_decref(r, &kw->h);
    return 0;
}

int tpl_eval(trender *r, tenv *env, const tnode *n, tval *out)
{
    if (enter(r, n->line))
        return -1;
    int rc = 0;
    switch (n->kind) {
    case N_STR: *out = tv_str(n->s); break;
    case N_INT: *out = tv_int(n->num); break;
    case N_FLOAT: *out = tv_float(n->num); break;
    case N_LIST:
    case N_TUPLE: rc = eval_list(r, env, n, out); break;
    case N_DICT: rc = eval_dict(r, env, n, out); break;
    case N_NAME: {
        tval *v = tpl_env_lookup(env, n->s->p, n->s->len);
        *out = v ? *v : tv_undef();
        tpl_incref(*out);
        break;
    }
    case N_CALL: rc = eval_call(r, env, n, out); break;
    case N_MEMBER: rc = eval_member(r, env, n, out); break;
    case N_UNARY: rc = eval_unary(r, env, n, out); break;
    case N_BINARY: rc = eval_binary(r, env, n, out); break;
    case N_FILTER: {
        tval v;
        if ((rc = tpl_eval(r, env, n->a, &v)) == 0 && (rc = tpl_filter(r, env, n, v, out)) == 0)
            tpl_decref(r, v);
        break;
    }
    case N_TEST: {
        tval v;
        bool res;
        if ((rc = tpl_eval(r, env, n->a, &v)) == 0 && (rc = tpl_test(r, env, n, v, &res)) == 0) {
            tpl_decref(r, v);
            *out = tv_bool(res != (n->flag != 0));
        }
        break;
    }
    case N_SELECT: {
        tval c;
        if ((rc = tpl_eval(r, env, n->b, &c)))
            break;
        bool t = tpl_truthy(c);
        tpl_decref(r, c);
        if (t)
            rc = tpl_eval(r, env, n->a, out);
        else
            *out = tv_undef();
        break;
    }
    case N_TERNARY: {
        tval c;
        if ((rc = tpl_eval(r, env, n->a, &c)))
            break;
        bool t = tpl_truthy(c);
        tpl_decref(r, c);
        rc = tpl_eval(r, env, t ? n->b : n->c, out);
        break;
    }
    default:
        rc = tpl_fail(r, VT_ERR_FORMAT, n->line, "this expression cannot be evaluated here");
    }
    r->depth--;
    return rc;
}

/* ---------------------------------------------------------------- statements */

static int assign(trender *r, tenv *env, const tnode *target, tval v)
{
    if (target->kind == N_NAME)
        return tpl_dict_set(r, env->vars, target->s, v);
    if (target->kind == N_TUPLE) {
        if (v.t != TV_LIST)
            return tpl_fail(r, VT_ERR_FORMAT, target->line,
                            "Cannot unpack non-iterable type in set: %s", tpl_type_name(v));
        if (v.u.l->n != (size_t)target->l1.n)
            return tpl_fail(r, VT_ERR_FORMAT, target->line, "Too %s items to unpack in set",
                            (size_t)target->l1.n > v.u.l->n ? "few" : "many");
        for (int i = 0; i < target->l1.n; i++) {
            const tnode *t = target->l1.v[i];
            if (t->kind != N_NAME)
                return tpl_fail(r, VT_ERR_FORMAT, t->line, "Cannot unpack to non-identifier in set");
            tpl_incref(v.u.l->v[i]);
            if (tpl_dict_set(r, env->vars, t->s, v.u.l->v[i]))
                return -1;
        }
        tpl_decref(r, v);
        return 0;
    }
    if (target->kind == N_MEMBER) {
        tval obj;
        if (tpl_eval(r, env, target->a, &obj))
            return -1;
        if (obj.t != TV_NS)
            return tpl_fail(r, VT_ERR_FORMAT, target->line,
                            "cannot assign attribute on non-namespace object");
        if (target->b->kind != N_NAME)
            return tpl_fail(r, VT_ERR_FORMAT, target->line,
                            "Cannot assign to member with non-identifier property");
        if (tpl_dict_set(r, obj.u.d, target->b->s, v))
            return -1;
        tpl_decref(r, obj);
        return 0;
    }
    return tpl_fail(r, VT_ERR_FORMAT, target->line, "Invalid LHS inside assignment expression");
}

static int exec_set(trender *r, tenv *env, const tnode *n)
{
    tval v;
    if (n->b) {
        if (tpl_eval(r, env, n->b, &v))
            return -1;
    } else {
        tstr *buf = tpl_buf_new(r, 64);
        if (!buf)
            return -1;
        int rc = tpl_exec_block(r, env, &n->l1, buf);
        if (rc)
            return rc;
        v = tv_str(buf);
    }
    return assign(r, env, n->a, v);
}

static int bind_loop_var(trender *r, tenv *scope, const tnode *target, tval item)
{
    if (target->kind == N_NAME) {
        tpl_incref(item);
        return tpl_dict_set(r, scope->vars, target->s, item);
    }
    if (item.t != TV_LIST || item.u.l->tuple)
        return tpl_fail(r, VT_ERR_FORMAT, target->line, "Cannot unpack non-iterable type: %s",
                        tpl_type_name(item));
    if (item.u.l->n != (size_t)target->l1.n)
        return tpl_fail(r, VT_ERR_FORMAT, target->line, "Too %s items to unpack",
                        (size_t)target->l1.n > item.u.l->n ? "few" : "many");
    for (int i = 0; i < target->l1.n; i++) {
        tpl_incref(item.u.l->v[i]);
        if (tpl_dict_set(r, scope->vars, target->l1.v[i]->s, item.u.l->v[i]))
            return -1;
    }
    return 0;
}

static int set_num(trender *r, tdict *d, tstr *k, double x) { return tpl_dict_set(r, d, k, tv_int(x)); }

static int exec_for(trender *r, tenv *env, const tnode *n, tstr *buf)
{
    tenv *scope = tpl_env_new(r, env);
    tval it;
    if (!scope || tpl_eval(r, scope, n->b, &it))
        return -1;
    if (it.t != TV_LIST && it.t != TV_DICT)
        return tpl_fail(r, VT_ERR_FORMAT, n->line,
                        "Expected iterable or object type in for loop: got %s", tpl_type_name(it));
    tlist *src;
    if (it.t == TV_DICT) {
        if (!(src = tpl_list_new(r, it.u.d->n)))
            return -1;
        for (size_t i = 0; i < it.u.d->n; i++) {
            tpl_incref(tv_str(it.u.d->k[i]));
            if (tpl_list_push(r, src, tv_str(it.u.d->k[i])))
                return -1;
        }
        tpl_decref(r, it);
    } else {
        src = it.u.l;
    }
    tlist *items = src;
    if (n->c) { /* for x in xs if cond: filter first, each test in its own scope */
        if (!(items = tpl_list_new(r, src->n)))
            return -1;
        for (size_t i = 0; i < src->n; i++) {
            if (tpl_check_steps(r, n->line))
                return -1;
            tenv *ls = tpl_env_new(r, scope);
            tval c;
            if (!ls || bind_loop_var(r, ls, n->a, src->v[i]) || tpl_eval(r, ls, n->c, &c))
                return -1;
            bool keep = tpl_truthy(c);
            tpl_decref(r, c);
            tpl_obj_decref(r, &ls->h);
            if (keep) {
                tpl_incref(src->v[i]);
                if (tpl_list_push(r, items, src->v[i]))
                    return -1;
            }
        }
        tpl_obj_decref(r, &src->h);
    } else if (n->a->kind == N_TUPLE) { /* the oracle checks every item before the first */
        for (size_t i = 0; i < items->n; i++) {
            tval x = items->v[i];
            if (x.t != TV_LIST || x.u.l->tuple)
                return tpl_fail(r, VT_ERR_FORMAT, n->line, "Cannot unpack non-iterable type: %s",
                                tpl_type_name(x));
            if (x.u.l->n != (size_t)n->a->l1.n)
                return tpl_fail(r, VT_ERR_FORMAT, n->line, "Too %s items to unpack",
                                (size_t)n->a->l1.n > x.u.l->n ? "few" : "many");
        }
    }
    bool none = true;
    size_t len = items->n;
    for (size_t i = 0; i < len; i++) {
        if (tpl_check_steps(r, n->line))
            return -1;
        tdict *loop = tpl_dict_new(r, false);
        if (!loop || set_num(r, loop, &k_index, (double)i + 1) || set_num(r, loop, &k_index0, (double)i) ||
            set_num(r, loop, &k_revindex, (double)(len - i)) ||
            set_num(r, loop, &k_revindex0, (double)(len - i - 1)) ||
            tpl_dict_set(r, loop, &k_first, tv_bool(i == 0)) ||
            tpl_dict_set(r, loop, &k_last, tv_bool(i == len - 1)) ||
            set_num(r, loop, &k_length, (double)len))
            return -1;
        tval prev = i > 0 ? items->v[i - 1] : tv_undef();
        tval next = i + 1 < len ? items->v[i + 1] : tv_undef();
        tpl_incref(prev);
        tpl_incref(next);
        if (tpl_dict_set(r, loop, &k_previtem, prev) || tpl_dict_set(r, loop, &k_nextitem, next) ||
            tpl_dict_set(r, scope->vars, &k_loop, tv_dict(loop)) ||
            bind_loop_var(r, scope, n->a, items->v[i]))
            return -1;
        size_t mark = buf->len;
        int rc = tpl_exec_block(r, scope, &n->l1, buf);
        if (rc < 0)
            return -1;
        if (rc) { /* the interrupted iteration's text is dropped */
            buf->len = mark;
            buf->p[mark] = 0;
            if (rc == EX_BREAK)
                break;
            continue;
        }
        none = false;
    }
    if (none) {
        int rc = tpl_exec_block(r, scope, &n->l2, buf);
        if (rc)
            return rc;
    }
    tpl_obj_decref(r, &items->h);
    tpl_obj_decref(r, &scope->h);
    return 0;
}

static int exec_callblock(trender *r, tenv *env, const tnode *n, tval *out)
{
    tfunc *caller = tpl_func_new(r, FN_CALLER, 0);
    if (!caller)
        return -1;
    caller->node = n;
    caller->env = env;
    env->h.rc++;
    tlist *args;
    tdict *kw;
    tval fn;
    if (tpl_eval_args(r, env, &n->a->l1, &args, &kw))
        return -1;
    if (!kw) {
        if (!(kw = tpl_dict_new(r, false)))
            return -1;
        kw->kwargs = true;
    }
    if (tpl_eval(r, env, n->a->a, &fn))
        return -1;
    if (fn.t != TV_FUNC)
        return tpl_fail(r, VT_ERR_FORMAT, n->line,
                        "Cannot call something that is not a function: got %s", tpl_type_name(fn));
    tenv *ne = tpl_env_new(r, env);
    if (!ne || tpl_dict_set(r, ne->vars, &k_caller, tv_func(caller)) ||
        tpl_call(r, ne, fn, args, kw, out, n->line))
        return -1;
    tpl_obj_decref(r, &ne->h);
    tpl_decref(r, fn);
    tpl_obj_decref(r, &args->h);
    tpl_obj_decref(r, &kw->h);
    return 0;
}

static int emit(trender *r, tval v, tstr *buf, int line)
{
    int rc = 0;
    if (v.t != TV_NONE && v.t != TV_UNDEF)
        rc = tpl_to_string(r, v, buf, line);
    tpl_decref(r, v);
    return rc;
}

static int exec_stmt(trender *r, tenv *env, const tnode *n, tstr *buf)
{
    tval v;
    switch (n->kind) {
    case N_TEXT: return tpl_buf_put(r, buf, n->s->p, n->s->len);
    case N_COMMENT: return 0;
    case N_BREAK: return EX_BREAK;
    case N_CONTINUE: return EX_CONTINUE;
    case N_IF: {
        if (tpl_eval(r, env, n->a, &v))
            return -1;
        bool t = tpl_truthy(v);
        tpl_decref(r, v);
        return tpl_exec_block(r, env, t ? &n->l1 : &n->l2, buf);
    }
    case N_FOR: return exec_for(r, env, n, buf);
    case N_SET: return exec_set(r, env, n);
    case N_MACRO: {
        tfunc *f = tpl_func_new(r, FN_MACRO, 0);
        if (!f)
            return -1;
        f->node = n;
        return tpl_dict_set(r, env->vars, n->s, tv_func(f));
    }
    case N_CALLBLOCK:
        if (exec_callblock(r, env, n, &v))
            return -1;
        return emit(r, v, buf, n->line);
    case N_FILTERBLOCK: {
        tstr *body = tpl_buf_new(r, 64);
        if (!body)
            return -1;
        int rc = tpl_exec_block(r, env, &n->l1, body);
        if (rc)
            return rc;
        if (tpl_filter(r, env, n->a, tv_str(body), &v))
            return -1;
        tpl_obj_decref(r, &body->h);
        return emit(r, v, buf, n->line);
    }
    default:
        if (tpl_eval(r, env, n, &v))
            return -1;
        return emit(r, v, buf, n->line);
    }
}

int tpl_exec_block(trender *r, tenv *env, const tnlist *body, tstr *buf)
{
    if (++r->depth > r->max_depth)
        return tpl_fail(r, VT_ERR_RANGE, body->n ? body->v[0]->line : 0,
                        "nesting deeper than %d (recursion?)", r->max_depth);
    for (int i = 0; i < body->n; i++) {
        if (tpl_check_steps(r, body->v[i]->line))
            return -1;
        int rc = exec_stmt(r, env, body->v[i], buf);
        if (rc) {
            if (rc > 0)
                r->depth--;
            return rc;
        }
    }
    r->depth--;
    return 0;
}
