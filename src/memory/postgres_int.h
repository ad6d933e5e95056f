/*
 * postgres_int.h - what the files of the PostgreSQL backend share
 * (postgres.c: schema, transactions, writes and reads, open; postgres_recall.c:
 * full-text and vector candidates, speakers, neighbouring turns): the handle,
 * the prepared statements (all made at open, named "vt<N>"), statement
 * parameters and result helpers. See postgres.c for the design.
 */
#ifndef VT_MEMORY_POSTGRES_INT_H
#define VT_MEMORY_POSTGRES_INT_H

#include <stdio.h>

#include <postgresql/libpq-fe.h> /* Debian libpq-dev; its own headers are found beside it */

#include "memory/memory_int.h"

#define MEM_PG_MAX_PARAMS 16

enum {
    Q_LOCK, Q_FIND, Q_NEXT_INDEX, Q_INSERT, Q_UPDATE_FULL, Q_UPDATE_TEXT, Q_HIST_ADD,
    Q_HISTORY, Q_GET, Q_GET_SEQ, Q_TURN, Q_SET_CTX, Q_DELETE, Q_LIST, Q_COUNT, Q_FORGET_HIST,
    Q_FORGET_MEM, Q_FORGET_PROFILE, Q_FORGET_USER, Q_PROFILE_GET, Q_PROFILE_SET, Q_LEXICAL,
    Q_GEN, Q_VECTORS, Q_VECTORS_SINCE, Q_NEIGHBOURS, Q_SPEAKERS, Q_COUNT_UPTO, Q_BM25_ALL,
    Q_BM25_SINCE, Q_BM25_QUERY, Q_WINDOW,
    Q_COUNT_
};

typedef struct {
    PGconn *conn;
    int32_t version;
    bool read_only;
    int32_t lock_timeout_ms;
    bool prepared[Q_COUNT_];
    int64_t gen;  /* the generation of the write in progress */
    bool op_wrote; /* the write in progress changed a row */
    /* a batch: the users whose rows it has locked (with their generation),
     * and whether a failed write has spoiled it */
    struct {
        char *user;
        int64_t gen;
    } locked[64];
    int n_locked;
    bool batch_failed;
    char batch_error[512];
    /* the vectors of one user for search */
    struct {
        char *user;
        bool stale;     /* set by a rollback of this handle */
        int64_t gen, delgen;
        int32_t dim;
        size_t n, cap;
        int64_t *seq;   /* ascending */
        int8_t *v;
        float *scale;
        bool resync; /* this handle wrote in a batch: its rows carry the batch's generation */
    } vc;
    /* the speakers of one user */
    struct {
        char *user;
        bool stale;
        int64_t gen, delgen;
        char **names;
        size_t n;
    } sc;
    /* the full-text index of one big user (postgres_bm25.c) */
    struct mem_pg_bm25 *bm;
    bool bm_stale, bm_resync; /* as vc.stale and vc.resync */
} mem_pg;

static inline mem_pg *P(mem_store *s)
{
    return s->impl;
}

/* the parameters of one statement: text values, or binary (bytea) ones */
typedef struct {
    const char *v[MEM_PG_MAX_PARAMS];
    int len[MEM_PG_MAX_PARAMS];
    int fmt[MEM_PG_MAX_PARAMS];
    char num[MEM_PG_MAX_PARAMS][24];
    int n;
} mem_pg_params;

static inline void mem_pg_p_text(mem_pg_params *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static inline void mem_pg_p_int(mem_pg_params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    mem_pg_p_text(p, p->num[p->n]);
}

static inline void mem_pg_p_time(mem_pg_params *p, int64_t t)
{
    if (t == MEM_TIME_NONE)
        mem_pg_p_text(p, NULL);
    else
        mem_pg_p_int(p, t);
}

static inline void mem_pg_p_index(mem_pg_params *p, int64_t index)
{
    if (index >= 0)
        mem_pg_p_int(p, index);
    else
        mem_pg_p_text(p, NULL);
}

static inline void mem_pg_p_bin(mem_pg_params *p, const void *b, int len)
{
    p->v[p->n] = b;
    p->len[p->n] = len;
    p->fmt[p->n++] = b ? 1 : 0;
}

/* the error of a failed result (r may be NULL) as a vt_err, set with a
 * message: connection and resource trouble VT_ERR_IO, bad data
 * VT_ERR_INVALID, a missing or odd table VT_ERR_FORMAT */
vt_err mem_pg_fail(mem_pg *d, const PGresult *r, const char *what);
/* runs prepared statement q; NULL (with *err set) unless it succeeded;
 * binary: results in binary format. The caller PQclear()s the result. */
PGresult *mem_pg_run(mem_pg *d, int q, const mem_pg_params *p, bool binary, const char *what,
                     vt_err *err);
/* runs a statement whose result is not needed */
vt_err mem_pg_run0(mem_pg *d, int q, const mem_pg_params *p, const char *what);
/* runs fixed SQL (no parameters, possibly several statements) */
vt_err mem_pg_exec(mem_pg *d, const char *sql, const char *what);
/* a text-format value as an integer / a malloc'd string (NULL for NULL or OOM) */
int64_t mem_pg_int(const PGresult *r, int row, int col);
char *mem_pg_str(const PGresult *r, int row, int col);
/* reconnects a connection lost outside a batch; VT_ERR_IO if it cannot */
vt_err mem_pg_alive(mem_store *s);
/* the rows of a text-format result of COLS into a new array (at most max,
 * -1: all; *more when there were more); free with mem_memories_free */
vt_err mem_pg_read_rows(const PGresult *r, int max, mem_memory **items, size_t *n, bool *more);

/* ---- postgres_recall.c: the backend's recall entries and its caches ---- */
vt_err mem_pg_lexical(mem_store *s, const char *user, const mem_term *t, size_t nt, int32_t limit,
                      mem_cand **c, size_t *n);
vt_err mem_pg_vector(mem_store *s, const char *user, const float *q, int32_t dim, int32_t limit,
                     mem_cand **c, size_t *n);
vt_err mem_pg_speakers(mem_store *s, const char *user, char ***names, size_t *n);
vt_err mem_pg_neighbours(mem_store *s, const char *user, const char *conv, int64_t index,
                         int32_t radius, mem_memory **items, size_t *n);
/* frees the vector, speaker and full-text caches */
void mem_pg_recall_clear(mem_pg *d);
/* the user's generations: of the last write, and of the last delete (0, 0
 * for a user without a row) */
vt_err mem_pg_user_gen(mem_pg *d, const char *user, int64_t *gen, int64_t *delgen);

/* ---- postgres_bm25.c ---- */
/* BM25 candidates for tsquery (the text of a query of quoted lexemes, OR-ed)
 * when the user is big enough to be ranked in memory: *handled then, else
 * nothing is done (the caller ranks in SQL). *c as mem_backend.lexical. */
vt_err mem_pg_bm25_lexical(mem_pg *d, const char *user, const char *tsquery, int32_t limit,
                           mem_cand **c, size_t *n, bool *handled);
void mem_pg_bm25_clear(mem_pg *d);

#endif
