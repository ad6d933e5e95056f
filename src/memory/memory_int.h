/*
 * memory_int.h - what the files of memory/ share: the backend table a store
 * dispatches to (SQLite today, PostgreSQL beside it later), input checks,
 * and the text processing behind recall (index text, query terms).
 *
 * store.c validates every input before a backend sees it, so a backend may
 * assume: user and id are valid (mem_valid_key), the text is valid UTF-8
 * within its limit, embeddings are finite with 1..MEM_EMBD_MAX dimensions.
 * Backends scope every statement by user.
 */
#ifndef VT_MEMORY_INT_H
#define VT_MEMORY_INT_H

#include "memory/memory.h"
#include "util/util.h"

/* A ranked candidate of one recall list. */
typedef struct {
    int64_t seq;
    double score; /* the list's own score (bm25: lower is better; cosine: higher) */
} mem_cand;

/* A query term for full-text search: a word (Latin scripts: stemmed by the
 * backend) or a character bigram of a CJK run; prefix: also any longer token
 * starting with it (a single CJK character). */
typedef struct {
    char *text;
    bool prefix;
} mem_term;

enum { MEM_PUT_ADD, MEM_PUT_UPSERT };

typedef struct {
    const char *name;
    void (*close)(mem_store *s);
    vt_err (*begin)(mem_store *s);
    vt_err (*commit)(mem_store *s);
    vt_err (*rollback)(mem_store *s);
    /* mode MEM_PUT_*; in->id is set (store.c assigns one) */
    vt_err (*put)(mem_store *s, const char *user, const mem_input *in, int mode, bool *created);
    vt_err (*get)(mem_store *s, const char *user, const char *id, bool embedding, mem_memory *out);
    vt_err (*get_seq)(mem_store *s, const char *user, int64_t seq, mem_memory *out);
    vt_err (*update)(mem_store *s, const char *user, const char *id, const char *text,
                     const float *emb, int32_t n_embd);
    vt_err (*history)(mem_store *s, const char *user, const char *id, mem_version **v, size_t *n);
    vt_err (*del)(mem_store *s, const char *user, const char *id);
    vt_err (*list)(mem_store *s, const char *user, int64_t after, int32_t limit,
                   mem_memory **items, size_t *n, int64_t *next);
    vt_err (*count)(mem_store *s, const char *user, int64_t *n);
    vt_err (*forget)(mem_store *s, const char *user, int64_t *n);
    vt_err (*profile_get)(mem_store *s, const char *user, char **text);
    vt_err (*profile_set)(mem_store *s, const char *user, const char *text);
    /* full-text candidates, best first (terms OR-ed) */
    vt_err (*lexical)(mem_store *s, const char *user, const mem_term *t, size_t nt, int32_t limit,
                      mem_cand **c, size_t *n);
    /* cosine candidates, best first (q has norm 1) */
    vt_err (*vector)(mem_store *s, const char *user, const float *q, int32_t n_embd,
                     int32_t limit, mem_cand **c, size_t *n);
    /* the distinct speakers of the user's memories (at most 256); the array
     * and strings are the store's, valid until its next call */
    vt_err (*speakers)(mem_store *s, const char *user, char ***names, size_t *n);
    /* turns of the same conversation within `radius` of index (not itself), in order */
    vt_err (*neighbours)(mem_store *s, const char *user, const char *conversation, int64_t index,
                         int32_t radius, mem_memory **items, size_t *n);
} mem_backend;

struct mem_store {
    const mem_backend *be;
    void *impl;
    bool in_batch;
    int32_t version; /* the open store's schema version */
};

extern const mem_backend mem_sqlite_backend;
/* Opens the SQLite backend at path into s->impl. */
vt_err mem_sqlite_open(mem_store *s, const char *path, const mem_options *opt);
extern const mem_backend mem_pg_backend;
/* Opens the PostgreSQL backend (postgres.c) at a postgresql:// URI into s->impl. */
vt_err mem_pg_open(mem_store *s, const char *uri, const mem_options *opt);

/* ---- checks (store.c) ---- */
bool mem_utf8_valid(const char *s, size_t len);
/* user / id: 1..max bytes of valid UTF-8 without spaces or control characters;
 * VT_ERR_INVALID naming `what` otherwise. */
vt_err mem_valid_key(const char *s, const char *what, size_t max);
char *mem_strdup(const char *s); /* NULL for NULL */

/* ---- text (text.c) ---- */
/* The text FTS indexes for a memory's own text: Latin-script words as they
 * are, CJK runs as overlapping character bigrams and their last character,
 * each a separate token. Appends to b. */
void mem_index_text(const char *text, vt_buf *b);
/* Extra index text for a time: "2023 may 7 sunday". */
void mem_index_time(int64_t ms, vt_buf *b);
/* The query's search terms: lower-cased words without stop words (and
 * Korean particles and endings), CJK as bigrams; duplicates dropped.
 * *t is malloc'd (free with mem_terms_free). */
vt_err mem_query_terms(const char *q, mem_term **t, size_t *n);
/* The same, after taking the names out of q (whole words, ASCII case
 * ignored; a Korean name with a particle attached too): named[i] (may be
 * NULL) tells whether names[i] was in it. */
vt_err mem_query_terms_named(const char *q, char *const *names, size_t nn, bool *named,
                             mem_term **t, size_t *n);
void mem_terms_free(mem_term *t, size_t n);
/* The normalised form of a text for de-duplication (lower case, words
 * separated by single spaces); malloc'd, NULL on OOM. */
char *mem_dedup_key(const char *text);

/* ---- vectors ---- */
/* x as int8 (symmetric, one scale: x ~ out * scale); returns the scale */
float mem_quantize_i8(const float *x, int32_t n, int8_t *out);
/* the dot product of a float vector and an int8 vector */
float mem_dot_f32_i8(const float *a, const int8_t *b, int32_t n);
/* the dot product of two int8 vectors (AVX-512 VNNI or AVX2 where the CPU has them) */
int32_t mem_dot_i8(const int8_t *a, const int8_t *b, int32_t n);

#endif
