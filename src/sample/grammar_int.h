/*
 * grammar_int.h - the grammar engine's private structures, shared by
 * grammar_parse.c (GBNF text -> gr_ir, the flat rule table) and grammar.c
 * (the matcher: stacks, byte advance, token masks).
 *
 * A grammar is a table of elements. Every alternative of every rule is a run
 * of elements ended by GR_END; a "position" is an index into that table.
 * GR_CLASS matches one Unicode code point from a set of ranges (literal
 * characters are one-range classes); GR_REF enters another rule. Repetitions
 * and groups were already rewritten into generated rules by the parser, so
 * the matcher sees only these three kinds.
 */
#ifndef VT_GRAMMAR_INT_H
#define VT_GRAMMAR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

enum { GR_END = 0, GR_CLASS = 1, GR_REF = 2 };

typedef struct {
    uint32_t kind; /* GR_* */
    uint32_t arg;  /* GR_CLASS: class index; GR_REF: rule index */
} gr_el;

typedef struct {
    uint32_t lo, hi; /* code points, inclusive */
} gr_range;

typedef struct {
    uint32_t first, n; /* ranges[first .. first+n), sorted, disjoint */
    uint64_t lead[4];  /* bytes that can start a match (256-bit set) */
} gr_class;

typedef struct {
    char *name;
    uint32_t first_alt, n_alts; /* alt_start[first_alt ..] */
} gr_rule;

typedef struct {
    gr_el *el;
    uint32_t n_el;
    uint32_t *alt_start;
    uint32_t n_alt;
    gr_rule *rules;
    uint32_t n_rules;
    gr_range *ranges;
    uint32_t n_ranges;
    gr_class *classes;
    uint32_t n_classes;
    uint32_t *rule_of; /* [n_el]: the rule each position belongs to */
    uint32_t root;
} gr_ir;

/* Limits that keep hostile grammars bounded. */
#define GR_MAX_TEXT (4u << 20)      /* bytes of GBNF */
#define GR_MAX_ELEMENTS (1u << 21)  /* elements after expansion */
#define GR_MAX_REPEAT 10000u        /* m and n of {m,n} */
#define GR_MAX_NEST 200             /* nested groups */

/* Parses GBNF text[0..len) (llama.cpp's dialect) into *ir. VT_ERR_FORMAT
 * with "line L, column C: ..." for a syntax error, an undefined rule, a
 * missing root or left recursion; VT_ERR_NOMEM. ir is empty on failure; free
 * with gr_ir_free either way. */
vt_err gr_parse(const char *text, size_t len, gr_ir *ir);
void gr_ir_free(gr_ir *ir);

/* A regular expression (regex.c's subset) as one GBNF expression (a
 * parenthesised group), newly allocated (caller frees). json: the text is
 * the inside of a JSON string, so ", \ and control characters appear
 * escaped and never raw. VT_ERR_FORMAT / VT_ERR_UNSUPPORTED naming the
 * problem; VT_ERR_NOMEM. */
vt_err gr_regex_expr(const char *re, size_t len, bool json, char **expr);

/* Does class c contain code point cp? */
bool gr_class_has(const gr_ir *ir, uint32_t c, uint32_t cp);
/* Does class c contain any code point in [lo, hi]? */
bool gr_class_meets(const gr_ir *ir, uint32_t c, uint32_t lo, uint32_t hi);

#endif
