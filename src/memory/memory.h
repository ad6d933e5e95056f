/*
 * memory.h - the long-term memory of each user: a store of memories (what a
 * user said, facts and preferences about them, events), a per-user profile
 * block, and recall (mem_search) that finds the memories that matter for a
 * query and formats them as a system block for a prompt.
 *
 * A store is opened from a URI (mem_open): a file path or `sqlite:PATH` is
 * the SQLite backend (one file, WAL, synchronous=FULL: a write acknowledged
 * by a returned VT_OK survives a kill -9 of the process); `postgresql://...`
 * selects the PostgreSQL backend (postgres.c, for several replicas). Every
 * operation names its user, and every backend statement is scoped by that
 * user: no call reads, changes or deletes another user's memories, and two
 * users may both have a memory with the same id.
 *
 * Errors are values: a function returns VT_OK or an error with the message
 * in vt_last_error(). Bad input (invalid UTF-8, an empty or too long text, a
 * bad id, user or time) is VT_ERR_INVALID or VT_ERR_RANGE; an id that does
 * not exist for that user is VT_ERR_NOT_FOUND. Strings returned in structs
 * are malloc'd and freed by the *_clear / *_free function named beside them.
 * A store handle is used by one thread at a time (open one per thread).
 */
#ifndef VT_MEMORY_H
#define VT_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

/* Limits (bytes). A text past MEM_TEXT_MAX is refused (VT_ERR_RANGE), never
 * cut; an empty (or all-whitespace) text is refused (VT_ERR_INVALID). */
#define MEM_TEXT_MAX (32 * 1024)
#define MEM_PROFILE_MAX (8 * 1024)
#define MEM_ID_MAX 128    /* ids: 1..128 bytes of UTF-8, no spaces or control characters */
#define MEM_USER_MAX 128  /* users: the same rule */
#define MEM_NAME_MAX 256  /* speaker and conversation names: UTF-8, no control characters */
#define MEM_EMBD_MAX 8192 /* embedding dimensions */
#define MEM_TOP_MAX 1000  /* mem_query.top_k */
#define MEM_LIST_MAX 1000 /* mem_list page size */

/* VT_OK for a valid user name / memory id (1..MEM_USER_MAX / MEM_ID_MAX
 * bytes of UTF-8 without spaces or control characters), else VT_ERR_INVALID
 * or VT_ERR_RANGE with the reason in vt_last_error(). */
vt_err mem_valid_user(const char *user);
vt_err mem_valid_id(const char *id);

/* "no time given" (event_time) */
#define MEM_TIME_NONE INT64_MIN

typedef enum {
    MEM_KIND_MESSAGE = 0, /* a chat turn */
    MEM_KIND_FACT,
    MEM_KIND_PREFERENCE,
    MEM_KIND_EVENT,
    MEM_KIND_COUNT
} mem_kind;

/* "message", "fact", "preference", "event"; "?" for anything else. */
const char *mem_kind_name(mem_kind k);
/* false for a name that is none of those. */
bool mem_kind_parse(const char *s, mem_kind *out);

/* Times are milliseconds since 1970-01-01 UTC. mem_time_parse reads ISO 8601
 * ("2023-05-07", "2023-05-07T14:30", "...:05", "...:05.250", with "Z" or
 * "+09:00"; a space may stand for the T; no zone means UTC); VT_ERR_INVALID
 * for anything else or an out-of-range field. mem_time_format writes
 * "2023-05-07T14:30:05Z" (".250" before the Z when there are milliseconds)
 * into buf (at least 32 bytes). */
vt_err mem_time_parse(const char *s, int64_t *ms);
void mem_time_format(int64_t ms, char *buf, size_t size);
struct json_t;
/* A time as JSON: mem_time_format's string, or null for MEM_TIME_NONE (a
 * new reference; NULL on OOM). */
struct json_t *mem_time_json(int64_t ms);
/* Now, in milliseconds since the epoch (UTC). */
int64_t mem_time_now(void);

/* What a write gives: mem_input_init first, then set. Only text is required. */
typedef struct {
    const char *id;           /* NULL: a new id is assigned ("m-" and 16 hex digits) */
    const char *text;         /* 1..MEM_TEXT_MAX bytes of UTF-8 */
    mem_kind kind;            /* default MEM_KIND_FACT */
    const char *conversation; /* source conversation (session); NULL: none */
    int64_t message_index;    /* index of the turn in it; -1: the next one (or none) */
    const char *speaker;      /* NULL: none */
    int64_t event_time;       /* when it happened; MEM_TIME_NONE: unknown */
    const float *embedding;   /* NULL or [n_embd] floats (normalised when stored) */
    int32_t n_embd;
} mem_input;

void mem_input_init(mem_input *in);

/* A memory as read back. Free the strings and the embedding with
 * mem_memory_clear (arrays of them with mem_memories_free). */
typedef struct {
    char *id;
    char *user;
    char *text;
    mem_kind kind;
    char *conversation; /* NULL: none */
    int64_t message_index; /* -1: none */
    char *speaker;      /* NULL: none */
    int64_t event_time; /* MEM_TIME_NONE: unknown */
    int64_t created;    /* first written */
    int64_t updated;    /* last written */
    int32_t version;    /* 1 + the number of updates */
    float *embedding;   /* NULL or [n_embd], L2 norm 1 */
    int32_t n_embd;
    int64_t seq;        /* its place in the store's stable order (mem_list) */
} mem_memory;

void mem_memory_clear(mem_memory *m);
void mem_memories_free(mem_memory *a, size_t n);

/* An earlier version of a memory (the text an update replaced). */
typedef struct {
    int32_t version;
    char *text;
    int64_t written; /* when that version was written */
} mem_version;

void mem_versions_free(mem_version *v, size_t n);

typedef struct mem_store mem_store;

typedef struct {
    bool read_only;        /* SQLite: open without writing (no migration) */
    int32_t busy_timeout_ms; /* wait for another writer this long; 0: 5000 */
    /* tests only: create a new store at this schema version (0: the newest;
     * the SQLite backend creates only the newest and refuses others) */
    int32_t schema_version;
} mem_options;

/* Opens (creating if needed; SQLite also creates the file's folder) the
 * store at uri, migrating an older schema to this build's; opt may be NULL.
 * VT_ERR_UNSUPPORTED for a store written by a newer build (its schema
 * version is unknown), VT_ERR_IO if it cannot be opened, VT_ERR_FORMAT if
 * it is not a memory store. */
vt_err mem_open(const char *uri, const mem_options *opt, mem_store **out);
/* NULL: no-op. */
void mem_close(mem_store *s);
/* "sqlite" (or "postgresql"). */
const char *mem_backend_name(const mem_store *s);
/* This build's newest schema version. */
int32_t mem_schema_version(void);
/* The schema version of the open store. */
int32_t mem_store_schema_version(const mem_store *s);

/* Batches: between mem_begin and mem_commit the writes are one transaction
 * (import: thousands per commit); mem_rollback drops them. Without a batch
 * every write is its own transaction. A write that fails inside a batch
 * leaves nothing behind and the batch goes on (SQLite). The batch's
 * memories are found by mem_search once it is committed (SQLite indexes
 * them at commit). Nested mem_begin: VT_ERR_INVALID. */
vt_err mem_begin(mem_store *s);
vt_err mem_commit(mem_store *s);
vt_err mem_rollback(mem_store *s);

/* Adds a memory. An id that exists for this user: VT_ERR_INVALID. The id
 * (given or assigned) goes to id_out (MEM_ID_MAX + 1 bytes) if not NULL. */
vt_err mem_add(mem_store *s, const char *user, const mem_input *in, char *id_out);
/* Adds, or when in->id exists for this user updates it (text and every
 * field given; the old text goes to its history). *created (may be NULL)
 * tells which. */
vt_err mem_upsert(mem_store *s, const char *user, const mem_input *in, char *id_out,
                  bool *created);
/* Stores a chat turn as a message memory with id "CONVERSATION:INDEX"
 * (storing the same turn again updates it). */
vt_err mem_store_turn(mem_store *s, const char *user, const char *conversation, int64_t index,
                      const char *speaker, const char *text, int64_t event_time, char *id_out);
/* The same with the turn's embedding (NULL: none). */
vt_err mem_store_turn_embedded(mem_store *s, const char *user, const char *conversation,
                               int64_t index, const char *speaker, const char *text,
                               int64_t event_time, const float *embedding, int32_t n_embd,
                               char *id_out);
/* One memory of this user; VT_ERR_NOT_FOUND if it has none with that id.
 * Clear *out with mem_memory_clear. */
vt_err mem_get(mem_store *s, const char *user, const char *id, mem_memory *out);
/* Replaces the text (and, when embedding is not NULL, the embedding) of a
 * memory; the old text goes to its history. VT_ERR_NOT_FOUND as mem_get. */
vt_err mem_update(mem_store *s, const char *user, const char *id, const char *text,
                  const float *embedding, int32_t n_embd);
/* The earlier versions of a memory, oldest first (*v may be NULL with *n 0).
 * Free with mem_versions_free. */
vt_err mem_history(mem_store *s, const char *user, const char *id, mem_version **v, size_t *n);
/* Deletes a memory and its history. VT_ERR_NOT_FOUND as mem_get. */
vt_err mem_delete(mem_store *s, const char *user, const char *id);
/* A page of this user's memories in a stable order (oldest write first):
 * those after the cursor `after` (0: from the start), at most limit
 * (1..MEM_LIST_MAX). *next is the cursor of the next page, 0 at the end.
 * Free *items with mem_memories_free. Embeddings are not read. */
vt_err mem_list(mem_store *s, const char *user, int64_t after, int32_t limit, mem_memory **items,
                size_t *n, int64_t *next);
/* The number of memories of this user. */
vt_err mem_count(mem_store *s, const char *user, int64_t *n);
/* Deletes every memory, history and the profile of this user; *n (may be
 * NULL) gets the number of memories deleted. */
vt_err mem_forget_user(mem_store *s, const char *user, int64_t *n);
/* Everything of this user as one JSON document (malloc'd, NUL-terminated,
 * the caller frees): {"user", "profile", "memories": [{"id", "text", "kind",
 * "speaker", "conversation", "message_index", "event_time", "created",
 * "updated", "version", "history": [{"version", "text", "written"}]}]}
 * (times ISO 8601; embeddings are not exported). */
vt_err mem_export(mem_store *s, const char *user, char **json);
/* The profile block ("" when none; the caller frees *text). */
vt_err mem_profile_get(mem_store *s, const char *user, char **text);
/* Sets it (0..MEM_PROFILE_MAX bytes of UTF-8; "" clears it). */
vt_err mem_profile_set(mem_store *s, const char *user, const char *text);

/* ---- recall ---------------------------------------------------------- */

typedef struct {
    const char *text;       /* the query (required unless embedding is given) */
    const float *embedding; /* NULL or [n_embd]: also rank by cosine similarity */
    int32_t n_embd;
    int32_t top_k;          /* 1..MEM_TOP_MAX; 0: 10 */
    int32_t context;        /* neighbouring turns on each side to attach; -1: none, 0: 1 */
    /* weight of recency in the fusion (0: off; default 0 via mem_query_init) */
    double recency_weight;
    int64_t now;            /* for recency; 0: now */
} mem_query;

void mem_query_init(mem_query *q);

typedef struct {
    mem_memory m;           /* the memory (its embedding is not read) */
    double score;           /* fused score, higher is better */
    int32_t lexical_rank;   /* 1-based rank in the full-text list; 0: not in it */
    int32_t vector_rank;    /* 1-based rank by cosine similarity; 0: not in it */
    double similarity;      /* cosine similarity when vector_rank > 0 */
    mem_memory *context;    /* neighbouring turns of the same conversation, in order */
    size_t n_context;
} mem_hit;

/* The best memories of this user for q, best first. Hybrid: full-text
 * search (BM25 over FTS5, porter + unicode61 for Latin scripts, character
 * bigrams for Korean, Japanese and Chinese; the query's words are quoted,
 * never read as FTS5 syntax; stop words dropped) and, when q has an
 * embedding, cosine similarity over the memories that have one, fused by
 * reciprocal rank (k = 60), plus recency, without duplicates (one memory per
 * normalised text). Free with mem_hits_free. A query with no usable word and
 * no embedding gives no hits (VT_OK). */
vt_err mem_search(mem_store *s, const char *user, const mem_query *q, mem_hit **hits, size_t *n);
void mem_hits_free(mem_hit *h, size_t n);

/* Tokens of text[0..len) (the caller's tokenizer). */
typedef size_t (*mem_count_fn)(void *ctx, const char *text, size_t len);

/* The system block for a prompt: the profile (if not empty), then as many
 * hits as fit (best first; one too long is passed over) in `budget` tokens,
 * counted as the sum of count() over the block's lines, in this format:
 *
 *   <memory>
 *   Profile:
 *   LINE...
 *   Memories (most relevant first):
 *   - [2023-05-07] user: I went hiking with my sister.
 *   - fact: Likes green tea.
 *   </memory>
 *
 * (a memory line is "- ", "[date] " when it has an event time, its speaker or
 * else its kind, ": ", its text with newlines as spaces). *block is malloc'd
 * ("" with *n_used 0 when nothing fits; the caller frees); *used (the
 * caller frees) lists the ids used, pointing into hits. count NULL: bytes/4. */
vt_err mem_format_block(const char *profile, const mem_hit *hits, size_t n, size_t budget,
                        mem_count_fn count, void *ctx, char **block, const char ***used,
                        size_t *n_used);

/* ---- recall into a conversation (prompt.c) -------------------------- */

/* The text of an OpenAI message's content: a string, or its text parts
 * joined by newlines (malloc'd; NULL for anything else or on OOM). */
char *mem_message_text(const struct json_t *content);
/* The text of the last user message of an OpenAI messages array
 * (mem_message_text of its content) and its index in *index; NULL when
 * there is none (*index then the array's length) or on OOM. */
char *mem_last_user_text(const struct json_t *messages, size_t *index);

/* Recall for the next turn of a conversation: messages is an OpenAI
 * messages array (json_t, changed in place); its last user message is the
 * query; the profile and the best memories (mem_search with neighbouring
 * turns) within `budget` tokens form the block of mem_format_block. On the
 * conversation's first turn (no assistant message before the last user
 * message) the block goes into the system message: appended to the first
 * message when that is a system message with string content (after a
 * blank line), else as a new system message in front. On later turns it
 * goes in front of the last user message's content (then a blank line), so
 * that the conversation before it renders exactly as on the turn before
 * and its KV blocks come from the prefix cache. *used (may be NULL; a new
 * JSON array of the ids put in, the caller decrefs) is set even when
 * nothing was. A conversation without
 * a user message, or whose last one has no usable word (and no
 * query_embedding), changes nothing. query_embedding (NULL: none) is the
 * last user message's embedding, for the vector half of mem_search.
 * Errors of the store (the messages are then unchanged). */
vt_err mem_recall_messages(mem_store *s, const char *user, struct json_t *messages, size_t budget,
                           const float *query_embedding, int32_t n_embd, mem_count_fn count,
                           void *ctx, struct json_t **used);

#endif
