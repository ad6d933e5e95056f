/*
 * sqlite.c - the SQLite backend of the memory store: one file in WAL mode
 * with synchronous=FULL (a committed transaction is on disk before the call
 * returns), foreign keys on, a busy timeout, every statement prepared once
 * at open and every one scoped by user (`WHERE user = ?`).
 *
 * Tables: schema_version (one row), memories (one row per memory; `seq` is
 * the stable order; `body` and `ctx` are the text FTS indexes: the memory's
 * own words, and its neighbouring turns with its date), memories_fts (an
 * external-content FTS5 index over body and ctx kept by triggers), history
 * (earlier texts, since schema 2) and profiles. Migrations run in order in
 * one transaction at open; a file whose version is newer than this build's
 * is refused. Embeddings are stored as little-endian binary16 blobs of the
 * L2-normalised vector; search keeps the user's vectors in memory as int8
 * rows with a scale each, reloaded when the file changes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "memory/memory_int.h"

#define SCHEMA_VERSION 2
/* bm25 weight of a turn's context (its neighbours, its date) beside its own words */
#define CTX_WEIGHT 0.35

/* schema 1: memories, their full-text index, profiles */
static const char schema_v1[] =
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "CREATE TABLE memories("
    " seq INTEGER PRIMARY KEY,"
    " user TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " text TEXT NOT NULL,"
    " kind INTEGER NOT NULL CHECK(kind BETWEEN 0 AND 3),"
    " conversation TEXT,"
    " msg_index INTEGER,"
    " speaker TEXT,"
    " event_time INTEGER,"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " embedding BLOB,"
    " body TEXT NOT NULL,"
    " ctx TEXT NOT NULL DEFAULT '',"
    " UNIQUE(user, id));"
    "CREATE INDEX memories_conv ON memories(user, conversation, msg_index);"
    "CREATE VIRTUAL TABLE memories_fts USING fts5(body, ctx, content='memories',"
    " content_rowid='seq', tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"
    " INSERT INTO memories_fts(rowid, body, ctx) VALUES (new.seq, new.body, new.ctx); END;"
    "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, body, ctx)"
    " VALUES ('delete', old.seq, old.body, old.ctx); END;"
    "CREATE TRIGGER memories_au AFTER UPDATE OF body, ctx ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, body, ctx)"
    " VALUES ('delete', old.seq, old.body, old.ctx);"
    " INSERT INTO memories_fts(rowid, body, ctx) VALUES (new.seq, new.body, new.ctx); END;"
    "CREATE TABLE profiles(user TEXT PRIMARY KEY, text TEXT NOT NULL, updated INTEGER NOT NULL);"
    "INSERT INTO schema_version VALUES (1);";

/* schema 2: versions and history (an update keeps the old text) */
static const char migrate_v2[] =
    "ALTER TABLE memories ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE history("
    " hid INTEGER PRIMARY KEY,"
    " seq INTEGER NOT NULL REFERENCES memories(seq) ON DELETE CASCADE,"
    " user TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " text TEXT NOT NULL,"
    " written INTEGER NOT NULL);"
    "CREATE INDEX history_seq ON history(seq);"
    "CREATE INDEX history_user ON history(user);"
    "UPDATE schema_version SET version = 2;";

static const char *const migrations[SCHEMA_VERSION + 1] = {NULL, schema_v1, migrate_v2};

#define COLS "seq, id, user, text, kind, conversation, msg_index, speaker, event_time, " \
             "created, updated, %s"

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
    Q_FIND, Q_NEXT_INDEX, Q_INSERT, Q_UPDATE_FULL, Q_UPDATE_TEXT, Q_HIST_ADD, Q_HISTORY,
    Q_GET, Q_GET_SEQ, Q_TURN, Q_SET_CTX, Q_DELETE, Q_LIST, Q_COUNT,
    Q_FORGET_HIST, Q_FORGET_MEM, Q_FORGET_PROFILE, Q_PROFILE_GET, Q_PROFILE_SET,
    Q_LEXICAL, Q_VECTORS, Q_NEIGHBOURS, Q_DATA_VERSION, Q_SPEAKERS,
    Q_COUNT_
};

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT_];
    int32_t version;
    uint64_t gen; /* bumped by every write through this handle */
    /* the vectors of one user for search */
    struct {
        char *user;
        uint64_t gen;
        int64_t data_version;
        int32_t dim;
        size_t n;
        int64_t *seq;
        int8_t *v;
        float *scale;
    } vc;
    /* the speakers of one user */
    struct {
        char *user;
        uint64_t gen;
        int64_t data_version;
        char **names;
        size_t n;
    } sc;
} sq;

static sq *S(mem_store *s)
{
    return s->impl;
}

static vt_err db_fail(sq *d, const char *what)
{
    int rc = sqlite3_errcode(d->db);
    vt_err e = rc == SQLITE_NOMEM ? VT_ERR_NOMEM
               : (rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_BUSY ||
                  rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY)
                   ? VT_ERR_IO
               : rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? VT_ERR_FORMAT
                                                              : VT_ERR_INTERNAL;
    return vt_fail(e, "memory store: %s: %s", what, sqlite3_errmsg(d->db));
}

/* binds ?N as text or NULL */
static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_time(sqlite3_stmt *st, int i, int64_t t)
{
    if (t == MEM_TIME_NONE)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, t);
}

/* runs a statement that returns no rows (the bindings are cleared after) */
static vt_err exec(sq *d, int q, const char *what)
{
    sqlite3_stmt *st = d->q[q];
    int rc = sqlite3_step(st);
    vt_err e = rc == SQLITE_DONE || rc == SQLITE_ROW ? VT_OK : db_fail(d, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return e;
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* ---- transactions: a write outside a batch is one transaction; inside a
 * batch one savepoint, so a failed write leaves nothing behind ---- */

static vt_err tx_open(mem_store *s)
{
    sq *d = S(s);
    return exec(d, s->in_batch ? Q_SAVEPOINT : Q_BEGIN, "begin");
}

static vt_err tx_close(mem_store *s, vt_err e)
{
    sq *d = S(s);
    d->gen++;
    if (s->in_batch) {
        if (e) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", vt_last_error());
            exec(d, Q_ROLLBACK_TO, "rollback");
            exec(d, Q_RELEASE, "release");
            return vt_fail(e, "%s", msg);
        }
        return exec(d, Q_RELEASE, "release");
    }
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", vt_last_error());
        exec(d, Q_ROLLBACK, "rollback");
        return vt_fail(e, "%s", msg);
    }
    vt_err c = exec(d, Q_COMMIT, "commit");
    if (c)
        exec(d, Q_ROLLBACK, "rollback");
    return c;
}

static vt_err be_begin(mem_store *s)
{
    return exec(S(s), Q_BEGIN, "begin");
}

static vt_err be_commit(mem_store *s)
{
    sq *d = S(s);
    vt_err e = exec(d, Q_COMMIT, "commit");
    if (e)
        exec(d, Q_ROLLBACK, "rollback");
    return e;
}

static vt_err be_rollback(mem_store *s)
{
    S(s)->gen++;
    return exec(S(s), Q_ROLLBACK, "rollback");
}

/* ---- rows ---- */

static char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static vt_err read_row(sqlite3_stmt *st, mem_memory *m, bool embedding)
{
    memset(m, 0, sizeof *m);
    m->seq = sqlite3_column_int64(st, 0);
    m->id = col_str(st, 1);
    m->user = col_str(st, 2);
    m->text = col_str(st, 3);
    m->kind = (mem_kind)sqlite3_column_int(st, 4);
    m->conversation = col_str(st, 5);
    m->message_index = sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 6);
    m->speaker = col_str(st, 7);
    m->event_time = sqlite3_column_type(st, 8) == SQLITE_NULL ? MEM_TIME_NONE
                                                              : sqlite3_column_int64(st, 8);
    m->created = sqlite3_column_int64(st, 9);
    m->updated = sqlite3_column_int64(st, 10);
    m->version = sqlite3_column_int(st, 11);
    if (!m->id || !m->user || !m->text || (sqlite3_column_type(st, 5) != SQLITE_NULL && !m->conversation) ||
        (sqlite3_column_type(st, 7) != SQLITE_NULL && !m->speaker))
        goto oom;
    if (embedding && sqlite3_column_type(st, 12) == SQLITE_BLOB) {
        const uint8_t *b = sqlite3_column_blob(st, 12);
        int nb = sqlite3_column_bytes(st, 12);
        if (nb >= 2 && nb % 2 == 0) {
            m->n_embd = nb / 2;
            if (!(m->embedding = malloc(sizeof(float) * (size_t)m->n_embd)))
                goto oom;
            for (int32_t i = 0; i < m->n_embd; i++)
                m->embedding[i] = vt_fp16_to_fp32((vt_fp16)(b[2 * i] | b[2 * i + 1] << 8));
        }
    }
    return VT_OK;
oom:
    mem_memory_clear(m);
    return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
}

/* the index text of a memory's own words */
static char *body_of(const char *text)
{
    vt_buf b = {0};
    mem_index_text(text, &b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

/* the turn at (conversation, index): seq, text and event time; false if none */
static bool turn_at(sq *d, const char *user, const char *conv, int64_t index, int64_t *seq,
                    char **text, int64_t *t)
{
    sqlite3_stmt *st = d->q[Q_TURN];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, index);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        if (seq)
            *seq = sqlite3_column_int64(st, 0);
        if (text)
            *text = col_str(st, 1);
        if (t)
            *t = sqlite3_column_type(st, 2) == SQLITE_NULL ? MEM_TIME_NONE
                                                           : sqlite3_column_int64(st, 2);
    }
    done(st);
    return found;
}

/* ctx of the turn at index: its neighbours' words and its date */
static vt_err build_ctx(sq *d, const char *user, const char *conv, int64_t index,
                        int64_t event_time, vt_buf *b)
{
    if (conv && index >= 0) {
        for (int64_t k = index - 1; k <= index + 1; k += 2) {
            char *t = NULL;
            if (k >= 0 && turn_at(d, user, conv, k, NULL, &t, NULL) && t)
                mem_index_text(t, b);
            free(t);
        }
    }
    mem_index_time(event_time, b);
    if (b->oom)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    return VT_OK;
}

/* rebuilds the ctx of the turn at index, if there is one */
static vt_err refresh_ctx(sq *d, const char *user, const char *conv, int64_t index)
{
    int64_t seq, t;
    if (index < 0 || !turn_at(d, user, conv, index, &seq, NULL, &t))
        return VT_OK;
    vt_buf b = {0};
    vt_err e = build_ctx(d, user, conv, index, t, &b);
    if (!e) {
        sqlite3_stmt *st = d->q[Q_SET_CTX];
        sqlite3_bind_text(st, 1, b.p ? b.p : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, seq);
        e = exec(d, Q_SET_CTX, "index context");
    }
    free(b.p);
    return e;
}

static void bind_embedding(sqlite3_stmt *st, int i, const float *e, int32_t n, uint8_t **blob)
{
    *blob = NULL;
    if (!e) {
        sqlite3_bind_null(st, i);
        return;
    }
    double ss = 0;
    for (int32_t k = 0; k < n; k++)
        ss += (double)e[k] * e[k];
    float inv = (float)(1.0 / sqrt(ss));
    uint8_t *b = malloc((size_t)n * 2);
    if (!b) {
        sqlite3_bind_null(st, i);
        return;
    }
    for (int32_t k = 0; k < n; k++) {
        vt_fp16 h = vt_fp32_to_fp16(e[k] * inv);
        b[2 * k] = (uint8_t)h;
        b[2 * k + 1] = (uint8_t)(h >> 8);
    }
    sqlite3_bind_blob(st, i, b, n * 2, SQLITE_STATIC);
    *blob = b;
}

/* looks up (user, id): seq, text, version, conversation, index; 0 if none */
static int64_t find(sq *d, const char *user, const char *id, char **text, int32_t *version,
                    char **conv, int64_t *index, int64_t *updated)
{
    sqlite3_stmt *st = d->q[Q_FIND];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int64_t seq = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        seq = sqlite3_column_int64(st, 0);
        if (text)
            *text = col_str(st, 1);
        if (version)
            *version = sqlite3_column_int(st, 2);
        if (conv)
            *conv = col_str(st, 3);
        if (index)
            *index = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
        if (updated)
            *updated = sqlite3_column_int64(st, 5);
    }
    done(st);
    return seq;
}

static vt_err add_history(sq *d, const char *user, int64_t seq, int32_t version, const char *text,
                          int64_t written)
{
    if (d->version < 2)
        return VT_OK;
    sqlite3_stmt *st = d->q[Q_HIST_ADD];
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, version);
    sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, written);
    return exec(d, Q_HIST_ADD, "history");
}

static vt_err put_locked(sq *d, const char *user, const mem_input *in, int mode, bool *created)
{
    char *old_text = NULL, *old_conv = NULL, *body = NULL;
    int32_t version = 1;
    int64_t old_index = -1, old_written = 0, now = mem_time_now();
    int64_t seq = find(d, user, in->id, &old_text, &version, &old_conv, &old_index, &old_written);
    vt_err e = VT_OK;
    vt_buf ctx = {0};
    uint8_t *blob = NULL;
    if (seq && mode == MEM_PUT_ADD) {
        e = vt_fail(VT_ERR_INVALID, "id '%s' exists already for this user", in->id);
        goto out;
    }
    int64_t index = in->message_index;
    if (in->conversation && index < 0) {
        if (seq && old_conv && !strcmp(old_conv, in->conversation) && old_index >= 0) {
            index = old_index;
        } else {
            sqlite3_stmt *st = d->q[Q_NEXT_INDEX];
            sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, in->conversation, -1, SQLITE_STATIC);
            index = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
            done(st);
        }
    }
    if (!in->conversation)
        index = -1;
    if (!(body = body_of(in->text))) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if ((e = build_ctx(d, user, in->conversation, index, in->event_time, &ctx)))
        goto out;
    if (seq) {
        /* an update: the old text goes to the history when it changes */
        bool changed = strcmp(old_text ? old_text : "", in->text) != 0;
        if (changed && (e = add_history(d, user, seq, version, old_text ? old_text : "", old_written)))
            goto out;
        sqlite3_stmt *st = d->q[Q_UPDATE_FULL];
        sqlite3_bind_text(st, 1, in->text, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)in->kind);
        bind_text(st, 3, in->conversation);
        if (index >= 0)
            sqlite3_bind_int64(st, 4, index);
        else
            sqlite3_bind_null(st, 4);
        bind_text(st, 5, in->speaker);
        bind_time(st, 6, in->event_time);
        sqlite3_bind_int64(st, 7, now);
        bind_embedding(st, 8, in->embedding, in->n_embd, &blob);
        sqlite3_bind_text(st, 9, body, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, ctx.p ? ctx.p : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 11, changed);
        sqlite3_bind_text(st, 12, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 13, seq);
        if ((e = exec(d, Q_UPDATE_FULL, "update")))
            goto out;
        if (old_conv && old_index >= 0 &&
            (!in->conversation || strcmp(old_conv, in->conversation) || old_index != index) &&
            ((e = refresh_ctx(d, user, old_conv, old_index - 1)) ||
             (e = refresh_ctx(d, user, old_conv, old_index + 1))))
            goto out;
        if (created)
            *created = false;
    } else {
        sqlite3_stmt *st = d->q[Q_INSERT];
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->text, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)in->kind);
        bind_text(st, 5, in->conversation);
        if (index >= 0)
            sqlite3_bind_int64(st, 6, index);
        else
            sqlite3_bind_null(st, 6);
        bind_text(st, 7, in->speaker);
        bind_time(st, 8, in->event_time);
        sqlite3_bind_int64(st, 9, now);
        bind_embedding(st, 10, in->embedding, in->n_embd, &blob);
        sqlite3_bind_text(st, 11, body, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 12, ctx.p ? ctx.p : "", -1, SQLITE_STATIC);
        if ((e = exec(d, Q_INSERT, "insert")))
            goto out;
        if (created)
            *created = true;
    }
    if (in->embedding && !blob) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if (in->conversation && index >= 0 &&
        ((e = refresh_ctx(d, user, in->conversation, index - 1)) ||
         (e = refresh_ctx(d, user, in->conversation, index + 1))))
        goto out;
out:
    free(old_text);
    free(old_conv);
    free(body);
    free(ctx.p);
    free(blob);
    return e;
}

static vt_err be_put(mem_store *s, const char *user, const mem_input *in, int mode, bool *created)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, put_locked(S(s), user, in, mode, created));
}

static vt_err be_get(mem_store *s, const char *user, const char *id, bool embedding,
                     mem_memory *out)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_GET];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    vt_err e = rc == SQLITE_ROW    ? read_row(st, out, embedding)
               : rc == SQLITE_DONE ? vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id)
                                   : db_fail(d, "get");
    done(st);
    return e;
}

static vt_err be_get_seq(mem_store *s, const char *user, int64_t seq, mem_memory *out)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_GET_SEQ];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    int rc = sqlite3_step(st);
    vt_err e = rc == SQLITE_ROW    ? read_row(st, out, false)
               : rc == SQLITE_DONE ? vt_fail(VT_ERR_NOT_FOUND, "no memory #%lld for this user",
                                             (long long)seq)
                                   : db_fail(d, "get");
    done(st);
    return e;
}

static vt_err update_locked(sq *d, const char *user, const char *id, const char *text,
                            const float *emb, int32_t n_embd)
{
    char *old = NULL, *body = NULL;
    int32_t version = 1;
    uint8_t *blob = NULL;
    int64_t written = 0, seq = find(d, user, id, &old, &version, NULL, NULL, &written);
    vt_err e = VT_OK;
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    int64_t now = mem_time_now();
    if (!(body = body_of(text))) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if ((e = add_history(d, user, seq, version, old ? old : "", written)))
        goto out;
    sqlite3_stmt *st = d->q[Q_UPDATE_TEXT];
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    bind_embedding(st, 4, emb, n_embd, &blob);
    sqlite3_bind_int(st, 5, emb != NULL);
    sqlite3_bind_text(st, 6, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, seq);
    if (emb && !blob)
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    else
        e = exec(d, Q_UPDATE_TEXT, "update");
    if (e)
        done(st);
out:
    free(old);
    free(body);
    free(blob);
    return e;
}

static vt_err be_update(mem_store *s, const char *user, const char *id, const char *text,
                        const float *emb, int32_t n_embd)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, update_locked(S(s), user, id, text, emb, n_embd));
}

static vt_err be_history(mem_store *s, const char *user, const char *id, mem_version **v,
                         size_t *n)
{
    sq *d = S(s);
    *v = NULL;
    *n = 0;
    int64_t seq = find(d, user, id, NULL, NULL, NULL, NULL, NULL);
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    if (d->version < 2)
        return VT_OK;
    sqlite3_stmt *st = d->q[Q_HISTORY];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    size_t cap = 0;
    vt_err e = VT_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            mem_version *nv = realloc(*v, cap * sizeof *nv);
            if (!nv) {
                e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
                break;
            }
            *v = nv;
        }
        mem_version *x = &(*v)[*n];
        x->version = sqlite3_column_int(st, 0);
        x->text = col_str(st, 1);
        x->written = sqlite3_column_int64(st, 2);
        (*n)++;
        if (!x->text) {
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
            break;
        }
    }
    if (!e && rc != SQLITE_DONE)
        e = db_fail(d, "history");
    done(st);
    if (e) {
        mem_versions_free(*v, *n);
        *v = NULL;
        *n = 0;
    }
    return e;
}

static vt_err del_locked(sq *d, const char *user, const char *id)
{
    char *conv = NULL;
    int64_t index = -1;
    int64_t seq = find(d, user, id, NULL, NULL, &conv, &index, NULL);
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    sqlite3_stmt *st = d->q[Q_DELETE];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    vt_err e = exec(d, Q_DELETE, "delete");
    if (!e && conv && index >= 0 && !(e = refresh_ctx(d, user, conv, index - 1)))
        e = refresh_ctx(d, user, conv, index + 1);
    free(conv);
    return e;
}

static vt_err be_del(mem_store *s, const char *user, const char *id)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, del_locked(S(s), user, id));
}

/* reads the rows of a prepared, bound select into a growing array */
static vt_err read_rows(sq *d, sqlite3_stmt *st, int32_t max, mem_memory **items, size_t *n,
                        bool *more)
{
    size_t cap = 0;
    vt_err e = VT_OK;
    int rc;
    *items = NULL;
    *n = 0;
    if (more)
        *more = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (max >= 0 && *n == (size_t)max) {
            if (more)
                *more = true;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            mem_memory *nm = realloc(*items, cap * sizeof *nm);
            if (!nm) {
                e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
                break;
            }
            *items = nm;
        }
        if ((e = read_row(st, &(*items)[*n], false)))
            break;
        (*n)++;
    }
    if (!e && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = db_fail(d, "read");
    done(st);
    if (e) {
        mem_memories_free(*items, *n);
        *items = NULL;
        *n = 0;
    }
    return e;
}

static vt_err be_list(mem_store *s, const char *user, int64_t after, int32_t limit,
                      mem_memory **items, size_t *n, int64_t *next)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_LIST];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit + 1);
    bool more;
    vt_err e = read_rows(d, st, limit, items, n, &more);
    *next = !e && more && *n ? (*items)[*n - 1].seq : 0;
    return e;
}

static vt_err be_count(mem_store *s, const char *user, int64_t *n)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_COUNT];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    vt_err e = rc == SQLITE_ROW ? VT_OK : db_fail(d, "count");
    done(st);
    return e;
}

static vt_err be_forget(mem_store *s, const char *user, int64_t *n)
{
    sq *d = S(s);
    vt_err e = tx_open(s);
    if (e)
        return e;
    if (d->version >= 2) {
        sqlite3_bind_text(d->q[Q_FORGET_HIST], 1, user, -1, SQLITE_STATIC);
        e = exec(d, Q_FORGET_HIST, "forget");
    }
    if (!e) {
        sqlite3_bind_text(d->q[Q_FORGET_MEM], 1, user, -1, SQLITE_STATIC);
        e = exec(d, Q_FORGET_MEM, "forget");
        *n = e ? 0 : sqlite3_changes64(d->db);
    }
    if (!e) {
        sqlite3_bind_text(d->q[Q_FORGET_PROFILE], 1, user, -1, SQLITE_STATIC);
        e = exec(d, Q_FORGET_PROFILE, "forget");
    }
    return tx_close(s, e);
}

static vt_err be_profile_get(mem_store *s, const char *user, char **text)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_PROFILE_GET];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    vt_err e = VT_OK;
    if (rc == SQLITE_ROW)
        *text = col_str(st, 0);
    else if (rc == SQLITE_DONE)
        *text = strdup("");
    else
        e = db_fail(d, "profile");
    done(st);
    if (!e && !*text)
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    return e;
}

static vt_err be_profile_set(mem_store *s, const char *user, const char *text)
{
    sq *d = S(s);
    vt_err e = tx_open(s);
    if (e)
        return e;
    sqlite3_stmt *st = d->q[Q_PROFILE_SET];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, mem_time_now());
    return tx_close(s, exec(d, Q_PROFILE_SET, "profile"));
}

/* ---- recall ---- */

static vt_err be_lexical(mem_store *s, const char *user, const mem_term *t, size_t nt,
                         int32_t limit, mem_cand **c, size_t *n)
{
    sq *d = S(s);
    *c = NULL;
    *n = 0;
    if (!nt)
        return VT_OK;
    /* each term a quoted FTS5 string ("" inside doubled), OR-ed */
    vt_buf q = {0};
    for (size_t i = 0; i < nt; i++) {
        if (i)
            vt_buf_add(&q, " OR ", 4);
        vt_buf_add(&q, "\"", 1);
        for (const char *p = t[i].text; *p; p++) {
            vt_buf_add(&q, p, 1);
            if (*p == '"')
                vt_buf_add(&q, "\"", 1);
        }
        vt_buf_add(&q, t[i].prefix ? "\"*" : "\"", t[i].prefix ? 2 : 1);
    }
    if (q.oom) {
        free(q.p);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    sqlite3_stmt *st = d->q[Q_LEXICAL];
    sqlite3_bind_text(st, 1, q.p, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit);
    const char *w = getenv("VT_MEM_TUNE_CTX");
    sqlite3_bind_double(st, 4, w && *w ? atof(w) : CTX_WEIGHT);
    vt_err e = VT_OK;
    mem_cand *a = malloc(sizeof *a * (size_t)limit);
    if (!a)
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
    int rc = SQLITE_DONE;
    while (!e && *n < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        a[*n].seq = sqlite3_column_int64(st, 0);
        a[(*n)++].score = sqlite3_column_double(st, 1);
    }
    if (!e && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = db_fail(d, "search");
    done(st);
    free(q.p);
    if (e) {
        free(a);
        *n = 0;
        return e;
    }
    *c = a;
    return VT_OK;
}

static int64_t data_version(sq *d)
{
    sqlite3_stmt *st = d->q[Q_DATA_VERSION];
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    done(st);
    return v;
}

static void vc_clear(sq *d)
{
    free(d->vc.user);
    free(d->vc.seq);
    free(d->vc.v);
    free(d->vc.scale);
    memset(&d->vc, 0, sizeof d->vc);
}

/* loads the user's vectors of dimension dim as int8 rows */
static vt_err vc_load(sq *d, const char *user, int32_t dim)
{
    vc_clear(d);
    if (!(d->vc.user = strdup(user)))
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    d->vc.dim = dim;
    d->vc.gen = d->gen;
    d->vc.data_version = data_version(d);
    sqlite3_stmt *st = d->q[Q_VECTORS];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, dim * 2);
    size_t cap = 0;
    vt_err e = VT_OK;
    int rc;
    float *row = malloc(sizeof(float) * (size_t)dim);
    if (!row)
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
    while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 1);
        if (sqlite3_column_bytes(st, 1) != dim * 2 || !b)
            continue;
        if (d->vc.n == cap) {
            cap = cap ? cap * 2 : 1024;
            int64_t *ns = realloc(d->vc.seq, cap * sizeof *ns);
            if (ns)
                d->vc.seq = ns;
            float *nf = realloc(d->vc.scale, cap * sizeof *nf);
            if (nf)
                d->vc.scale = nf;
            int8_t *nv = realloc(d->vc.v, cap * (size_t)dim);
            if (nv)
                d->vc.v = nv;
            if (!ns || !nf || !nv) {
                e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
                break;
            }
        }
        float mx = 0;
        for (int32_t i = 0; i < dim; i++) {
            row[i] = vt_fp16_to_fp32((vt_fp16)(b[2 * i] | b[2 * i + 1] << 8));
            mx = fmaxf(mx, fabsf(row[i]));
        }
        float sc = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / sc;
        int8_t *dst = d->vc.v + d->vc.n * (size_t)dim;
        for (int32_t i = 0; i < dim; i++)
            dst[i] = (int8_t)lrintf(row[i] * inv);
        d->vc.scale[d->vc.n] = sc;
        d->vc.seq[d->vc.n++] = sqlite3_column_int64(st, 0);
    }
    done(st);
    free(row);
    if (e)
        vc_clear(d);
    return e;
}

/* keeps the best `limit` of (score, seq) in a min-heap */
static void heap_push(mem_cand *h, size_t *n, size_t limit, mem_cand c)
{
    if (*n < limit) {
        size_t i = (*n)++;
        h[i] = c;
        while (i && h[(i - 1) / 2].score > h[i].score) {
            mem_cand t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (c.score <= h[0].score)
        return;
    h[0] = c;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l].score < h[m].score)
            m = l;
        if (r < *n && h[r].score < h[m].score)
            m = r;
        if (m == i)
            break;
        mem_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cand_desc(const void *a, const void *b)
{
    double x = ((const mem_cand *)a)->score, y = ((const mem_cand *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

static vt_err be_vector(mem_store *s, const char *user, const float *q, int32_t dim,
                        int32_t limit, mem_cand **c, size_t *n)
{
    sq *d = S(s);
    *c = NULL;
    *n = 0;
    if (!d->vc.user || strcmp(d->vc.user, user) || d->vc.dim != dim || d->vc.gen != d->gen ||
        d->vc.data_version != data_version(d)) {
        vt_err e = vc_load(d, user, dim);
        if (e)
            return e;
    }
    mem_cand *h = malloc(sizeof *h * (size_t)limit);
    if (!h)
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    size_t nh = 0;
    for (size_t i = 0; i < d->vc.n; i++) {
        float sim = mem_dot_f32_i8(q, d->vc.v + i * (size_t)dim, dim) * d->vc.scale[i];
        heap_push(h, &nh, (size_t)limit, (mem_cand){d->vc.seq[i], sim});
    }
    qsort(h, nh, sizeof *h, cand_desc);
    *c = h;
    *n = nh;
    return VT_OK;
}

static void sc_clear(sq *d)
{
    for (size_t i = 0; i < d->sc.n; i++)
        free(d->sc.names[i]);
    free(d->sc.names);
    free(d->sc.user);
    memset(&d->sc, 0, sizeof d->sc);
}

static vt_err be_speakers(mem_store *s, const char *user, char ***names, size_t *n)
{
    sq *d = S(s);
    *names = NULL;
    *n = 0;
    int64_t dv = data_version(d);
    if (!d->sc.user || strcmp(d->sc.user, user) || d->sc.gen != d->gen ||
        d->sc.data_version != dv) {
        sc_clear(d);
        if (!(d->sc.user = strdup(user)) || !(d->sc.names = calloc(256, sizeof *d->sc.names))) {
            sc_clear(d);
            return vt_fail(VT_ERR_NOMEM, "search: out of memory");
        }
        d->sc.gen = d->gen;
        d->sc.data_version = dv;
        sqlite3_stmt *st = d->q[Q_SPEAKERS];
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        int rc;
        while (d->sc.n < 256 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            char *nm = col_str(st, 0);
            if (!nm) {
                done(st);
                sc_clear(d);
                return vt_fail(VT_ERR_NOMEM, "search: out of memory");
            }
            d->sc.names[d->sc.n++] = nm;
        }
        done(st);
    }
    *names = d->sc.names;
    *n = d->sc.n;
    return VT_OK;
}

static vt_err be_neighbours(mem_store *s, const char *user, const char *conv, int64_t index,
                            int32_t radius, mem_memory **items, size_t *n)
{
    sq *d = S(s);
    sqlite3_stmt *st = d->q[Q_NEIGHBOURS];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, index - radius);
    sqlite3_bind_int64(st, 4, index + radius);
    sqlite3_bind_int64(st, 5, index);
    return read_rows(d, st, -1, items, n, NULL);
}

/* ---- open / close ---- */

static void be_close(mem_store *s)
{
    sq *d = S(s);
    if (!d)
        return;
    for (int i = 0; i < Q_COUNT_; i++)
        sqlite3_finalize(d->q[i]);
    vc_clear(d);
    sc_clear(d);
    sqlite3_close(d->db);
    free(d);
    s->impl = NULL;
}

static vt_err prepare_all(sq *d)
{
    char get[512], get_seq[512], list[512], neigh[512];
    const char *ver = d->version >= 2 ? "version, embedding" : "1, embedding";
    char cols[256];
    snprintf(cols, sizeof cols, COLS, ver);
    snprintf(get, sizeof get, "SELECT %s FROM memories WHERE user = ?1 AND id = ?2", cols);
    snprintf(get_seq, sizeof get_seq, "SELECT %s FROM memories WHERE user = ?1 AND seq = ?2",
             cols);
    snprintf(list, sizeof list,
             "SELECT %s FROM memories WHERE user = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3", cols);
    snprintf(neigh, sizeof neigh,
             "SELECT %s FROM memories WHERE user = ?1 AND conversation = ?2 AND msg_index "
             "BETWEEN ?3 AND ?4 AND msg_index <> ?5 ORDER BY msg_index",
             cols);
    const char *sql[Q_COUNT_] = {
        [Q_BEGIN] = "BEGIN IMMEDIATE",
        [Q_COMMIT] = "COMMIT",
        [Q_ROLLBACK] = "ROLLBACK",
        [Q_SAVEPOINT] = "SAVEPOINT op",
        [Q_RELEASE] = "RELEASE op",
        [Q_ROLLBACK_TO] = "ROLLBACK TO op",
        [Q_FIND] = d->version >= 2
                       ? "SELECT seq, text, version, conversation, msg_index, updated FROM memories "
                         "WHERE user = ?1 AND id = ?2"
                       : "SELECT seq, text, 1, conversation, msg_index, updated FROM memories "
                         "WHERE user = ?1 AND id = ?2",
        [Q_NEXT_INDEX] = "SELECT coalesce(max(msg_index) + 1, 0) FROM memories "
                         "WHERE user = ?1 AND conversation = ?2",
        [Q_INSERT] = "INSERT INTO memories(user, id, text, kind, conversation, msg_index, "
                     "speaker, event_time, created, updated, embedding, body, ctx) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12)",
        [Q_UPDATE_FULL] = d->version >= 2
                              ? "UPDATE memories SET text = ?1, kind = ?2, conversation = ?3, "
                                "msg_index = ?4, speaker = ?5, event_time = ?6, updated = ?7, "
                                "embedding = coalesce(?8, embedding), body = ?9, ctx = ?10, "
                                "version = version + ?11 WHERE user = ?12 AND seq = ?13"
                              : "UPDATE memories SET text = ?1, kind = ?2, conversation = ?3, "
                                "msg_index = ?4, speaker = ?5, event_time = ?6, updated = ?7, "
                                "embedding = coalesce(?8, embedding), body = ?9, ctx = ?10 "
                                "WHERE user = ?12 AND seq = ?13 AND ?11 IS NOT NULL",
        [Q_UPDATE_TEXT] = d->version >= 2
                              ? "UPDATE memories SET text = ?1, body = ?2, updated = ?3, "
                                "embedding = CASE WHEN ?5 THEN ?4 ELSE embedding END, "
                                "version = version + 1 WHERE user = ?6 AND seq = ?7"
                              : "UPDATE memories SET text = ?1, body = ?2, updated = ?3, "
                                "embedding = CASE WHEN ?5 THEN ?4 ELSE embedding END "
                                "WHERE user = ?6 AND seq = ?7",
        [Q_HIST_ADD] = d->version >= 2 ? "INSERT INTO history(seq, user, version, text, written) "
                                         "VALUES (?1, ?2, ?3, ?4, ?5)"
                                       : NULL,
        [Q_HISTORY] = d->version >= 2 ? "SELECT version, text, written FROM history "
                                        "WHERE user = ?1 AND seq = ?2 ORDER BY version"
                                      : NULL,
        [Q_GET] = get,
        [Q_GET_SEQ] = get_seq,
        [Q_TURN] = "SELECT seq, text, event_time FROM memories WHERE user = ?1 AND "
                   "conversation = ?2 AND msg_index = ?3 ORDER BY seq LIMIT 1",
        [Q_SET_CTX] = "UPDATE memories SET ctx = ?1 WHERE user = ?2 AND seq = ?3 AND ctx <> ?1",
        [Q_DELETE] = "DELETE FROM memories WHERE user = ?1 AND seq = ?2",
        [Q_LIST] = list,
        [Q_COUNT] = "SELECT count(*) FROM memories WHERE user = ?1",
        [Q_FORGET_HIST] = d->version >= 2 ? "DELETE FROM history WHERE user = ?1" : NULL,
        [Q_FORGET_MEM] = "DELETE FROM memories WHERE user = ?1",
        [Q_FORGET_PROFILE] = "DELETE FROM profiles WHERE user = ?1",
        [Q_PROFILE_GET] = "SELECT text FROM profiles WHERE user = ?1",
        [Q_PROFILE_SET] = "INSERT INTO profiles(user, text, updated) VALUES (?1, ?2, ?3) "
                          "ON CONFLICT(user) DO UPDATE SET text = excluded.text, "
                          "updated = excluded.updated WHERE profiles.user = ?1",
        [Q_LEXICAL] = "SELECT m.seq, bm25(memories_fts, 1.0, ?4) AS r FROM memories_fts "
                      "JOIN memories m ON m.seq = memories_fts.rowid "
                      "WHERE memories_fts MATCH ?1 AND m.user = ?2 ORDER BY r LIMIT ?3",
        [Q_VECTORS] = "SELECT seq, embedding FROM memories WHERE user = ?1 AND "
                      "length(embedding) = ?2 ORDER BY seq",
        [Q_NEIGHBOURS] = neigh,
        [Q_DATA_VERSION] = "PRAGMA data_version",
        [Q_SPEAKERS] = "SELECT DISTINCT speaker FROM memories WHERE user = ?1 AND "
                       "speaker IS NOT NULL LIMIT 256",
    };
    for (int i = 0; i < Q_COUNT_; i++) {
        if (!sql[i])
            continue;
        if (sqlite3_prepare_v3(d->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &d->q[i], NULL))
            return db_fail(d, "prepare");
    }
    return VT_OK;
}

static vt_err exec_sql(sq *d, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        vt_err e = db_fail(d, what);
        sqlite3_free(msg);
        return e;
    }
    return VT_OK;
}

/* reads the schema version: 0 for an empty file; -1 (with the error set) for
 * a file that is not a memory store */
static vt_err read_version(sq *d, int32_t *version)
{
    sqlite3_stmt *st;
    *version = 0;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL))
        return db_fail(d, "open");
    int rc = sqlite3_step(st);
    int64_t tables = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (tables < 0)
        return db_fail(d, "open");
    if (tables == 0)
        return VT_OK;
    if (sqlite3_prepare_v2(d->db, "SELECT version FROM schema_version", -1, &st, NULL))
        return vt_fail(VT_ERR_FORMAT, "memory store: the file is an SQLite database but not a "
                                      "memory store (no schema_version table)");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW || *version < 1)
        return vt_fail(VT_ERR_FORMAT, "memory store: bad schema_version");
    return VT_OK;
}

static vt_err migrate(sq *d, int32_t from, int32_t to)
{
    vt_err e = exec_sql(d, "BEGIN IMMEDIATE", "migrate");
    if (e)
        return e;
    /* another process may have migrated it meanwhile */
    if ((e = read_version(d, &from)))
        goto fail;
    for (int32_t v = from + 1; v <= to; v++)
        if ((e = exec_sql(d, migrations[v], "migrate")))
            goto fail;
    if ((e = exec_sql(d, "COMMIT", "migrate")))
        goto fail;
    return VT_OK;
fail:;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vt_last_error());
    sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    return vt_fail(e, "%s", msg);
}

static vt_err make_dirs(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0700) && errno != EEXIST) {
            vt_err e = vt_fail(VT_ERR_IO, "memory store: cannot create %s: %s", p, strerror(errno));
            free(p);
            return e;
        }
        *c = '/';
    }
    free(p);
    return VT_OK;
}

vt_err mem_sqlite_open(mem_store *s, const char *path, const mem_options *opt)
{
    vt_err e;
    if (!*path)
        return vt_fail(VT_ERR_INVALID, "memory store: empty path");
    if (!opt->read_only && (e = make_dirs(path)))
        return e;
    sq *d = calloc(1, sizeof *d);
    if (!d)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    s->impl = d;
    int flags = (opt->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &d->db, flags, NULL) != SQLITE_OK) {
        e = d->db ? vt_fail(VT_ERR_IO, "memory store %s: %s", path, sqlite3_errmsg(d->db))
                  : vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(d->db, 0);
    sqlite3_busy_timeout(d->db, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000);
    if ((e = exec_sql(d, "PRAGMA foreign_keys = ON", "open")))
        goto fail;
    if (!opt->read_only && ((e = exec_sql(d, "PRAGMA journal_mode = WAL", "open")) ||
                            (e = exec_sql(d, "PRAGMA synchronous = FULL", "open"))))
        goto fail;
    int32_t v;
    if ((e = read_version(d, &v)))
        goto fail;
    if (v > SCHEMA_VERSION) {
        e = vt_fail(VT_ERR_UNSUPPORTED,
                    "memory store %s: schema version %d is newer than this build's (%d); "
                    "use a newer vitamin",
                    path, v, SCHEMA_VERSION);
        goto fail;
    }
    int32_t want = v == 0 && opt->schema_version ? opt->schema_version : SCHEMA_VERSION;
    if (v == 0 && opt->read_only) {
        e = vt_fail(VT_ERR_NOT_FOUND, "memory store %s: empty (opened read-only)", path);
        goto fail;
    }
    if (v < want && !opt->read_only && (e = migrate(d, v, want)))
        goto fail;
    if ((e = read_version(d, &d->version)) || (e = prepare_all(d)))
        goto fail;
    s->version = d->version;
    return VT_OK;
fail:
    be_close(s);
    return e;
}

int32_t mem_schema_version(void)
{
    return SCHEMA_VERSION;
}


const mem_backend mem_sqlite_backend = {
    .name = "sqlite",
    .close = be_close,
    .begin = be_begin,
    .commit = be_commit,
    .rollback = be_rollback,
    .put = be_put,
    .get = be_get,
    .get_seq = be_get_seq,
    .update = be_update,
    .history = be_history,
    .del = be_del,
    .list = be_list,
    .count = be_count,
    .forget = be_forget,
    .profile_get = be_profile_get,
    .profile_set = be_profile_set,
    .lexical = be_lexical,
    .vector = be_vector,
    .speakers = be_speakers,
    .neighbours = be_neighbours,
};
