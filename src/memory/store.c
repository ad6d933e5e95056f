/*
 * store.c - the store's public operations: checks every input (users, ids,
 * texts, names, times, embeddings), assigns ids, then calls the backend
 * chosen by mem_open's URI. Also ISO 8601 times, kinds, the JSON export
 * (built from the backend's list and history, so every backend exports the
 * same document) and the free functions.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "memory/memory_int.h"

static const char *const kind_names[MEM_KIND_COUNT] = {"message", "fact", "preference", "event"};

const char *mem_kind_name(mem_kind k)
{
    return (unsigned)k < MEM_KIND_COUNT ? kind_names[k] : "?";
}

bool mem_kind_parse(const char *s, mem_kind *out)
{
    for (int i = 0; s && i < MEM_KIND_COUNT; i++)
        if (!strcmp(s, kind_names[i])) {
            *out = (mem_kind)i;
            return true;
        }
    return false;
}

/* ---- times ---- */

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * well-known civil-date formula, written out here) */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

vt_err mem_time_parse(const char *s, int64_t *ms)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    if (!s)
        return vt_fail(VT_ERR_INVALID, "time: missing");
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        goto bad;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100) || y % 400 == 0)) || y < 1)
        goto bad;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            goto bad;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                goto bad;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0;
                for (; *p >= '0' && *p <= '9'; p++, nd++)
                    if (nd < 3)
                        frac = frac * 10 + (*p - '0');
                if (!nd)
                    goto bad;
                for (; nd < 3; nd++)
                    frac *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            goto bad;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (!digits(&p, 2, &oh))
                goto bad;
            if (*p == ':')
                p++;
            if (*p && !digits(&p, 2, &om))
                goto bad;
            if (oh > 23 || om > 59)
                goto bad;
            off = sign * (oh * 60 + om);
        }
    }
    if (*p)
        goto bad;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + (sec > 59 ? 59 : sec)) - (int64_t)off * 60) * 1000 +
          frac;
    return VT_OK;
bad:
    return vt_fail(VT_ERR_INVALID, "time '%.40s': expected ISO 8601 (2023-05-07T14:30:00Z)", s);
}

void mem_time_format(int64_t ms, char *buf, size_t size)
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int msr = (int)(ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    if (msr)
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60), msr);
    else
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(rem / 3600),
                 (int)(rem / 60 % 60), (int)(rem % 60));
}

int64_t mem_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- checks ---- */

bool mem_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

vt_err mem_valid_key(const char *s, const char *what, size_t max)
{
    if (!s || !*s)
        return vt_fail(VT_ERR_INVALID, "%s: empty", what);
    size_t len = strlen(s);
    if (len > max)
        return vt_fail(VT_ERR_RANGE, "%s: %zu bytes, at most %zu", what, len, max);
    if (!mem_utf8_valid(s, len))
        return vt_fail(VT_ERR_INVALID, "%s: not valid UTF-8", what);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return vt_fail(VT_ERR_INVALID, "%s '%.*s': no spaces or control characters allowed",
                           what, (int)VT_MIN(len, 64), s);
    return VT_OK;
}

static vt_err valid_name(const char *s, const char *what)
{
    if (!s)
        return VT_OK;
    size_t len = strlen(s);
    if (!len || len > MEM_NAME_MAX)
        return vt_fail(VT_ERR_RANGE, "%s: %zu bytes, expected 1..%d", what, len, MEM_NAME_MAX);
    if (!mem_utf8_valid(s, len))
        return vt_fail(VT_ERR_INVALID, "%s: not valid UTF-8", what);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return vt_fail(VT_ERR_INVALID, "%s: control characters are not allowed", what);
    return VT_OK;
}

static vt_err valid_text(const char *s, const char *what, size_t max, bool allow_empty)
{
    if (!s)
        return vt_fail(VT_ERR_INVALID, "%s: missing", what);
    size_t len = strlen(s);
    if (len > max)
        return vt_fail(VT_ERR_RANGE, "%s: %zu bytes, at most %zu", what, len, max);
    if (!mem_utf8_valid(s, len))
        return vt_fail(VT_ERR_INVALID, "%s: not valid UTF-8", what);
    if (!allow_empty) {
        size_t i = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        if (i == len)
            return vt_fail(VT_ERR_INVALID, "%s: empty", what);
    }
    return VT_OK;
}

static vt_err valid_embedding(const float *e, int32_t n)
{
    if (!e)
        return n ? vt_fail(VT_ERR_INVALID, "embedding: missing values") : VT_OK;
    if (n < 1 || n > MEM_EMBD_MAX)
        return vt_fail(VT_ERR_RANGE, "embedding: %d dimensions, expected 1..%d", n, MEM_EMBD_MAX);
    double s = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!isfinite(e[i]))
            return vt_fail(VT_ERR_INVALID, "embedding: value %d is not finite", i);
        s += (double)e[i] * e[i];
    }
    if (!(s > 0))
        return vt_fail(VT_ERR_INVALID, "embedding: all zeros");
    return VT_OK;
}

static vt_err valid_user(const char *user)
{
    return mem_valid_key(user, "user", MEM_USER_MAX);
}

vt_err mem_valid_user(const char *user)
{
    return valid_user(user);
}

vt_err mem_valid_id(const char *id)
{
    return mem_valid_key(id, "id", MEM_ID_MAX);
}

static vt_err valid_input(const mem_input *in)
{
    vt_err e;
    if (!in)
        return vt_fail(VT_ERR_INVALID, "memory: missing");
    if (in->id && (e = mem_valid_key(in->id, "id", MEM_ID_MAX)))
        return e;
    if ((e = valid_text(in->text, "text", MEM_TEXT_MAX, false)))
        return e;
    if ((unsigned)in->kind >= MEM_KIND_COUNT)
        return vt_fail(VT_ERR_INVALID, "kind: %d is not a kind", (int)in->kind);
    if ((e = valid_name(in->conversation, "conversation")) || (e = valid_name(in->speaker, "speaker")))
        return e;
    if (in->message_index < -1 || in->message_index > INT32_MAX)
        return vt_fail(VT_ERR_RANGE, "message index %lld out of range",
                       (long long)in->message_index);
    /* years 1..9999 */
    if (in->event_time != MEM_TIME_NONE &&
        (in->event_time < -62135596800000LL || in->event_time > 253402300799999LL))
        return vt_fail(VT_ERR_RANGE, "event time out of range (years 1..9999)");
    return valid_embedding(in->embedding, in->n_embd);
}

char *mem_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void mem_input_init(mem_input *in)
{
    memset(in, 0, sizeof *in);
    in->kind = MEM_KIND_FACT;
    in->message_index = -1;
    in->event_time = MEM_TIME_NONE;
}

void mem_memory_clear(mem_memory *m)
{
    if (!m)
        return;
    free(m->id);
    free(m->user);
    free(m->text);
    free(m->conversation);
    free(m->speaker);
    free(m->embedding);
    memset(m, 0, sizeof *m);
}

void mem_memories_free(mem_memory *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        mem_memory_clear(&a[i]);
    free(a);
}

void mem_versions_free(mem_version *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].text);
    free(v);
}

/* ---- open / close ---- */

vt_err mem_open(const char *uri, const mem_options *opt, mem_store **out)
{
    *out = NULL;
    if (!uri || !*uri)
        return vt_fail(VT_ERR_INVALID, "memory store: no path or URI");
    bool pg = !strncmp(uri, "postgresql://", 13) || !strncmp(uri, "postgres://", 11);
    if (!pg && strstr(uri, "://"))
        return vt_fail(VT_ERR_UNSUPPORTED, "memory store '%.64s': unknown URI scheme", uri);
    const char *path = !strncmp(uri, "sqlite:", 7) ? uri + 7 : uri;
    mem_options o = {0};
    if (opt)
        o = *opt;
    if (o.schema_version < 0 || o.schema_version > mem_schema_version())
        return vt_fail(VT_ERR_RANGE, "schema version %d unknown", o.schema_version);
    mem_store *s = calloc(1, sizeof *s);
    if (!s)
        return vt_fail(VT_ERR_NOMEM, "memory store: out of memory");
    s->be = pg ? &mem_pg_backend : &mem_sqlite_backend;
    vt_err e = pg ? mem_pg_open(s, uri, &o) : mem_sqlite_open(s, path, &o);
    if (e) {
        free(s);
        return e;
    }
    *out = s;
    return VT_OK;
}

void mem_close(mem_store *s)
{
    if (!s)
        return;
    if (s->in_batch)
        s->be->rollback(s);
    s->be->close(s);
    free(s);
}

const char *mem_backend_name(const mem_store *s)
{
    return s->be->name;
}

int32_t mem_store_schema_version(const mem_store *s)
{
    return s->version;
}

vt_err mem_begin(mem_store *s)
{
    if (s->in_batch)
        return vt_fail(VT_ERR_INVALID, "memory store: a batch is already open");
    vt_err e = s->be->begin(s);
    if (!e)
        s->in_batch = true;
    return e;
}

vt_err mem_commit(mem_store *s)
{
    if (!s->in_batch)
        return vt_fail(VT_ERR_INVALID, "memory store: no batch is open");
    vt_err e = s->be->commit(s);
    if (!e)
        s->in_batch = false;
    return e;
}

vt_err mem_rollback(mem_store *s)
{
    if (!s->in_batch)
        return vt_fail(VT_ERR_INVALID, "memory store: no batch is open");
    s->in_batch = false;
    return s->be->rollback(s);
}

/* ---- writes ---- */

static void new_id(char *out)
{
    uint8_t r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* fall back on the clock and a counter: unique within this process */
        static uint64_t ctr;
        uint64_t x = (uint64_t)mem_time_now() * 1000003u + ++ctr;
        memcpy(r, &x, 8);
    }
    snprintf(out, MEM_ID_MAX + 1, "m-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
}

static vt_err put(mem_store *s, const char *user, const mem_input *in, int mode, char *id_out,
                  bool *created)
{
    vt_err e;
    if ((e = valid_user(user)) || (e = valid_input(in)))
        return e;
    mem_input c = *in;
    char id[MEM_ID_MAX + 1];
    bool cr = false;
    if (!c.id) {
        new_id(id);
        c.id = id;
        mode = MEM_PUT_ADD;
    }
    e = s->be->put(s, user, &c, mode, &cr);
    if (e)
        return e;
    if (id_out)
        snprintf(id_out, MEM_ID_MAX + 1, "%s", c.id);
    if (created)
        *created = cr;
    return VT_OK;
}

vt_err mem_add(mem_store *s, const char *user, const mem_input *in, char *id_out)
{
    return put(s, user, in, MEM_PUT_ADD, id_out, NULL);
}

vt_err mem_upsert(mem_store *s, const char *user, const mem_input *in, char *id_out, bool *created)
{
    return put(s, user, in, MEM_PUT_UPSERT, id_out, created);
}

vt_err mem_store_turn(mem_store *s, const char *user, const char *conversation, int64_t index,
                      const char *speaker, const char *text, int64_t event_time, char *id_out)
{
    return mem_store_turn_embedded(s, user, conversation, index, speaker, text, event_time, NULL,
                                   0, id_out);
}

vt_err mem_store_turn_embedded(mem_store *s, const char *user, const char *conversation,
                               int64_t index, const char *speaker, const char *text,
                               int64_t event_time, const float *embedding, int32_t n_embd,
                               char *id_out)
{
    vt_err e;
    if ((e = mem_valid_key(conversation, "conversation", MEM_ID_MAX - 12)))
        return e;
    if (index < 0 || index > INT32_MAX)
        return vt_fail(VT_ERR_RANGE, "turn index %lld out of range", (long long)index);
    char id[MEM_ID_MAX + 1];
    snprintf(id, sizeof id, "%s:%lld", conversation, (long long)index);
    mem_input in;
    mem_input_init(&in);
    in.id = id;
    in.text = text;
    in.kind = MEM_KIND_MESSAGE;
    in.conversation = conversation;
    in.message_index = index;
    in.speaker = speaker;
    in.event_time = event_time == MEM_TIME_NONE ? mem_time_now() : event_time;
    in.embedding = embedding;
    in.n_embd = embedding ? n_embd : 0;
    return put(s, user, &in, MEM_PUT_UPSERT, id_out, NULL);
}

vt_err mem_get(mem_store *s, const char *user, const char *id, mem_memory *out)
{
    vt_err e;
    memset(out, 0, sizeof *out);
    if ((e = valid_user(user)) || (e = mem_valid_key(id, "id", MEM_ID_MAX)))
        return e;
    return s->be->get(s, user, id, true, out);
}

vt_err mem_update(mem_store *s, const char *user, const char *id, const char *text,
                  const float *embedding, int32_t n_embd)
{
    vt_err e;
    if ((e = valid_user(user)) || (e = mem_valid_key(id, "id", MEM_ID_MAX)) ||
        (e = valid_text(text, "text", MEM_TEXT_MAX, false)) ||
        (embedding && (e = valid_embedding(embedding, n_embd))))
        return e;
    return s->be->update(s, user, id, text, embedding, n_embd);
}

vt_err mem_history(mem_store *s, const char *user, const char *id, mem_version **v, size_t *n)
{
    vt_err e;
    *v = NULL;
    *n = 0;
    if ((e = valid_user(user)) || (e = mem_valid_key(id, "id", MEM_ID_MAX)))
        return e;
    return s->be->history(s, user, id, v, n);
}

vt_err mem_delete(mem_store *s, const char *user, const char *id)
{
    vt_err e;
    if ((e = valid_user(user)) || (e = mem_valid_key(id, "id", MEM_ID_MAX)))
        return e;
    return s->be->del(s, user, id);
}

vt_err mem_list(mem_store *s, const char *user, int64_t after, int32_t limit, mem_memory **items,
                size_t *n, int64_t *next)
{
    vt_err e;
    *items = NULL;
    *n = 0;
    *next = 0;
    if ((e = valid_user(user)))
        return e;
    if (limit < 1 || limit > MEM_LIST_MAX)
        return vt_fail(VT_ERR_RANGE, "limit %d: expected 1..%d", limit, MEM_LIST_MAX);
    if (after < 0)
        return vt_fail(VT_ERR_RANGE, "cursor %lld: expected >= 0", (long long)after);
    return s->be->list(s, user, after, limit, items, n, next);
}

vt_err mem_count(mem_store *s, const char *user, int64_t *n)
{
    vt_err e = valid_user(user);
    return e ? e : s->be->count(s, user, n);
}

vt_err mem_forget_user(mem_store *s, const char *user, int64_t *n)
{
    int64_t dummy;
    vt_err e = valid_user(user);
    return e ? e : s->be->forget(s, user, n ? n : &dummy);
}

vt_err mem_profile_get(mem_store *s, const char *user, char **text)
{
    *text = NULL;
    vt_err e = valid_user(user);
    return e ? e : s->be->profile_get(s, user, text);
}

vt_err mem_profile_set(mem_store *s, const char *user, const char *text)
{
    vt_err e;
    if ((e = valid_user(user)) || (e = valid_text(text, "profile", MEM_PROFILE_MAX, true)))
        return e;
    return s->be->profile_set(s, user, text);
}

/* ---- export ---- */

json_t *mem_time_json(int64_t ms)
{
    if (ms == MEM_TIME_NONE)
        return json_null();
    char b[40];
    mem_time_format(ms, b, sizeof b);
    return json_string(b);
}

static json_t *str_json(const char *s)
{
    return s ? json_string(s) : json_null();
}

vt_err mem_export(mem_store *s, const char *user, char **json)
{
    *json = NULL;
    vt_err e = valid_user(user);
    if (e)
        return e;
    char *profile = NULL;
    json_t *mems = json_array(), *doc = NULL;
    if (!mems)
        return vt_fail(VT_ERR_NOMEM, "export: out of memory");
    if ((e = s->be->profile_get(s, user, &profile)))
        goto done;
    int64_t after = 0;
    do {
        mem_memory *items;
        size_t n;
        if ((e = s->be->list(s, user, after, MEM_LIST_MAX, &items, &n, &after)))
            goto done;
        for (size_t i = 0; i < n; i++) {
            mem_memory *m = &items[i];
            mem_version *v;
            size_t nv;
            if ((e = s->be->history(s, user, m->id, &v, &nv))) {
                mem_memories_free(items, n);
                goto done;
            }
            json_t *hist = json_array();
            for (size_t k = 0; k < nv; k++)
                json_array_append_new(hist, json_pack("{s:i,s:s,s:o}", "version", (int)v[k].version,
                                                      "text", v[k].text, "written",
                                                      mem_time_json(v[k].written)));
            mem_versions_free(v, nv);
            json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o}", "id", m->id,
                                  "text", m->text, "kind", mem_kind_name(m->kind), "speaker",
                                  str_json(m->speaker), "conversation", str_json(m->conversation),
                                  "message_index",
                                  m->message_index >= 0 ? json_integer(m->message_index)
                                                        : json_null(),
                                  "event_time", mem_time_json(m->event_time), "created",
                                  mem_time_json(m->created), "updated", mem_time_json(m->updated),
                                  "version", (int)m->version, "history", hist);
            if (!o || json_array_append_new(mems, o)) {
                mem_memories_free(items, n);
                e = vt_fail(VT_ERR_NOMEM, "export: out of memory");
                goto done;
            }
        }
        mem_memories_free(items, n);
    } while (after);
    doc = json_pack("{s:s,s:s,s:O}", "user", user, "profile", profile ? profile : "", "memories",
                    mems);
    if (!doc || !(*json = json_dumps(doc, JSON_COMPACT)))
        e = vt_fail(VT_ERR_NOMEM, "export: out of memory");
done:
    free(profile);
    json_decref(mems);
    json_decref(doc);
    return e;
}
