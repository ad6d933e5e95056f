/*
 * sqlite_fts.c - the FTS5 tokenizer of the SQLite backend, "vitamin": the
 * built-in `porter unicode61 remove_diacritics 2` with every token prefixed
 * by a tag of the user, so that one user's search reads only that user's
 * posting lists (a store of a million memories answers a query of a user with
 * ten thousand in the time of ten thousand), and bm25's document frequencies
 * are per user.
 *
 * A text handed to the index (or a quoted string of a MATCH query) starts
 * with "\x01TAG\x01"; the tokenizer reads TAG, stems the rest with porter and
 * emits each token as "TAG:token". A text without the marker is tokenized
 * as porter would (no tag). The tag is a hash of the user name
 * (mem_sqlite_user_tag); two users whose tags collide share posting lists,
 * which costs speed, never isolation: every query also joins on the user.
 */
#include <string.h>

#include "memory/sqlite_int.h"

typedef struct {
    fts5_tokenizer porter;  /* the wrapped tokenizer's methods */
    Fts5Tokenizer *inner;   /* and its instance */
} vtok;

typedef struct {
    void *ctx;
    int (*token)(void *, int, const char *, int, int, int);
    const char *tag;
    int ntag;
    int offset; /* bytes of the marker before the text porter sees */
    char buf[256];
} vtok_call;

static int vtok_create(void *api_ctx, const char **argv, int argc, Fts5Tokenizer **out)
{
    fts5_api *api = api_ctx;
    vtok *t = sqlite3_malloc(sizeof *t);
    void *pctx;
    if (!t)
        return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    int rc = api->xFindTokenizer(api, "porter", &pctx, &t->porter);
    if (rc == SQLITE_OK) {
        static const char *dflt[] = {"unicode61", "remove_diacritics", "2"};
        rc = t->porter.xCreate(pctx, argc ? argv : dflt, argc ? argc : 3, &t->inner);
    }
    if (rc != SQLITE_OK) {
        sqlite3_free(t);
        return rc;
    }
    *out = (Fts5Tokenizer *)t;
    return SQLITE_OK;
}

static void vtok_delete(Fts5Tokenizer *p)
{
    vtok *t = (vtok *)p;
    if (t) {
        t->porter.xDelete(t->inner);
        sqlite3_free(t);
    }
}

static int vtok_token(void *p, int flags, const char *tok, int n, int start, int end)
{
    vtok_call *c = p;
    if (!c->ntag)
        return c->token(c->ctx, flags, tok, n, start, end);
    if (c->ntag + 1 + n > (int)sizeof c->buf)
        n = (int)sizeof c->buf - c->ntag - 1; /* FTS5 keeps tokens short anyway */
    memcpy(c->buf, c->tag, (size_t)c->ntag);
    c->buf[c->ntag] = ':';
    memcpy(c->buf + c->ntag + 1, tok, (size_t)n);
    return c->token(c->ctx, flags, c->buf, c->ntag + 1 + n, start + c->offset, end + c->offset);
}

static int vtok_tokenize(Fts5Tokenizer *p, void *ctx, int flags, const char *text, int len,
                         int (*token)(void *, int, const char *, int, int, int))
{
    vtok *t = (vtok *)p;
    vtok_call c = {.ctx = ctx, .token = token};
    if (len >= 2 && text[0] == '\x01') {
        const char *e = memchr(text + 1, '\x01', (size_t)(len - 1));
        if (e && e - text - 1 <= 32) {
            c.tag = text + 1;
            c.ntag = (int)(e - text - 1);
            c.offset = c.ntag + 2;
            text += c.offset;
            len -= c.offset;
        }
    }
    return t->porter.xTokenize(t->inner, &c, flags, text, len, vtok_token);
}

static fts5_api *fts5_of(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return api;
}

vt_err mem_sqlite_register_tokenizer(sqlite3 *db)
{
    fts5_api *api = fts5_of(db);
    if (!api || api->iVersion < 2)
        return vt_fail(VT_ERR_UNSUPPORTED, "memory store: this SQLite has no FTS5");
    fts5_tokenizer tk = {vtok_create, vtok_delete, vtok_tokenize};
    if (api->xCreateTokenizer(api, "vitamin", api, &tk, NULL) != SQLITE_OK)
        return vt_fail(VT_ERR_INTERNAL, "memory store: cannot register the FTS5 tokenizer");
    return VT_OK;
}

void mem_sqlite_user_tag(const char *user, char tag[MEM_TAG_LEN + 1])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)user; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    for (int i = 0; i < MEM_TAG_LEN; i++, h >>= 5)
        tag[i] = digits[h & 31];
    tag[MEM_TAG_LEN] = 0;
}

void mem_sqlite_tagged(const char *tag, const char *text, bool index_text, vt_buf *b)
{
    vt_buf_add(b, "\x01", 1);
    vt_buf_add(b, tag, strlen(tag));
    vt_buf_add(b, "\x01", 1);
    if (index_text)
        mem_index_text(text, b);
    else
        vt_buf_add(b, text, strlen(text));
}
