/*
 * sqlite_int.h - what the files of the SQLite backend share: the handle
 * (connection, prepared statements, the queue of rows whose full-text entry
 * must be rebuilt, the recall caches), the statements' names, small helpers,
 * and the FTS5 tokenizer with its per-user tags (sqlite_fts.c).
 */
#ifndef VT_MEMORY_SQLITE_INT_H
#define VT_MEMORY_SQLITE_INT_H

#include <sqlite3.h>

#include "memory/memory_int.h"

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
    Q_FIND, Q_NEXT_INDEX, Q_INSERT, Q_UPDATE_FULL, Q_UPDATE_TEXT, Q_HIST_ADD, Q_HISTORY,
    Q_GET, Q_GET_SEQ, Q_TURN, Q_DELETE, Q_LIST, Q_COUNT,
    Q_FORGET_HIST, Q_FORGET_MEM, Q_FORGET_PROFILE, Q_PROFILE_GET, Q_PROFILE_SET,
    Q_LEXICAL, Q_VECTORS, Q_NEIGHBOURS, Q_DATA_VERSION, Q_SPEAKERS,
    Q_FTS_ROW, Q_FTS_ADD, Q_FTS_DEL, Q_SET_CTX, Q_USER_INDEXED, Q_UNINDEXED, Q_CACHE_ROW,
    Q_COUNT_
};

/* a row whose full-text entry is rebuilt before the transaction commits */
typedef struct {
    int64_t seq;
    char *user;
} sq_dirty;

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT_];
    int32_t version;
    /* the rows this transaction wrote (and their neighbours): reindexed
     * before it commits, then brought into the recall caches */
    sq_dirty *dirty;
    size_t n_dirty, cap_dirty;
    bool caches_stale; /* a forget-user: drop the caches after the commit */
    /* the vectors of one user for search, as committed (this handle's
     * commits are applied row by row; another connection's commit, seen in
     * data_version, reloads them) */
    struct {
        char *user;
        int64_t data_version;
        int32_t dim;
        size_t n, cap; /* rows, in seq order */
        int64_t *seq;
        int8_t *v;
        float *scale;
    } vc;
    /* the speakers of one user (kept the same way) */
    struct {
        char *user;
        int64_t data_version;
        char **names;
        size_t n;
    } sc;
} sq;

static inline sq *mem_sq(mem_store *s)
{
    return s->impl;
}

/* sqlite.c */
vt_err mem_sq_fail(sq *d, const char *what);
/* resets a statement and clears its bindings */
void mem_sq_done(sqlite3_stmt *st);
char *mem_sq_col_str(sqlite3_stmt *st, int i);
/* the rows of a bound select of the memory columns (max < 0: all) */
vt_err mem_sq_read_rows(sq *d, sqlite3_stmt *st, int32_t max, mem_memory **items, size_t *n,
                        bool *more);
int64_t mem_sq_data_version(sq *d);

/* sqlite_recall.c */
vt_err mem_sq_lexical(mem_store *s, const char *user, const mem_term *t, size_t nt, int32_t limit,
                      mem_cand **c, size_t *n);
vt_err mem_sq_vector(mem_store *s, const char *user, const float *q, int32_t dim, int32_t limit,
                     mem_cand **c, size_t *n);
vt_err mem_sq_speakers(mem_store *s, const char *user, char ***names, size_t *n);
vt_err mem_sq_neighbours(mem_store *s, const char *user, const char *conv, int64_t index,
                         int32_t radius, mem_memory **items, size_t *n);
void mem_sq_caches_clear(sq *d);
/* after a commit: the committed state of the queued rows into the caches */
void mem_sq_caches_apply(sq *d);

/* sqlite_fts.c */
#define MEM_TAG_LEN 10
/* Registers the "vitamin" FTS5 tokenizer on db. */
vt_err mem_sqlite_register_tokenizer(sqlite3 *db);
/* The user's tag (MEM_TAG_LEN characters of [0-9a-v]). */
void mem_sqlite_user_tag(const char *user, char tag[MEM_TAG_LEN + 1]);
/* "\x01TAG\x01" followed by the index text of text (appended to b). */
void mem_sqlite_tagged(const char *tag, const char *text, bool index_text, vt_buf *b);

/* The SQL that creates schema version 1 or migrates version v-1 to v (tests
 * build an old file with it); NULL for an unknown version. Opening then
 * also reindexes the rows the migration left out of the index. */
const char *mem_sqlite_migration_sql(int32_t version);

#endif
