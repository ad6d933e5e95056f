/*
 * postgres.c - the PostgreSQL backend of the memory store, so several
 * vitamin processes share one memory. The URI (postgresql://user@host:port/db
 * ?...) goes to libpq as it is; every statement is prepared once per
 * connection and takes its values as parameters (no SQL is ever built from a
 * caller's text), and every one is scoped by user (`WHERE user_id = $1`).
 *
 * Tables (prefixed vt_, so the store can share a database): vt_mem_schema
 * (the schema version, one row; the same numbering and migrations as the
 * SQLite backend: 1 memories and profiles, 2 versions and history),
 * vt_memories (one row per memory, `seq` a bigserial for the stable order,
 * UNIQUE (user_id, id); `body` and `ctx` the index text as the SQLite backend
 * makes it, and `tsv` a generated tsvector over them, body weighted A and
 * ctx B, with a GIN index), vt_mem_history, vt_mem_profiles and vt_mem_users
 * (one row per user: a generation bumped by every write of that user). The
 * schema is created and migrated in one transaction holding an advisory
 * lock, so two processes opening a new database at once do not collide.
 *
 * Every write is one transaction (a batch: one for all its writes) that
 * first upserts the user's vt_mem_users row: that row lock serialises the
 * writes of one user across processes (no lost update, no duplicate id, seq
 * in commit order), and its generation, taken from a global sequence, stamps
 * the rows the write touches (`rev`), which lets every process's search
 * caches see what changed (postgres_recall.c). Embeddings are stored as
 * little-endian binary16, like the SQLite backend. This file: schema,
 * statements, transactions, writes and reads, open; postgres_recall.c:
 * search; postgres_int.h: what they share.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/postgres_int.h"

#define SCHEMA_VERSION 2

/* schema 1: memories, their full-text index, profiles, the user rows */
static const char schema_v1[] =
    "CREATE SEQUENCE vt_mem_gen;"
    "CREATE TABLE vt_mem_schema(version integer NOT NULL);"
    "CREATE TABLE vt_mem_users(user_id text PRIMARY KEY, gen bigint NOT NULL,"
    " delgen bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE vt_memories("
    " seq bigserial PRIMARY KEY,"
    " user_id text NOT NULL,"
    " id text NOT NULL,"
    " text text NOT NULL,"
    " kind smallint NOT NULL CHECK (kind BETWEEN 0 AND 3),"
    " conversation text,"
    " msg_index bigint,"
    " speaker text,"
    " event_time bigint,"
    " created bigint NOT NULL,"
    " updated bigint NOT NULL,"
    " embedding bytea,"
    " body text NOT NULL,"
    " ctx text NOT NULL DEFAULT '',"
    " rev bigint NOT NULL DEFAULT 0,"
    " tsv tsvector GENERATED ALWAYS AS ("
    "  setweight(to_tsvector('english'::regconfig, body), 'A') ||"
    "  setweight(to_tsvector('english'::regconfig, ctx), 'B')) STORED,"
    " UNIQUE (user_id, id));"
    "CREATE INDEX vt_memories_conv ON vt_memories(user_id, conversation, msg_index);"
    "CREATE INDEX vt_memories_rev ON vt_memories(user_id, rev);"
    "CREATE INDEX vt_memories_tsv ON vt_memories USING gin(tsv) WITH (fastupdate = off);"
    "CREATE TABLE vt_mem_profiles(user_id text PRIMARY KEY, text text NOT NULL,"
    " updated bigint NOT NULL);"
    "INSERT INTO vt_mem_schema VALUES (1);";

/* schema 2: versions and history (an update keeps the old text) */
static const char migrate_v2[] =
    "ALTER TABLE vt_memories ADD COLUMN version integer NOT NULL DEFAULT 1;"
    "CREATE TABLE vt_mem_history("
    " hid bigserial PRIMARY KEY,"
    " seq bigint NOT NULL REFERENCES vt_memories(seq) ON DELETE CASCADE,"
    " user_id text NOT NULL,"
    " version integer NOT NULL,"
    " text text NOT NULL,"
    " written bigint NOT NULL);"
    "CREATE INDEX vt_mem_history_seq ON vt_mem_history(seq);"
    "CREATE INDEX vt_mem_history_user ON vt_mem_history(user_id);"
    "UPDATE vt_mem_schema SET version = 2;";

static const char *const migrations[SCHEMA_VERSION + 1] = {NULL, schema_v1, migrate_v2};

#define COLS "seq, id, user_id, text, kind, conversation, msg_index, speaker, event_time, " \
             "created, updated, %s"

/* ---- statements ---- */

/* the error of a failed result (r may be NULL) as a vt_err: connection and
 * resource trouble VT_ERR_IO, bad data VT_ERR_INVALID, a missing or odd
 * table VT_ERR_FORMAT */
vt_err mem_pg_fail(mem_pg *d, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(d->conn);
    if (!msg || !*msg)
        msg = "unknown error";
    int len = (int)strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    vt_err e = VT_ERR_IO;
    if (!r && PQstatus(d->conn) == CONNECTION_OK)
        e = VT_ERR_NOMEM;
    if (state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2)))
        e = VT_ERR_INVALID;
    else if (state && (!strncmp(state, "42", 2)))
        e = VT_ERR_FORMAT;
    return vt_fail(e, "memory store (postgresql): %s: %.*s", what, len > 400 ? 400 : len, msg);
}

/* runs prepared statement q; NULL (with the error set) unless it succeeded.
 * binary: results in binary format. The caller PQclear()s the result. */
PGresult *mem_pg_run(mem_pg *d, int q, const mem_pg_params *p, bool binary, const char *what,
                     vt_err *err)
{
    char name[16];
    snprintf(name, sizeof name, "vt%d", q);
    if (q != Q_LOCK)
        d->op_wrote |= q == Q_INSERT || q == Q_UPDATE_FULL || q == Q_UPDATE_TEXT ||
                       q == Q_HIST_ADD || q == Q_SET_CTX || q == Q_DELETE || q == Q_FORGET_HIST ||
                       q == Q_FORGET_MEM || q == Q_FORGET_PROFILE || q == Q_FORGET_USER ||
                       q == Q_PROFILE_SET;
    PGresult *r = PQexecPrepared(d->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, binary);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *err = VT_OK;
        return r;
    }
    *err = mem_pg_fail(d, r, what);
    PQclear(r);
    return NULL;
}

/* runs a statement that returns nothing needed */
vt_err mem_pg_run0(mem_pg *d, int q, const mem_pg_params *p, const char *what)
{
    vt_err e;
    PQclear(mem_pg_run(d, q, p, false, what, &e));
    return e;
}

/* runs fixed SQL (no parameters, possibly several statements) */
vt_err mem_pg_exec(mem_pg *d, const char *sql, const char *what)
{
    PGresult *r = PQexec(d->conn, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    vt_err e = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? VT_OK : mem_pg_fail(d, r, what);
    PQclear(r);
    return e;
}

int64_t mem_pg_int(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

char *mem_pg_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* ---- transactions. A write outside a batch is one transaction that
 * begins by locking its user's row (see the top of the file). A batch is one
 * transaction that locks each user's row once, at its first write of that
 * user (its rows all carry that generation; a delete takes a new one), and
 * uses no savepoints (thousands of subtransactions would slow every
 * snapshot): a write refused before it changes anything (an id that exists,
 * one that does not) leaves the batch as it was; one that fails after
 * changing a row, or whose statement failed, spoils the batch, and every
 * later call in it fails until mem_rollback (mem_commit rolls it back). ---- */

static void unlock_all(mem_pg *d)
{
    for (int i = 0; i < d->n_locked; i++)
        free(d->locked[i].user);
    d->n_locked = 0;
    d->batch_failed = false;
}

static vt_err tx_open(mem_store *s, const char *user, bool deletes)
{
    mem_pg *d = P(s);
    vt_err e;
    d->op_wrote = false;
    if (d->read_only)
        return vt_fail(VT_ERR_INVALID, "memory store (postgresql): opened read-only");
    int at = -1;
    if (s->in_batch) {
        if (d->batch_failed)
            return vt_fail(VT_ERR_IO,
                           "memory store (postgresql): an earlier write of this batch failed "
                           "(%s); roll the batch back",
                           d->batch_error);
        for (int i = 0; i < d->n_locked && at < 0; i++)
            if (!strcmp(d->locked[i].user, user))
                at = i;
        if (at >= 0 && !deletes) {
            d->gen = d->locked[at].gen;
            return VT_OK;
        }
    } else if ((e = mem_pg_exec(d, "BEGIN", "begin"))) {
        return e;
    }
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, deletes ? "t" : "f");
    PGresult *r = mem_pg_run(d, Q_LOCK, &p, false, "lock", &e);
    if (r) {
        d->gen = PQntuples(r) == 1 ? mem_pg_int(r, 0, 0) : 0;
        PQclear(r);
        if (!s->in_batch)
            return VT_OK;
        if (at < 0 && d->n_locked < (int)VT_ARRAY_LEN(d->locked) &&
            (d->locked[d->n_locked].user = strdup(user)))
            at = d->n_locked++;
        if (at >= 0)
            d->locked[at].gen = d->gen;
        return VT_OK;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vt_last_error());
    if (s->in_batch) {
        d->batch_failed = true;
        snprintf(d->batch_error, sizeof d->batch_error, "%s", msg);
    } else {
        mem_pg_exec(d, "ROLLBACK", "rollback");
    }
    return vt_fail(e, "%s", msg);
}

static vt_err tx_close(mem_store *s, vt_err e)
{
    mem_pg *d = P(s);
    if (s->in_batch) {
        d->vc.resync = d->bm_resync = true;
        d->sc.stale = true;
        if (e && (d->op_wrote || PQtransactionStatus(d->conn) != PQTRANS_INTRANS)) {
            d->batch_failed = true;
            snprintf(d->batch_error, sizeof d->batch_error, "%s", vt_last_error());
        }
        return e;
    }
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", vt_last_error());
        mem_pg_exec(d, "ROLLBACK", "rollback");
        d->vc.stale = d->sc.stale = d->bm_stale = true;
        return vt_fail(e, "%s", msg);
    }
    vt_err c = mem_pg_exec(d, "COMMIT", "commit");
    if (c) {
        mem_pg_exec(d, "ROLLBACK", "rollback");
        d->vc.stale = d->sc.stale = d->bm_stale = true;
    }
    return c;
}

/* a connection lost outside a batch (the server restarted) is opened again
 * before the next operation; prepared statements are made again on demand */
static vt_err prepare_all(mem_pg *d);
static vt_err session_setup(mem_pg *d);

vt_err mem_pg_alive(mem_store *s)
{
    mem_pg *d = P(s);
    if (PQstatus(d->conn) == CONNECTION_OK)
        return VT_OK;
    if (s->in_batch)
        return vt_fail(VT_ERR_IO, "memory store (postgresql): the connection was lost in a batch");
    PQreset(d->conn);
    if (PQstatus(d->conn) != CONNECTION_OK)
        return mem_pg_fail(d, NULL, "reconnect");
    memset(d->prepared, 0, sizeof d->prepared);
    d->vc.stale = d->sc.stale = d->bm_stale = true;
    vt_err e = session_setup(d);
    return e ? e : prepare_all(d);
}

static vt_err be_begin(mem_store *s)
{
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    if (P(s)->read_only)
        return vt_fail(VT_ERR_INVALID, "memory store (postgresql): opened read-only");
    unlock_all(P(s));
    return mem_pg_exec(P(s), "BEGIN", "begin");
}

static vt_err be_commit(mem_store *s)
{
    mem_pg *d = P(s);
    vt_err e;
    if (d->batch_failed)
        e = vt_fail(VT_ERR_IO, "memory store (postgresql): the batch was rolled back: an "
                               "earlier write failed (%s)",
                    d->batch_error);
    else
        e = mem_pg_exec(d, "COMMIT", "commit");
    if (e) {
        mem_pg_exec(d, "ROLLBACK", "rollback");
        d->vc.stale = d->sc.stale = d->bm_stale = true;
    }
    unlock_all(d);
    return e;
}

static vt_err be_rollback(mem_store *s)
{
    mem_pg *d = P(s);
    d->vc.stale = d->sc.stale = d->bm_stale = true;
    unlock_all(d);
    return mem_pg_exec(d, "ROLLBACK", "rollback");
}

/* ---- rows ---- */

/* reads row `row` of a text-format result of COLS into m */
static vt_err read_row(const PGresult *r, int row, mem_memory *m, bool embedding)
{
    memset(m, 0, sizeof *m);
    m->seq = mem_pg_int(r, row, 0);
    m->id = mem_pg_str(r, row, 1);
    m->user = mem_pg_str(r, row, 2);
    m->text = mem_pg_str(r, row, 3);
    m->kind = (mem_kind)mem_pg_int(r, row, 4);
    m->conversation = mem_pg_str(r, row, 5);
    m->message_index = PQgetisnull(r, row, 6) ? -1 : mem_pg_int(r, row, 6);
    m->speaker = mem_pg_str(r, row, 7);
    m->event_time = PQgetisnull(r, row, 8) ? MEM_TIME_NONE : mem_pg_int(r, row, 8);
    m->created = mem_pg_int(r, row, 9);
    m->updated = mem_pg_int(r, row, 10);
    m->version = (int32_t)mem_pg_int(r, row, 11);
    if (!m->id || !m->user || !m->text || (!PQgetisnull(r, row, 5) && !m->conversation) ||
        (!PQgetisnull(r, row, 7) && !m->speaker))
        goto oom;
    if ((unsigned)m->kind >= MEM_KIND_COUNT)
        m->kind = MEM_KIND_FACT;
    if (embedding && PQnfields(r) > 12 && !PQgetisnull(r, row, 12)) {
        size_t nb = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 12), &nb);
        if (!b)
            goto oom;
        if (nb >= 2 && nb % 2 == 0 && nb / 2 <= MEM_EMBD_MAX) {
            m->n_embd = (int32_t)(nb / 2);
            m->embedding = malloc(sizeof(float) * (size_t)m->n_embd);
            for (int32_t i = 0; m->embedding && i < m->n_embd; i++)
                m->embedding[i] = vt_fp16_to_fp32((vt_fp16)(b[2 * i] | b[2 * i + 1] << 8));
        }
        PQfreemem(b);
        if (m->n_embd && !m->embedding)
            goto oom;
    }
    return VT_OK;
oom:
    mem_memory_clear(m);
    return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
}

/* all rows of a result into a new array; at most max (-1: all), *more when
 * there were more */
vt_err mem_pg_read_rows(const PGresult *r, int max, mem_memory **items, size_t *n, bool *more)
{
    int rows = PQntuples(r), take = max >= 0 && rows > max ? max : rows;
    *items = NULL;
    *n = 0;
    if (more)
        *more = rows > take;
    if (!take)
        return VT_OK;
    mem_memory *a = calloc((size_t)take, sizeof *a);
    if (!a)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    for (int i = 0; i < take; i++) {
        vt_err e = read_row(r, i, &a[i], false);
        if (e) {
            mem_memories_free(a, (size_t)i);
            return e;
        }
    }
    *items = a;
    *n = (size_t)take;
    return VT_OK;
}

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

/* the turn at (conversation, index): seq, text, event time; false if none */
static bool turn_at(mem_pg *d, const char *user, const char *conv, int64_t index, int64_t *seq,
                    char **text, int64_t *t, vt_err *err)
{
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, conv);
    mem_pg_p_int(&p, index);
    PGresult *r = mem_pg_run(d, Q_TURN, &p, false, "turn", err);
    bool found = r && PQntuples(r) == 1;
    if (found) {
        if (seq)
            *seq = mem_pg_int(r, 0, 0);
        if (text && !(*text = mem_pg_str(r, 0, 1)))
            *err = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        if (t)
            *t = PQgetisnull(r, 0, 2) ? MEM_TIME_NONE : mem_pg_int(r, 0, 2);
    }
    PQclear(r);
    return found && !*err;
}

/* ctx of the turn at index: its neighbours' words and its date */
static vt_err build_ctx(mem_pg *d, const char *user, const char *conv, int64_t index,
                        int64_t event_time, vt_buf *b)
{
    vt_err e = VT_OK;
    if (conv && index >= 0) {
        for (int64_t k = index - 1; k <= index + 1 && !e; k += 2) {
            char *t = NULL;
            if (k >= 0 && turn_at(d, user, conv, k, NULL, &t, NULL, &e) && t)
                mem_index_text(t, b);
            free(t);
        }
    }
    if (e)
        return e;
    mem_index_time(event_time, b);
    return b->oom ? vt_fail(VT_ERR_NOMEM, "memory store: out of memory") : VT_OK;
}

/* rebuilds the ctx of the turn at index, if there is one */
static vt_err refresh_ctx(mem_pg *d, const char *user, const char *conv, int64_t index)
{
    int64_t seq, t;
    vt_err e = VT_OK;
    if (index < 0 || !turn_at(d, user, conv, index, &seq, NULL, &t, &e))
        return e;
    vt_buf b = {0};
    if (!(e = build_ctx(d, user, conv, index, t, &b))) {
        mem_pg_params p = {.n = 0};
        mem_pg_p_text(&p, b.p ? b.p : "");
        mem_pg_p_text(&p, user);
        mem_pg_p_int(&p, seq);
        mem_pg_p_int(&p, d->gen);
        e = mem_pg_run0(d, Q_SET_CTX, &p, "index context");
    }
    free(b.p);
    return e;
}

/* The turns of a conversation at indexes lo..lo+4 as turn_at sees them (the
 * first row of each index by seq), read by one statement: a write of a turn
 * builds its own context and its neighbours' from it instead of a statement
 * per neighbour. */
typedef struct {
    int64_t lo;
    struct {
        bool present;
        int64_t seq, t;
        char *text, *ctx;
    } at[5];
} window;

static void window_free(window *w)
{
    for (int k = 0; k < 5; k++) {
        free(w->at[k].text);
        free(w->at[k].ctx);
    }
}

static vt_err window_load(mem_pg *d, const char *user, const char *conv, int64_t center,
                          window *w)
{
    memset(w, 0, sizeof *w);
    w->lo = center - 2;
    vt_err e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, conv);
    mem_pg_p_int(&p, w->lo);
    mem_pg_p_int(&p, w->lo + 4);
    PGresult *r = mem_pg_run(d, Q_WINDOW, &p, false, "turns", &e);
    if (!r)
        return e;
    for (int i = 0; i < PQntuples(r) && !e; i++) {
        int64_t k = mem_pg_int(r, i, 1) - w->lo;
        if (k < 0 || k > 4 || w->at[k].present)
            continue;
        w->at[k].present = true;
        w->at[k].seq = mem_pg_int(r, i, 0);
        w->at[k].t = PQgetisnull(r, i, 3) ? MEM_TIME_NONE : mem_pg_int(r, i, 3);
        if (!(w->at[k].text = mem_pg_str(r, i, 2)) || !(w->at[k].ctx = mem_pg_str(r, i, 4)))
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    }
    PQclear(r);
    if (e)
        window_free(w);
    return e;
}

/* the ctx of the turn at index k of the window (build_ctx from its slots) */
static vt_err window_ctx(const window *w, int64_t k, int64_t event_time, vt_buf *b)
{
    for (int64_t j = k - 1; j <= k + 1; j += 2)
        if (j >= 0 && j - w->lo >= 0 && j - w->lo <= 4 && w->at[j - w->lo].present)
            mem_index_text(w->at[j - w->lo].text, b);
    mem_index_time(event_time, b);
    return b->oom ? vt_fail(VT_ERR_NOMEM, "memory store: out of memory") : VT_OK;
}

/* after the write of the turn at the window's centre (seq: its row, 0 for a
 * new one, whose seq is the greatest): that slot as turn_at now sees it, then
 * the contexts of the neighbours written where they changed */
static vt_err window_refresh(mem_pg *d, const char *user, window *w, int64_t seq,
                             const char *text, int64_t t)
{
    int64_t i = w->lo + 2;
    if (!w->at[2].present || (seq && seq <= w->at[2].seq)) {
        char *c = strdup(text);
        if (!c)
            return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        free(w->at[2].text);
        w->at[2].text = c;
        w->at[2].present = true;
        w->at[2].t = t;
        if (seq)
            w->at[2].seq = seq;
    }
    for (int64_t k = i - 1; k <= i + 1; k += 2) {
        if (k < 0 || !w->at[k - w->lo].present)
            continue;
        vt_buf b = {0};
        vt_err e = window_ctx(w, k, w->at[k - w->lo].t, &b);
        if (!e && strcmp(b.p ? b.p : "", w->at[k - w->lo].ctx)) {
            mem_pg_params p = {.n = 0};
            mem_pg_p_text(&p, b.p ? b.p : "");
            mem_pg_p_text(&p, user);
            mem_pg_p_int(&p, w->at[k - w->lo].seq);
            mem_pg_p_int(&p, d->gen);
            e = mem_pg_run0(d, Q_SET_CTX, &p, "index context");
        }
        free(b.p);
        if (e)
            return e;
    }
    return VT_OK;
}

/* the normalised embedding as binary16 little-endian (malloc'd; NULL on OOM) */
static uint8_t *embedding_blob(const float *e, int32_t n)
{
    double ss = 0;
    for (int32_t k = 0; k < n; k++)
        ss += (double)e[k] * e[k];
    float inv = (float)(1.0 / sqrt(ss));
    uint8_t *b = malloc((size_t)n * 2);
    for (int32_t k = 0; b && k < n; k++) {
        vt_fp16 h = vt_fp32_to_fp16(e[k] * inv);
        b[2 * k] = (uint8_t)h;
        b[2 * k + 1] = (uint8_t)(h >> 8);
    }
    return b;
}

/* looks up (user, id): seq (0 if none), text, version, conversation, index,
 * updated */
static int64_t find(mem_pg *d, const char *user, const char *id, char **text, int32_t *version,
                    char **conv, int64_t *index, int64_t *updated, vt_err *err)
{
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, id);
    PGresult *r = mem_pg_run(d, Q_FIND, &p, false, "find", err);
    int64_t seq = 0;
    if (r && PQntuples(r) == 1) {
        seq = mem_pg_int(r, 0, 0);
        if (text)
            *text = mem_pg_str(r, 0, 1);
        if (version)
            *version = (int32_t)mem_pg_int(r, 0, 2);
        if (conv)
            *conv = mem_pg_str(r, 0, 3);
        if (index)
            *index = PQgetisnull(r, 0, 4) ? -1 : mem_pg_int(r, 0, 4);
        if (updated)
            *updated = mem_pg_int(r, 0, 5);
        if ((text && !*text) || (conv && !*conv && !PQgetisnull(r, 0, 3)))
            *err = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    }
    PQclear(r);
    return seq;
}

static vt_err add_history(mem_pg *d, const char *user, int64_t seq, int32_t version,
                          const char *text, int64_t written)
{
    if (d->version < 2)
        return VT_OK;
    mem_pg_params p = {.n = 0};
    mem_pg_p_int(&p, seq);
    mem_pg_p_text(&p, user);
    mem_pg_p_int(&p, version);
    mem_pg_p_text(&p, text);
    mem_pg_p_int(&p, written);
    return mem_pg_run0(d, Q_HIST_ADD, &p, "history");
}

static vt_err put_locked(mem_pg *d, const char *user, const mem_input *in, int mode, bool *created)
{
    char *old_text = NULL, *old_conv = NULL, *body = NULL;
    int32_t version = 1;
    int64_t old_index = -1, old_written = 0, now = mem_time_now();
    vt_err e = VT_OK;
    int64_t seq = find(d, user, in->id, &old_text, &version, &old_conv, &old_index, &old_written,
                       &e);
    vt_buf ctx = {0};
    uint8_t *blob = NULL;
    window w = {.lo = 0};
    bool use_window = false;
    if (e)
        goto out;
    if (seq && mode == MEM_PUT_ADD) {
        e = vt_fail(VT_ERR_INVALID, "id '%s' exists already for this user", in->id);
        goto out;
    }
    int64_t index = in->message_index;
    if (in->conversation && index < 0) {
        if (seq && old_conv && !strcmp(old_conv, in->conversation) && old_index >= 0) {
            index = old_index;
        } else {
            mem_pg_params p = {.n = 0};
            mem_pg_p_text(&p, user);
            mem_pg_p_text(&p, in->conversation);
            PGresult *r = mem_pg_run(d, Q_NEXT_INDEX, &p, false, "next index", &e);
            index = r && PQntuples(r) == 1 ? mem_pg_int(r, 0, 0) : 0;
            PQclear(r);
            if (e)
                goto out;
        }
    }
    if (!in->conversation)
        index = -1;
    if (!(body = body_of(in->text)) ||
        (in->embedding && !(blob = embedding_blob(in->embedding, in->n_embd)))) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    /* a turn that stays where it was (or a new one) reads its neighbourhood
     * at once; one that moves takes the slow way (its old neighbours too) */
    bool moved = seq && old_conv && old_index >= 0 &&
                 (!in->conversation || strcmp(old_conv, in->conversation) || old_index != index);
    if (in->conversation && index >= 0 && !moved) {
        if ((e = window_load(d, user, in->conversation, index, &w)))
            goto out;
        use_window = true;
        e = window_ctx(&w, index, in->event_time, &ctx);
    } else {
        e = build_ctx(d, user, in->conversation, index, in->event_time, &ctx);
    }
    if (e)
        goto out;
    mem_pg_params p = {.n = 0};
    if (seq) {
        /* an update: the old text goes to the history when it changes */
        bool changed = strcmp(old_text ? old_text : "", in->text) != 0;
        if (changed &&
            (e = add_history(d, user, seq, version, old_text ? old_text : "", old_written)))
            goto out;
        mem_pg_p_text(&p, in->text);
        mem_pg_p_int(&p, (int)in->kind);
        mem_pg_p_text(&p, in->conversation);
        mem_pg_p_index(&p, index);
        mem_pg_p_text(&p, in->speaker);
        mem_pg_p_time(&p, in->event_time);
        mem_pg_p_int(&p, now);
        mem_pg_p_bin(&p, blob, blob ? in->n_embd * 2 : 0);
        mem_pg_p_text(&p, body);
        mem_pg_p_text(&p, ctx.p ? ctx.p : "");
        mem_pg_p_int(&p, changed);
        mem_pg_p_text(&p, user);
        mem_pg_p_int(&p, seq);
        mem_pg_p_int(&p, d->gen);
        if ((e = mem_pg_run0(d, Q_UPDATE_FULL, &p, "update")))
            goto out;
        if (moved && ((e = refresh_ctx(d, user, old_conv, old_index - 1)) ||
             (e = refresh_ctx(d, user, old_conv, old_index + 1))))
            goto out;
        if (created)
            *created = false;
    } else {
        mem_pg_p_text(&p, user);
        mem_pg_p_text(&p, in->id);
        mem_pg_p_text(&p, in->text);
        mem_pg_p_int(&p, (int)in->kind);
        mem_pg_p_text(&p, in->conversation);
        mem_pg_p_index(&p, index);
        mem_pg_p_text(&p, in->speaker);
        mem_pg_p_time(&p, in->event_time);
        mem_pg_p_int(&p, now);
        mem_pg_p_bin(&p, blob, blob ? in->n_embd * 2 : 0);
        mem_pg_p_text(&p, body);
        mem_pg_p_text(&p, ctx.p ? ctx.p : "");
        mem_pg_p_int(&p, d->gen);
        if ((e = mem_pg_run0(d, Q_INSERT, &p, "insert")))
            goto out;
        if (created)
            *created = true;
    }
    if (use_window)
        e = window_refresh(d, user, &w, seq, in->text, in->event_time);
    else if (in->conversation && index >= 0 &&
             !(e = refresh_ctx(d, user, in->conversation, index - 1)))
        e = refresh_ctx(d, user, in->conversation, index + 1);
out:
    if (use_window)
        window_free(&w);
    free(old_text);
    free(old_conv);
    free(body);
    free(ctx.p);
    free(blob);
    return e;
}

static vt_err be_put(mem_store *s, const char *user, const mem_input *in, int mode, bool *created)
{
    vt_err e = mem_pg_alive(s);
    if (e || (e = tx_open(s, user, false)))
        return e;
    return tx_close(s, put_locked(P(s), user, in, mode, created));
}

static vt_err get_one(mem_store *s, int q, const char *user, const char *key, bool embedding,
                      mem_memory *out)
{
    mem_pg *d = P(s);
    memset(out, 0, sizeof *out);
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, key);
    PGresult *r = mem_pg_run(d, q, &p, false, "get", &e);
    if (r) {
        e = PQntuples(r) == 1 ? read_row(r, 0, out, embedding)
            : q == Q_GET      ? vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", key)
                              : vt_fail(VT_ERR_NOT_FOUND, "no memory #%s for this user", key);
        PQclear(r);
    }
    return e;
}

static vt_err be_get(mem_store *s, const char *user, const char *id, bool embedding,
                     mem_memory *out)
{
    return get_one(s, Q_GET, user, id, embedding, out);
}

static vt_err be_get_seq(mem_store *s, const char *user, int64_t seq, mem_memory *out)
{
    char k[24];
    snprintf(k, sizeof k, "%lld", (long long)seq);
    return get_one(s, Q_GET_SEQ, user, k, false, out);
}

static vt_err update_locked(mem_pg *d, const char *user, const char *id, const char *text,
                            const float *emb, int32_t n_embd)
{
    char *old = NULL, *body = NULL;
    int32_t version = 1;
    uint8_t *blob = NULL;
    vt_err e = VT_OK;
    int64_t written = 0, seq = find(d, user, id, &old, &version, NULL, NULL, &written, &e);
    if (e)
        goto out;
    if (!seq) {
        e = vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
        goto out;
    }
    if (!(body = body_of(text)) || (emb && !(blob = embedding_blob(emb, n_embd)))) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto out;
    }
    if ((e = add_history(d, user, seq, version, old ? old : "", written)))
        goto out;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, text);
    mem_pg_p_text(&p, body);
    mem_pg_p_int(&p, mem_time_now());
    mem_pg_p_bin(&p, blob, blob ? n_embd * 2 : 0);
    mem_pg_p_text(&p, emb ? "t" : "f");
    mem_pg_p_text(&p, user);
    mem_pg_p_int(&p, seq);
    mem_pg_p_int(&p, d->gen);
    e = mem_pg_run0(d, Q_UPDATE_TEXT, &p, "update");
out:
    free(old);
    free(body);
    free(blob);
    return e;
}

static vt_err be_update(mem_store *s, const char *user, const char *id, const char *text,
                        const float *emb, int32_t n_embd)
{
    vt_err e = mem_pg_alive(s);
    if (e || (e = tx_open(s, user, false)))
        return e;
    return tx_close(s, update_locked(P(s), user, id, text, emb, n_embd));
}

static vt_err be_history(mem_store *s, const char *user, const char *id, mem_version **v,
                         size_t *n)
{
    mem_pg *d = P(s);
    *v = NULL;
    *n = 0;
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    int64_t seq = find(d, user, id, NULL, NULL, NULL, NULL, NULL, &e);
    if (e)
        return e;
    if (!seq)
        return vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    if (d->version < 2)
        return VT_OK;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_int(&p, seq);
    PGresult *r = mem_pg_run(d, Q_HISTORY, &p, false, "history", &e);
    if (!r)
        return e;
    int rows = PQntuples(r);
    if (rows) {
        mem_version *a = calloc((size_t)rows, sizeof *a);
        for (int i = 0; a && i < rows; i++) {
            a[i].version = (int32_t)mem_pg_int(r, i, 0);
            a[i].text = mem_pg_str(r, i, 1);
            a[i].written = mem_pg_int(r, i, 2);
            if (!a[i].text) {
                mem_versions_free(a, (size_t)i);
                a = NULL;
            }
        }
        if (!a)
            e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        else {
            *v = a;
            *n = (size_t)rows;
        }
    }
    PQclear(r);
    return e;
}

static vt_err del_locked(mem_pg *d, const char *user, const char *id)
{
    char *conv = NULL;
    int64_t index = -1;
    vt_err e = VT_OK;
    int64_t seq = find(d, user, id, NULL, NULL, &conv, &index, NULL, &e);
    if (!e && !seq)
        e = vt_fail(VT_ERR_NOT_FOUND, "no memory '%s' for this user", id);
    if (!e) {
        mem_pg_params p = {.n = 0};
        mem_pg_p_text(&p, user);
        mem_pg_p_int(&p, seq);
        e = mem_pg_run0(d, Q_DELETE, &p, "delete");
    }
    if (!e && conv && index >= 0 && !(e = refresh_ctx(d, user, conv, index - 1)))
        e = refresh_ctx(d, user, conv, index + 1);
    free(conv);
    return e;
}

static vt_err be_del(mem_store *s, const char *user, const char *id)
{
    vt_err e = mem_pg_alive(s);
    if (e || (e = tx_open(s, user, true)))
        return e;
    return tx_close(s, del_locked(P(s), user, id));
}

static vt_err be_list(mem_store *s, const char *user, int64_t after, int32_t limit,
                      mem_memory **items, size_t *n, int64_t *next)
{
    mem_pg *d = P(s);
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_int(&p, after);
    mem_pg_p_int(&p, (int64_t)limit + 1);
    PGresult *r = mem_pg_run(d, Q_LIST, &p, false, "list", &e);
    if (!r)
        return e;
    bool more;
    e = mem_pg_read_rows(r, limit, items, n, &more);
    PQclear(r);
    *next = !e && more && *n ? (*items)[*n - 1].seq : 0;
    return e;
}

static vt_err be_count(mem_store *s, const char *user, int64_t *n)
{
    mem_pg *d = P(s);
    *n = 0;
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    PGresult *r = mem_pg_run(d, Q_COUNT, &p, false, "count", &e);
    if (r && PQntuples(r) == 1)
        *n = mem_pg_int(r, 0, 0);
    PQclear(r);
    return e;
}

static vt_err be_forget(mem_store *s, const char *user, int64_t *n)
{
    mem_pg *d = P(s);
    *n = 0;
    vt_err e = mem_pg_alive(s);
    if (e || (e = tx_open(s, user, true)))
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    if (d->version >= 2)
        e = mem_pg_run0(d, Q_FORGET_HIST, &p, "forget");
    if (!e) {
        PGresult *r = mem_pg_run(d, Q_FORGET_MEM, &p, false, "forget", &e);
        if (r)
            *n = strtoll(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    if (!e)
        e = mem_pg_run0(d, Q_FORGET_PROFILE, &p, "forget");
    if (!e)
        e = mem_pg_run0(d, Q_FORGET_USER, &p, "forget");
    if (e)
        *n = 0;
    /* the user's row is gone: a later write of this batch locks a new one */
    for (int i = 0; !e && i < d->n_locked; i++)
        if (!strcmp(d->locked[i].user, user)) {
            free(d->locked[i].user);
            d->locked[i] = d->locked[--d->n_locked];
            break;
        }
    return tx_close(s, e);
}

static vt_err be_profile_get(mem_store *s, const char *user, char **text)
{
    mem_pg *d = P(s);
    *text = NULL;
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    PGresult *r = mem_pg_run(d, Q_PROFILE_GET, &p, false, "profile", &e);
    if (!r)
        return e;
    *text = PQntuples(r) == 1 ? mem_pg_str(r, 0, 0) : strdup("");
    PQclear(r);
    return *text ? VT_OK : vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
}

static vt_err be_profile_set(mem_store *s, const char *user, const char *text)
{
    mem_pg *d = P(s);
    vt_err e = mem_pg_alive(s);
    if (e || (e = tx_open(s, user, false)))
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, text);
    mem_pg_p_int(&p, mem_time_now());
    return tx_close(s, mem_pg_run0(d, Q_PROFILE_SET, &p, "profile"));
}

/* ---- open / close ---- */

static void be_close(mem_store *s)
{
    mem_pg *d = P(s);
    if (!d)
        return;
    mem_pg_recall_clear(d);
    unlock_all(d);
    PQfinish(d->conn);
    free(d);
    s->impl = NULL;
}

static vt_err prepare_all(mem_pg *d)
{
    char cols[256], cols_e[256], get[512], get_seq[512], list[512], neigh[512];
    const char *ver = d->version >= 2 ? "version" : "1";
    snprintf(cols, sizeof cols, COLS, ver);
    snprintf(cols_e, sizeof cols_e, COLS ", embedding", ver);
    snprintf(get, sizeof get, "SELECT %s FROM vt_memories WHERE user_id = $1 AND id = $2",
             cols_e);
    snprintf(get_seq, sizeof get_seq,
             "SELECT %s FROM vt_memories WHERE user_id = $1 AND seq = $2::bigint", cols);
    snprintf(list, sizeof list,
             "SELECT %s FROM vt_memories WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
             cols);
    snprintf(neigh, sizeof neigh,
             "SELECT %s FROM vt_memories WHERE user_id = $1 AND conversation = $2 AND "
             "msg_index BETWEEN $3 AND $4 AND msg_index <> $5 ORDER BY msg_index",
             cols);
    bool v2 = d->version >= 2;
    const char *sql[Q_COUNT_] = {
        /* a new row (also one made again after a forget) starts with a
         * delete generation: caches of what was there before reload */
        [Q_LOCK] = "WITH g AS (SELECT nextval('vt_mem_gen') AS v) "
                   "INSERT INTO vt_mem_users(user_id, gen, delgen) SELECT $1, v, v FROM g "
                   "ON CONFLICT (user_id) DO UPDATE SET gen = excluded.gen, "
                   "delgen = CASE WHEN $2::boolean THEN excluded.gen "
                   "ELSE vt_mem_users.delgen END RETURNING gen",
        [Q_FIND] = v2 ? "SELECT seq, text, version, conversation, msg_index, updated "
                        "FROM vt_memories WHERE user_id = $1 AND id = $2"
                      : "SELECT seq, text, 1, conversation, msg_index, updated "
                        "FROM vt_memories WHERE user_id = $1 AND id = $2",
        [Q_NEXT_INDEX] = "SELECT coalesce(max(msg_index) + 1, 0) FROM vt_memories "
                         "WHERE user_id = $1 AND conversation = $2",
        [Q_INSERT] = "INSERT INTO vt_memories(user_id, id, text, kind, conversation, msg_index, "
                     "speaker, event_time, created, updated, embedding, body, ctx, rev) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13)",
        [Q_UPDATE_FULL] = v2 ? "UPDATE vt_memories SET text = $1, kind = $2, conversation = $3, "
                               "msg_index = $4, speaker = $5, event_time = $6, updated = $7, "
                               "embedding = coalesce($8, embedding), body = $9, ctx = $10, "
                               "version = version + $11, rev = $14 "
                               "WHERE user_id = $12 AND seq = $13"
                             : "UPDATE vt_memories SET text = $1, kind = $2, conversation = $3, "
                               "msg_index = $4, speaker = $5, event_time = $6, updated = $7, "
                               "embedding = coalesce($8, embedding), body = $9, ctx = $10, "
                               "rev = $14 WHERE user_id = $12 AND seq = $13 AND "
                               "$11::int IS NOT NULL",
        [Q_UPDATE_TEXT] = v2 ? "UPDATE vt_memories SET text = $1, body = $2, updated = $3, "
                               "embedding = CASE WHEN $5::boolean THEN $4 ELSE embedding END, "
                               "version = version + 1, rev = $8 "
                               "WHERE user_id = $6 AND seq = $7"
                             : "UPDATE vt_memories SET text = $1, body = $2, updated = $3, "
                               "embedding = CASE WHEN $5::boolean THEN $4 ELSE embedding END, "
                               "rev = $8 WHERE user_id = $6 AND seq = $7",
        [Q_HIST_ADD] = v2 ? "INSERT INTO vt_mem_history(seq, user_id, version, text, written) "
                            "VALUES ($1, $2, $3, $4, $5)"
                          : NULL,
        [Q_HISTORY] = v2 ? "SELECT version, text, written FROM vt_mem_history "
                           "WHERE user_id = $1 AND seq = $2 ORDER BY version"
                         : NULL,
        [Q_GET] = get,
        [Q_GET_SEQ] = get_seq,
        [Q_TURN] = "SELECT seq, text, event_time FROM vt_memories WHERE user_id = $1 AND "
                   "conversation = $2 AND msg_index = $3 ORDER BY seq LIMIT 1",
        [Q_SET_CTX] = "UPDATE vt_memories SET ctx = $1, rev = $4 WHERE user_id = $2 AND "
                      "seq = $3 AND ctx <> $1",
        [Q_DELETE] = "DELETE FROM vt_memories WHERE user_id = $1 AND seq = $2",
        [Q_LIST] = list,
        [Q_COUNT] = "SELECT count(*) FROM vt_memories WHERE user_id = $1",
        [Q_FORGET_HIST] = v2 ? "DELETE FROM vt_mem_history WHERE user_id = $1" : NULL,
        [Q_FORGET_MEM] = "DELETE FROM vt_memories WHERE user_id = $1",
        [Q_FORGET_PROFILE] = "DELETE FROM vt_mem_profiles WHERE user_id = $1",
        [Q_FORGET_USER] = "DELETE FROM vt_mem_users WHERE user_id = $1",
        [Q_PROFILE_GET] = "SELECT text FROM vt_mem_profiles WHERE user_id = $1",
        [Q_PROFILE_SET] = "INSERT INTO vt_mem_profiles(user_id, text, updated) VALUES ($1, $2, $3) "
                          "ON CONFLICT (user_id) DO UPDATE SET text = excluded.text, "
                          "updated = excluded.updated",
        [Q_LEXICAL] = "SELECT seq, ts_rank_cd('{0,0,0.35,1}'::float4[], tsv, q, 1) AS r "
                      "FROM vt_memories, to_tsquery('english'::regconfig, $2) q "
                      "WHERE user_id = $1 AND tsv @@ q ORDER BY r DESC, seq DESC LIMIT $3",
        [Q_GEN] = "SELECT gen, delgen FROM vt_mem_users WHERE user_id = $1",
        [Q_VECTORS] = "SELECT seq, embedding FROM vt_memories WHERE user_id = $1 AND "
                      "length(embedding) = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        [Q_VECTORS_SINCE] = "SELECT seq, embedding FROM vt_memories WHERE user_id = $1 AND "
                            "rev > $2 ORDER BY seq",
        [Q_NEIGHBOURS] = neigh,
        [Q_COUNT_UPTO] = "SELECT count(*) FROM (SELECT 1 FROM vt_memories WHERE user_id = $1 "
                         "LIMIT $2) x",
        [Q_BM25_ALL] = "SELECT seq, tsv::text FROM vt_memories WHERE user_id = $1 AND seq > $2 "
                       "ORDER BY seq LIMIT $3",
        [Q_BM25_SINCE] = "SELECT seq, tsv::text FROM vt_memories WHERE user_id = $1 AND rev > $2 "
                         "ORDER BY seq",
        [Q_WINDOW] = "SELECT seq, msg_index, text, event_time, ctx FROM vt_memories WHERE "
                     "user_id = $1 AND conversation = $2 AND msg_index BETWEEN $3 AND $4 "
                     "ORDER BY msg_index, seq",
        [Q_BM25_QUERY] = "SELECT to_tsquery('english'::regconfig, $1)::text",
        [Q_SPEAKERS] = "SELECT DISTINCT speaker FROM vt_memories WHERE user_id = $1 AND "
                       "speaker IS NOT NULL LIMIT 256",
    };
    for (int i = 0; i < Q_COUNT_; i++) {
        if (!sql[i] || d->prepared[i])
            continue;
        char name[16];
        snprintf(name, sizeof name, "vt%d", i);
        PGresult *r = PQprepare(d->conn, name, sql[i], 0, NULL);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            vt_err e = mem_pg_fail(d, r, "prepare");
            PQclear(r);
            return e;
        }
        PQclear(r);
        d->prepared[i] = true;
    }
    return VT_OK;
}

/* notices (e.g. "query contains only stop words") are not printed */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static vt_err session_setup(mem_pg *d)
{
    PQsetNoticeProcessor(d->conn, quiet, NULL);
    if (PQsetClientEncoding(d->conn, "UTF8"))
        return mem_pg_fail(d, NULL, "client encoding");
    const char *enc = PQparameterStatus(d->conn, "server_encoding");
    if (!enc || strcmp(enc, "UTF8"))
        return vt_fail(VT_ERR_UNSUPPORTED,
                       "memory store (postgresql): the database's encoding is %s; the store "
                       "needs UTF8 (createdb -E UTF8)",
                       enc ? enc : "unknown");
    /* custom plans: a generic plan for the search chosen on one user (a
     * GIN scan, or the user's rows) would serve every user, small and big */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SET lock_timeout = %d; SET synchronous_commit = on; "
             "SET plan_cache_mode = force_custom_plan; "
             "SET default_transaction_read_only = %s",
             (int)d->lock_timeout_ms, d->read_only ? "on" : "off");
    return mem_pg_exec(d, sql, "session");
}

/* the schema version: 0 when there is no store in the database's schema */
static vt_err read_version(mem_pg *d, int32_t *version)
{
    *version = 0;
    PGresult *r = PQexec(d->conn, "SELECT to_regclass('vt_mem_schema') IS NOT NULL, "
                                  "to_regclass('vt_memories') IS NOT NULL");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        vt_err e = mem_pg_fail(d, r, "open");
        PQclear(r);
        return e;
    }
    bool has_schema = PQgetvalue(r, 0, 0)[0] == 't', has_mem = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if (!has_schema)
        return has_mem ? vt_fail(VT_ERR_FORMAT, "memory store (postgresql): a vt_memories table "
                                                "exists but no vt_mem_schema: not a memory store")
                       : VT_OK;
    r = PQexec(d->conn, "SELECT version FROM vt_mem_schema");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        vt_err e = mem_pg_fail(d, r, "open");
        PQclear(r);
        return e;
    }
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        *version = (int32_t)mem_pg_int(r, 0, 0);
    int rows = PQntuples(r);
    PQclear(r);
    if (rows != 1 || *version < 1)
        return vt_fail(VT_ERR_FORMAT, "memory store (postgresql): bad vt_mem_schema");
    return VT_OK;
}

/* reads the schema version and, unless read-only, creates or migrates the
 * schema (to version `want`, 0: this build's, for a new store), in one
 * transaction holding an advisory lock named after the schema (search_path):
 * a second process opening at the same time waits and then finds it done.
 * The lock comes before anything of the store is looked up on this
 * connection, so no catalog lookup cached before the wait can hide what the
 * first process created. Sets d->version. */
static vt_err migrate(mem_pg *d, int32_t want)
{
    vt_err e = mem_pg_exec(d, "BEGIN", "open");
    if (e)
        return e;
    int32_t from;
    if ((e = mem_pg_exec(d, "SELECT pg_advisory_xact_lock(hashtext('vitamin memory ' || "
                         "coalesce(current_schema(), '')))",
                      "open lock")) ||
        (e = read_version(d, &from)))
        goto fail;
    if (from > SCHEMA_VERSION) {
        e = vt_fail(VT_ERR_UNSUPPORTED,
                    "memory store (postgresql): schema version %d is newer than this build's "
                    "(%d); use a newer vitamin",
                    from, SCHEMA_VERSION);
        goto fail;
    }
    if (from == 0 && d->read_only) {
        e = vt_fail(VT_ERR_NOT_FOUND, "memory store (postgresql): no store in this database "
                                      "(opened read-only)");
        goto fail;
    }
    int32_t to = from == 0 && want ? want : SCHEMA_VERSION;
    if (d->read_only || to < from)
        to = from;
    for (int32_t v = from + 1; v <= to; v++)
        if ((e = mem_pg_exec(d, migrations[v], "migrate")))
            goto fail;
    if ((e = mem_pg_exec(d, "COMMIT", "open")))
        goto fail;
    d->version = to;
    return VT_OK;
fail:;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vt_last_error());
    mem_pg_exec(d, "ROLLBACK", "rollback");
    return vt_fail(e, "%s", msg);
}

vt_err mem_pg_open(mem_store *s, const char *uri, const mem_options *opt)
{
    mem_pg *d = calloc(1, sizeof *d);
    if (!d)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    s->impl = d;
    d->read_only = opt->read_only;
    d->lock_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
    vt_err e;
    d->conn = PQconnectdb(uri);
    if (!d->conn) {
        e = vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
        goto fail;
    }
    if (PQstatus(d->conn) != CONNECTION_OK) {
        e = mem_pg_fail(d, NULL, "connect");
        goto fail;
    }
    if ((e = session_setup(d)))
        goto fail;
    if ((e = migrate(d, opt->schema_version)) || (e = prepare_all(d)))
        goto fail;
    s->version = d->version;
    return VT_OK;
fail:
    be_close(s);
    return e;
}

const mem_backend mem_pg_backend = {
    .name = "postgresql",
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
    .lexical = mem_pg_lexical,
    .vector = mem_pg_vector,
    .speakers = mem_pg_speakers,
    .neighbours = mem_pg_neighbours,
};
