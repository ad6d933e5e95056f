/*
 * sqlite.c - the SQLite backend of the memory store: one file in WAL mode
 * with synchronous=FULL (a committed transaction is on disk before the call
 * returns), foreign keys on, a busy timeout, every statement prepared once
 * at open and every one scoped by user (`WHERE user = ?`).
 *
 * Tables: schema_version (one row), memories (one row per memory; `seq` is
 * the stable order), memories_fts (a contentless FTS5 index, tokenizer
 * "vitamin" of sqlite_fts.c: two columns, a memory's own words and its
 * context, i.e. its neighbouring turns and its date, every token tagged with
 * its user), history (earlier texts) and profiles. `memories.fts_ctx` holds
 * the context text as indexed (NULL: the row is not in the index yet).
 *
 * A write changes rows and queues the rows whose index entry it made stale
 * (the row, and its neighbours, whose context holds its text); the queue is
 * indexed once, in the same transaction, just before it commits, so a batch
 * of imported turns indexes each turn once with both neighbours known.
 * Migrations run in order in one transaction at open (a file whose version
 * is newer than this build's is refused); rows left unindexed (by the
 * migration to schema 2) are indexed at open. Embeddings are stored as
 * little-endian binary16 blobs of the L2-normalised vector.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memory/sqlite_int.h"

#define SCHEMA_VERSION 2

/* schema 1: memories, their full-text index (kept by triggers), profiles */
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

/* the full-text layout since schema 2: a contentless index with per-user
 * tokens, maintained by the backend (each row indexed once per transaction);
 * every row is reindexed at open (fts_ctx NULL) */
#define RELAYOUT_SQL                                                                               \
    "DROP TRIGGER memories_ai;"                                                                    \
    "DROP TRIGGER memories_ad;"                                                                    \
    "DROP TRIGGER memories_au;"                                                                    \
    "DROP TABLE memories_fts;"                                                                     \
    "ALTER TABLE memories DROP COLUMN body;"                                                       \
    "ALTER TABLE memories DROP COLUMN ctx;"                                                        \
    "ALTER TABLE memories ADD COLUMN fts_ctx TEXT;"                                                \
    "CREATE INDEX memories_unindexed ON memories(seq) WHERE fts_ctx IS NULL;"                      \
    "CREATE VIRTUAL TABLE memories_fts USING fts5(body, ctx, content='',"                          \
    " tokenize='vitamin unicode61 remove_diacritics 2');"

/* schema 2: versions and history (an update keeps the old text), and the
 * full-text layout above */
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
    "CREATE INDEX history_user ON history(user);" RELAYOUT_SQL
    "UPDATE schema_version SET version = 2;";

/* An early build of schema 2 kept the trigger-maintained index of schema 1
 * (a `body` column): such a file gets the layout alone. */
static const char fixup_v2[] = RELAYOUT_SQL;

static const char *const migrations[SCHEMA_VERSION + 1] = {NULL, schema_v1, migrate_v2};

const char *mem_sqlite_migration_sql(int32_t version)
{
    return version >= 1 && version <= SCHEMA_VERSION ? migrations[version] : NULL;
}

#define COLS "seq, id, user, text, kind, conversation, msg_index, speaker, event_time, " \
             "created, updated, version, embedding"
/* the same without reading the embedding (its overflow pages) */
#define COLS_NO_EMB "seq, id, user, text, kind, conversation, msg_index, speaker, event_time, " \
                    "created, updated, version, NULL"

vt_err mem_sq_fail(sq *d, const char *what)
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

void mem_sq_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

char *mem_sq_col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

int64_t mem_sq_data_version(sq *d)
{
    sqlite3_stmt *st = d->q[Q_DATA_VERSION];
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    mem_sq_done(st);
    return v;
}

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
    vt_err e = rc == SQLITE_DONE || rc == SQLITE_ROW ? VT_OK : mem_sq_fail(d, what);
    mem_sq_done(st);
    return e;
}

/* ---- the index queue ---- */

static void dirty_clear(sq *d)
{
    for (size_t i = 0; i < d->n_dirty; i++)
        free(d->dirty[i].user);
    d->n_dirty = 0;
}

static vt_err dirty_add(sq *d, const char *user, int64_t seq)
{
    if (d->n_dirty && d->dirty[d->n_dirty - 1].seq == seq &&
        !strcmp(d->dirty[d->n_dirty - 1].user, user))
        return VT_OK;
    if (d->n_dirty == d->cap_dirty) {
        size_t cap = d->cap_dirty ? d->cap_dirty * 2 : 256;
        sq_dirty *nd = realloc(d->dirty, cap * sizeof *nd);
        if (!nd)
            return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        d->dirty = nd;
        d->cap_dirty = cap;
    }
    if (!(d->dirty[d->n_dirty].user = strdup(user)))
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    d->dirty[d->n_dirty++].seq = seq;
    return VT_OK;
}

/* the turn at (conversation, index): seq, text and event time; false if none */
static bool turn_at(sq *d, const char *user, const char *conv, int64_t index, int64_t *seq,
                    char **text)
{
    if (!conv || index < 0)
        return false;
    sqlite3_stmt *st = d->q[Q_TURN];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, index);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        if (seq)
            *seq = sqlite3_column_int64(st, 0);
        if (text)
            *text = mem_sq_col_str(st, 1);
    }
    mem_sq_done(st);
    return found;
}

/* queues the turns beside index (their context holds this one's text) */
static vt_err dirty_neighbours(sq *d, const char *user, const char *conv, int64_t index)
{
    vt_err e = VT_OK;
    int64_t seq;
    for (int64_t k = index - 1; !e && k <= index + 1; k += 2)
        if (turn_at(d, user, conv, k, &seq, NULL))
            e = dirty_add(d, user, seq);
    return e;
}

/* the context of a turn: its neighbours' words and its date */
static vt_err build_ctx(sq *d, const char *user, const char *conv, int64_t index,
                        int64_t event_time, vt_buf *b)
{
    if (conv && index >= 0) {
        for (int64_t k = index - 1; k <= index + 1; k += 2) {
            char *t = NULL;
            if (turn_at(d, user, conv, k, NULL, &t) && t)
                mem_index_text(t, b);
            free(t);
        }
    }
    mem_index_time(event_time, b);
    if (b->oom)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    return VT_OK;
}

/* adds (add: true) or deletes the index entry of a row (contentless FTS5:
 * a delete gives the values that were indexed) */
static vt_err fts_entry(sq *d, bool add, const char *user, int64_t seq, const char *text,
                        const char *ctx)
{
    char tag[MEM_TAG_LEN + 1];
    mem_sqlite_user_tag(user, tag);
    vt_buf body = {0}, cx = {0};
    mem_sqlite_tagged(tag, text, true, &body);
    mem_sqlite_tagged(tag, ctx, false, &cx);
    vt_err e = VT_OK;
    if (body.oom || cx.oom) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    } else {
        int q = add ? Q_FTS_ADD : Q_FTS_DEL;
        sqlite3_stmt *st = d->q[q];
        sqlite3_bind_int64(st, 1, seq);
        sqlite3_bind_text(st, 2, body.p, (int)body.len, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, cx.p, (int)cx.len, SQLITE_STATIC);
        e = exec(d, q, "full-text index");
    }
    free(body.p);
    free(cx.p);
    return e;
}

/* takes a row out of the index (before its text changes or it goes; the
 * statement that changes it sets fts_ctx to NULL) */
static vt_err unindex(sq *d, const char *user, int64_t seq)
{
    sqlite3_stmt *st = d->q[Q_FTS_ROW];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    vt_err e = VT_OK;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 4) != SQLITE_NULL) {
        char *text = mem_sq_col_str(st, 0), *ctx = mem_sq_col_str(st, 4);
        mem_sq_done(st);
        e = text && ctx ? fts_entry(d, false, user, seq, text, ctx)
                        : vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        free(text);
        free(ctx);
        return e;
    }
    mem_sq_done(st);
    return e;
}

/* (re)indexes one queued row with its current neighbours */
static vt_err index_row(sq *d, const char *user, int64_t seq)
{
    sqlite3_stmt *st = d->q[Q_FTS_ROW];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    if (sqlite3_step(st) != SQLITE_ROW) {
        mem_sq_done(st);
        return VT_OK; /* gone meanwhile */
    }
    char *text = mem_sq_col_str(st, 0), *conv = mem_sq_col_str(st, 1);
    int64_t index = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
    int64_t t = sqlite3_column_type(st, 3) == SQLITE_NULL ? MEM_TIME_NONE
                                                          : sqlite3_column_int64(st, 3);
    char *old = mem_sq_col_str(st, 4);
    bool had = sqlite3_column_type(st, 4) != SQLITE_NULL;
    mem_sq_done(st);
    vt_buf ctx = {0};
    vt_err e = VT_OK;
    if (!text || (had && !old)) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if ((e = build_ctx(d, user, conv, index, t, &ctx)))
        goto out;
    const char *cx = ctx.p ? ctx.p : "";
    if (had && !strcmp(old, cx))
        goto out; /* unchanged */
    if (had && (e = fts_entry(d, false, user, seq, text, old)))
        goto out;
    if ((e = fts_entry(d, true, user, seq, text, cx)))
        goto out;
    st = d->q[Q_SET_CTX];
    sqlite3_bind_text(st, 1, cx, (int)ctx.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    e = exec(d, Q_SET_CTX, "full-text index");
out:
    free(text);
    free(conv);
    free(old);
    free(ctx.p);
    return e;
}

static int dirty_cmp(const void *a, const void *b)
{
    const sq_dirty *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* indexes every queued row once */
static vt_err flush(sq *d)
{
    if (!d->n_dirty)
        return VT_OK;
    qsort(d->dirty, d->n_dirty, sizeof *d->dirty, dirty_cmp);
    vt_err e = VT_OK;
    for (size_t i = 0; i < d->n_dirty && !e; i++)
        if (!i || dirty_cmp(&d->dirty[i], &d->dirty[i - 1]))
            e = index_row(d, d->dirty[i].user, d->dirty[i].seq);
    return e;
}

/* a transaction ended: committed, its rows go into the recall caches */
static void tx_done(sq *d, bool committed)
{
    if (committed && d->caches_stale)
        mem_sq_caches_clear(d);
    else if (committed)
        mem_sq_caches_apply(d);
    d->caches_stale = false;
    dirty_clear(d);
}

/* ---- transactions: a write outside a batch is one transaction; inside a
 * batch one savepoint, so a failed write leaves nothing behind ---- */

static vt_err tx_open(mem_store *s)
{
    sq *d = mem_sq(s);
    return exec(d, s->in_batch ? Q_SAVEPOINT : Q_BEGIN, "begin");
}

static vt_err rollback_keep(sq *d, int q, vt_err e)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vt_last_error());
    exec(d, q, "rollback");
    if (q == Q_ROLLBACK_TO)
        exec(d, Q_RELEASE, "release");
    return vt_fail(e, "%s", msg);
}

static vt_err tx_close(mem_store *s, vt_err e)
{
    sq *d = mem_sq(s);
    if (s->in_batch)
        return e ? rollback_keep(d, Q_ROLLBACK_TO, e) : exec(d, Q_RELEASE, "release");
    if (!e)
        e = flush(d);
    if (!e)
        e = exec(d, Q_COMMIT, "commit");
    if (e) {
        tx_done(d, false);
        return rollback_keep(d, Q_ROLLBACK, e);
    }
    tx_done(d, true);
    return VT_OK;
}

static vt_err be_begin(mem_store *s)
{
    return exec(mem_sq(s), Q_BEGIN, "begin");
}

static vt_err be_commit(mem_store *s)
{
    sq *d = mem_sq(s);
    vt_err e = flush(d);
    if (!e)
        e = exec(d, Q_COMMIT, "commit");
    tx_done(d, !e);
    if (e)
        rollback_keep(d, Q_ROLLBACK, e);
    return e;
}

static vt_err be_rollback(mem_store *s)
{
    sq *d = mem_sq(s);
    tx_done(d, false);
    return exec(d, Q_ROLLBACK, "rollback");
}

/* ---- rows ---- */

static vt_err read_row(sqlite3_stmt *st, mem_memory *m, bool embedding)
{
    memset(m, 0, sizeof *m);
    m->seq = sqlite3_column_int64(st, 0);
    m->id = mem_sq_col_str(st, 1);
    m->user = mem_sq_col_str(st, 2);
    m->text = mem_sq_col_str(st, 3);
    m->kind = (mem_kind)sqlite3_column_int(st, 4);
    m->conversation = mem_sq_col_str(st, 5);
    m->message_index = sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 6);
    m->speaker = mem_sq_col_str(st, 7);
    m->event_time = sqlite3_column_type(st, 8) == SQLITE_NULL ? MEM_TIME_NONE
                                                              : sqlite3_column_int64(st, 8);
    m->created = sqlite3_column_int64(st, 9);
    m->updated = sqlite3_column_int64(st, 10);
    m->version = sqlite3_column_int(st, 11);
    if (!m->id || !m->user || !m->text ||
        (sqlite3_column_type(st, 5) != SQLITE_NULL && !m->conversation) ||
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

vt_err mem_sq_read_rows(sq *d, sqlite3_stmt *st, int32_t max, mem_memory **items, size_t *n,
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
        e = mem_sq_fail(d, "read");
    mem_sq_done(st);
    if (e) {
        mem_memories_free(*items, *n);
        *items = NULL;
        *n = 0;
    }
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

/* looks up (user, id): seq, text, version, conversation, index, updated; 0 if none */
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
            *text = mem_sq_col_str(st, 1);
        if (version)
            *version = sqlite3_column_int(st, 2);
        if (conv)
            *conv = mem_sq_col_str(st, 3);
        if (index)
            *index = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
        if (updated)
            *updated = sqlite3_column_int64(st, 5);
    }
    mem_sq_done(st);
    return seq;
}

static vt_err add_history(sq *d, const char *user, int64_t seq, int32_t version, const char *text,
                          int64_t written)
{
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
    char *old_text = NULL, *old_conv = NULL;
    int32_t version = 1;
    int64_t old_index = -1, old_written = 0, now = mem_time_now();
    int64_t seq = find(d, user, in->id, &old_text, &version, &old_conv, &old_index, &old_written);
    vt_err e = VT_OK;
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
            mem_sq_done(st);
        }
    }
    if (!in->conversation)
        index = -1;
    if (seq) {
        /* an update: out of the index first (it held the old text), the old
         * text to the history when it changes */
        bool changed = strcmp(old_text ? old_text : "", in->text) != 0;
        if ((e = unindex(d, user, seq)))
            goto out;
        if (changed && (e = add_history(d, user, seq, version, old_text ? old_text : "",
                                        old_written)))
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
        sqlite3_bind_int(st, 9, changed);
        sqlite3_bind_text(st, 10, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 11, seq);
        if (in->embedding && !blob) {
            mem_sq_done(st);
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
            goto out;
        }
        if ((e = exec(d, Q_UPDATE_FULL, "update")))
            goto out;
        if (old_conv && old_index >= 0 && (e = dirty_neighbours(d, user, old_conv, old_index)))
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
        if (in->embedding && !blob) {
            mem_sq_done(st);
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
            goto out;
        }
        if ((e = exec(d, Q_INSERT, "insert")))
            goto out;
        seq = sqlite3_last_insert_rowid(d->db);
        if (created)
            *created = true;
    }
    if ((e = dirty_add(d, user, seq)))
        goto out;
    if (in->conversation && index >= 0)
        e = dirty_neighbours(d, user, in->conversation, index);
out:
    free(old_text);
    free(old_conv);
    free(blob);
    return e;
}

static vt_err be_put(mem_store *s, const char *user, const mem_input *in, int mode, bool *created)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, put_locked(mem_sq(s), user, in, mode, created));
}

static vt_err get_one(sq *d, int q, const char *user, const char *id, int64_t seq,
                      bool embedding, mem_memory *out)
{
    sqlite3_stmt *st = d->q[q];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    if (id)
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 2, seq);
    int rc = sqlite3_step(st);
    vt_err e = rc == SQLITE_ROW    ? read_row(st, out, embedding)
               : rc == SQLITE_DONE ? (id ? vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id)
                                         : vt_fail(VT_ERR_NOT_FOUND, "no memory #%lld for this user",
                                                   (long long)seq))
                                   : mem_sq_fail(d, "get");
    mem_sq_done(st);
    return e;
}

static vt_err be_get(mem_store *s, const char *user, const char *id, bool embedding,
                     mem_memory *out)
{
    return get_one(mem_sq(s), Q_GET, user, id, 0, embedding, out);
}

static vt_err be_get_seq(mem_store *s, const char *user, int64_t seq, mem_memory *out)
{
    return get_one(mem_sq(s), Q_GET_SEQ, user, NULL, seq, false, out);
}

static vt_err update_locked(sq *d, const char *user, const char *id, const char *text,
                            const float *emb, int32_t n_embd)
{
    char *old = NULL, *conv = NULL;
    int32_t version = 1;
    uint8_t *blob = NULL;
    int64_t written = 0, index = -1;
    int64_t seq = find(d, user, id, &old, &version, &conv, &index, &written);
    vt_err e = VT_OK;
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    if ((e = unindex(d, user, seq)) ||
        (e = add_history(d, user, seq, version, old ? old : "", written)))
        goto out;
    sqlite3_stmt *st = d->q[Q_UPDATE_TEXT];
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, mem_time_now());
    bind_embedding(st, 3, emb, n_embd, &blob);
    sqlite3_bind_int(st, 4, emb != NULL);
    sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, seq);
    if (emb && !blob) {
        mem_sq_done(st);
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if ((e = exec(d, Q_UPDATE_TEXT, "update")) || (e = dirty_add(d, user, seq)))
        goto out;
    if (conv && index >= 0)
        e = dirty_neighbours(d, user, conv, index);
out:
    free(old);
    free(conv);
    free(blob);
    return e;
}

static vt_err be_update(mem_store *s, const char *user, const char *id, const char *text,
                        const float *emb, int32_t n_embd)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, update_locked(mem_sq(s), user, id, text, emb, n_embd));
}

static vt_err be_history(mem_store *s, const char *user, const char *id, mem_version **v,
                         size_t *n)
{
    sq *d = mem_sq(s);
    *v = NULL;
    *n = 0;
    int64_t seq = find(d, user, id, NULL, NULL, NULL, NULL, NULL);
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
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
        x->text = mem_sq_col_str(st, 1);
        x->written = sqlite3_column_int64(st, 2);
        (*n)++;
        if (!x->text) {
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
            break;
        }
    }
    if (!e && rc != SQLITE_DONE)
        e = mem_sq_fail(d, "history");
    mem_sq_done(st);
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
    vt_err e = unindex(d, user, seq);
    if (!e) {
        sqlite3_stmt *st = d->q[Q_DELETE];
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, seq);
        e = exec(d, Q_DELETE, "delete");
    }
    if (!e)
        e = dirty_add(d, user, seq); /* out of the caches */
    if (!e && conv && index >= 0)
        e = dirty_neighbours(d, user, conv, index);
    free(conv);
    return e;
}

static vt_err be_del(mem_store *s, const char *user, const char *id)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, del_locked(mem_sq(s), user, id));
}

static vt_err be_list(mem_store *s, const char *user, int64_t after, int32_t limit,
                      mem_memory **items, size_t *n, int64_t *next)
{
    sq *d = mem_sq(s);
    sqlite3_stmt *st = d->q[Q_LIST];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit + 1);
    bool more;
    vt_err e = mem_sq_read_rows(d, st, limit, items, n, &more);
    *next = !e && more && *n ? (*items)[*n - 1].seq : 0;
    return e;
}

static vt_err be_count(mem_store *s, const char *user, int64_t *n)
{
    sq *d = mem_sq(s);
    sqlite3_stmt *st = d->q[Q_COUNT];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    vt_err e = rc == SQLITE_ROW ? VT_OK : mem_sq_fail(d, "count");
    mem_sq_done(st);
    return e;
}

static vt_err forget_locked(sq *d, const char *user, int64_t *n)
{
    /* every indexed row of the user out of the index, then the rows */
    sqlite3_stmt *st = d->q[Q_USER_INDEXED];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    vt_err e = VT_OK;
    int rc;
    while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        const char *ctx = (const char *)sqlite3_column_text(st, 2);
        if (!text || !ctx)
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        else
            e = fts_entry(d, false, user, sqlite3_column_int64(st, 0), text, ctx);
    }
    mem_sq_done(st);
    if (e)
        return e;
    d->caches_stale = true;
    sqlite3_bind_text(d->q[Q_FORGET_HIST], 1, user, -1, SQLITE_STATIC);
    if ((e = exec(d, Q_FORGET_HIST, "forget")))
        return e;
    sqlite3_bind_text(d->q[Q_FORGET_MEM], 1, user, -1, SQLITE_STATIC);
    if ((e = exec(d, Q_FORGET_MEM, "forget")))
        return e;
    *n = sqlite3_changes64(d->db);
    sqlite3_bind_text(d->q[Q_FORGET_PROFILE], 1, user, -1, SQLITE_STATIC);
    return exec(d, Q_FORGET_PROFILE, "forget");
}

static vt_err be_forget(mem_store *s, const char *user, int64_t *n)
{
    vt_err e = tx_open(s);
    if (e)
        return e;
    return tx_close(s, forget_locked(mem_sq(s), user, n));
}

static vt_err be_profile_get(mem_store *s, const char *user, char **text)
{
    sq *d = mem_sq(s);
    sqlite3_stmt *st = d->q[Q_PROFILE_GET];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    vt_err e = VT_OK;
    if (rc == SQLITE_ROW)
        *text = mem_sq_col_str(st, 0);
    else if (rc == SQLITE_DONE)
        *text = strdup("");
    else
        e = mem_sq_fail(d, "profile");
    mem_sq_done(st);
    if (!e && !*text)
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    return e;
}

static vt_err be_profile_set(mem_store *s, const char *user, const char *text)
{
    sq *d = mem_sq(s);
    vt_err e = tx_open(s);
    if (e)
        return e;
    sqlite3_stmt *st = d->q[Q_PROFILE_SET];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, mem_time_now());
    return tx_close(s, exec(d, Q_PROFILE_SET, "profile"));
}

/* ---- open / close ---- */

static void be_close(mem_store *s)
{
    sq *d = mem_sq(s);
    if (!d)
        return;
    for (int i = 0; i < Q_COUNT_; i++)
        sqlite3_finalize(d->q[i]);
    mem_sq_caches_clear(d);
    dirty_clear(d);
    free(d->dirty);
    sqlite3_close(d->db);
    free(d);
    s->impl = NULL;
}

static vt_err prepare_all(sq *d)
{
    const char *sql[Q_COUNT_] = {
        [Q_BEGIN] = "BEGIN IMMEDIATE",
        [Q_COMMIT] = "COMMIT",
        [Q_ROLLBACK] = "ROLLBACK",
        [Q_SAVEPOINT] = "SAVEPOINT op",
        [Q_RELEASE] = "RELEASE op",
        [Q_ROLLBACK_TO] = "ROLLBACK TO op",
        [Q_FIND] = "SELECT seq, text, version, conversation, msg_index, updated FROM memories "
                   "WHERE user = ?1 AND id = ?2",
        [Q_NEXT_INDEX] = "SELECT coalesce(max(msg_index) + 1, 0) FROM memories "
                         "WHERE user = ?1 AND conversation = ?2",
        [Q_INSERT] = "INSERT INTO memories(user, id, text, kind, conversation, msg_index, "
                     "speaker, event_time, created, updated, embedding) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
        [Q_UPDATE_FULL] = "UPDATE memories SET text = ?1, kind = ?2, conversation = ?3, "
                          "msg_index = ?4, speaker = ?5, event_time = ?6, updated = ?7, "
                          "embedding = coalesce(?8, embedding), version = version + ?9, "
                          "fts_ctx = NULL WHERE user = ?10 AND seq = ?11",
        [Q_UPDATE_TEXT] = "UPDATE memories SET text = ?1, updated = ?2, "
                          "embedding = CASE WHEN ?4 THEN ?3 ELSE embedding END, "
                          "version = version + 1, fts_ctx = NULL WHERE user = ?5 AND seq = ?6",
        [Q_HIST_ADD] = "INSERT INTO history(seq, user, version, text, written) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)",
        [Q_HISTORY] = "SELECT version, text, written FROM history "
                      "WHERE user = ?1 AND seq = ?2 ORDER BY version",
        [Q_GET] = "SELECT " COLS " FROM memories WHERE user = ?1 AND id = ?2",
        [Q_GET_SEQ] = "SELECT " COLS_NO_EMB " FROM memories WHERE user = ?1 AND seq = ?2",
        [Q_TURN] = "SELECT seq, text FROM memories WHERE user = ?1 AND "
                   "conversation = ?2 AND msg_index = ?3 ORDER BY seq LIMIT 1",
        [Q_DELETE] = "DELETE FROM memories WHERE user = ?1 AND seq = ?2",
        [Q_LIST] = "SELECT " COLS_NO_EMB " FROM memories WHERE user = ?1 AND seq > ?2 "
                   "ORDER BY seq LIMIT ?3",
        [Q_COUNT] = "SELECT count(*) FROM memories WHERE user = ?1",
        [Q_FORGET_HIST] = "DELETE FROM history WHERE user = ?1",
        [Q_FORGET_MEM] = "DELETE FROM memories WHERE user = ?1",
        [Q_FORGET_PROFILE] = "DELETE FROM profiles WHERE user = ?1",
        [Q_PROFILE_GET] = "SELECT text FROM profiles WHERE user = ?1",
        [Q_PROFILE_SET] = "INSERT INTO profiles(user, text, updated) VALUES (?1, ?2, ?3) "
                          "ON CONFLICT(user) DO UPDATE SET text = excluded.text, "
                          "updated = excluded.updated WHERE profiles.user = ?1",
        /* ranked inside the index first (the tokens are the user's, so the
         * matches are, but for tag collisions: hence twice the rows), then
         * joined on the user */
        [Q_LEXICAL] = "SELECT m.seq, f.r FROM (SELECT rowid, bm25(memories_fts, 1.0, ?4) AS r "
                      "FROM memories_fts WHERE memories_fts MATCH ?1 ORDER BY r LIMIT ?3 * 2) f "
                      "JOIN memories m ON m.seq = f.rowid WHERE m.user = ?2 ORDER BY f.r LIMIT ?3",
        [Q_VECTORS] = "SELECT seq, embedding FROM memories WHERE user = ?1 AND "
                      "length(embedding) = ?2 ORDER BY seq",
        [Q_NEIGHBOURS] = "SELECT " COLS_NO_EMB " FROM memories WHERE user = ?1 AND conversation = ?2 "
                         "AND msg_index BETWEEN ?3 AND ?4 AND msg_index <> ?5 ORDER BY msg_index",
        [Q_DATA_VERSION] = "PRAGMA data_version",
        [Q_SPEAKERS] = "SELECT DISTINCT speaker FROM memories WHERE user = ?1 AND "
                       "speaker IS NOT NULL LIMIT 256",
        [Q_FTS_ROW] = "SELECT text, conversation, msg_index, event_time, fts_ctx FROM memories "
                      "WHERE user = ?1 AND seq = ?2",
        [Q_FTS_ADD] = "INSERT INTO memories_fts(rowid, body, ctx) VALUES (?1, ?2, ?3)",
        [Q_FTS_DEL] = "INSERT INTO memories_fts(memories_fts, rowid, body, ctx) "
                      "VALUES ('delete', ?1, ?2, ?3)",
        [Q_SET_CTX] = "UPDATE memories SET fts_ctx = ?1 WHERE user = ?2 AND seq = ?3",
        [Q_USER_INDEXED] = "SELECT seq, text, fts_ctx FROM memories WHERE user = ?1 AND "
                           "fts_ctx IS NOT NULL",
        [Q_UNINDEXED] = "SELECT user, seq FROM memories WHERE fts_ctx IS NULL",
        [Q_CACHE_ROW] = "SELECT embedding, speaker FROM memories WHERE user = ?1 AND seq = ?2",
    };
    for (int i = 0; i < Q_COUNT_; i++)
        if (sqlite3_prepare_v3(d->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &d->q[i], NULL))
            return mem_sq_fail(d, "prepare");
    return VT_OK;
}

static vt_err exec_sql(sq *d, const char *sql, const char *what)
{
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return mem_sq_fail(d, what);
    return VT_OK;
}

/* reads the schema version: 0 for an empty file */
static vt_err read_version(sq *d, int32_t *version)
{
    sqlite3_stmt *st;
    *version = 0;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL))
        return mem_sq_fail(d, "open");
    int rc = sqlite3_step(st);
    int64_t tables = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (tables < 0)
        return mem_sq_fail(d, "open");
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

static bool has_body_column(sq *d)
{
    sqlite3_stmt *st;
    bool has = false;
    if (sqlite3_prepare_v2(d->db, "SELECT 1 FROM pragma_table_info('memories') WHERE name = 'body'",
                           -1, &st, NULL) == SQLITE_OK)
        has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return has;
}

static vt_err migrate(sq *d, int32_t to)
{
    vt_err e = exec_sql(d, "BEGIN IMMEDIATE", "migrate");
    if (e)
        return e;
    int32_t from;
    /* another process may have migrated it meanwhile */
    if ((e = read_version(d, &from)))
        goto fail;
    for (int32_t v = from + 1; v <= to; v++)
        if ((e = exec_sql(d, migrations[v], "migrate")))
            goto fail;
    if (to == 2 && has_body_column(d) && (e = exec_sql(d, fixup_v2, "migrate")))
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

/* indexes the rows not in the full-text index (after the migration to 2) */
static vt_err heal(sq *d)
{
    sqlite3_stmt *st = d->q[Q_UNINDEXED];
    int rc = sqlite3_step(st);
    mem_sq_done(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? VT_OK : mem_sq_fail(d, "open");
    vt_err e = exec(d, Q_BEGIN, "reindex");
    if (e)
        return e;
    while (!e && sqlite3_step(st) == SQLITE_ROW) {
        const char *user = (const char *)sqlite3_column_text(st, 0);
        e = user ? dirty_add(d, user, sqlite3_column_int64(st, 1))
                 : vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    }
    mem_sq_done(st);
    if (!e)
        e = flush(d);
    dirty_clear(d);
    if (!e)
        e = exec(d, Q_COMMIT, "reindex");
    if (e)
        rollback_keep(d, Q_ROLLBACK, e);
    return e;
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
    if (opt->schema_version && opt->schema_version != SCHEMA_VERSION)
        return vt_fail(VT_ERR_UNSUPPORTED, "memory store: the SQLite backend writes only schema "
                                           "version %d", SCHEMA_VERSION);
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
    if ((e = mem_sqlite_register_tokenizer(d->db)) ||
        (e = exec_sql(d, "PRAGMA foreign_keys = ON", "open")) ||
        (e = exec_sql(d, "PRAGMA cache_size = -65536", "open")))
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
    if (v < SCHEMA_VERSION && opt->read_only) {
        e = vt_fail(v ? VT_ERR_UNSUPPORTED : VT_ERR_NOT_FOUND,
                    v ? "memory store %s: schema version %d needs a migration (open it for "
                        "writing once)"
                      : "memory store %s: empty (opened read-only)",
                    path, v);
        goto fail;
    }
    if ((v < SCHEMA_VERSION || (!opt->read_only && has_body_column(d))) &&
        (e = migrate(d, SCHEMA_VERSION)))
        goto fail;
    if ((e = read_version(d, &d->version)) || (e = prepare_all(d)) ||
        (!opt->read_only && (e = heal(d))))
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
    .lexical = mem_sq_lexical,
    .vector = mem_sq_vector,
    .speakers = mem_sq_speakers,
    .neighbours = mem_sq_neighbours,
};
