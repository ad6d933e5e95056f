/*
 * drawer.c - the KV drawer (drawer.h): the pool's backing store on disk.
 *
 * In memory the drawer keeps an index of its blocks: a chained hash map from
 * prefix hash to entry, and a doubly linked LRU list of the entries that are
 * on disk (least recently used at the head). An entry is PENDING from the
 * moment a block is offered (its K/V copied into a job) until the writer
 * thread has renamed its file into place; then it is ON_DISK. One mutex
 * guards the index, the job queue and the counters; no I/O is done while
 * holding it except the unlink of an evicted or rejected file.
 *
 * The file: a drw_header, the block's tokens (int32), then the n_parts K/V
 * parts back to back. header_sum covers the header (with header_sum 0) and
 * the tokens, data_sum the parts (vt_hash64 chained part by part).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv/drawer.h"
#include "util/util.h"

#define DRW_MAGIC "VTKVDRW"
#define DRW_VERSION 1u
#define DRW_DEFAULT_QUEUE (INT64_C(256) << 20)
#define DRW_MAX_PARTS 4096

typedef struct {
    char magic[8];         /* DRW_MAGIC with its NUL */
    uint32_t version;      /* DRW_VERSION */
    uint32_t header_bytes; /* sizeof(drw_header) + 4 * block_size */
    uint64_t model_id, pool_salt, seq_salt;
    uint64_t hash, check;
    int64_t index;
    uint32_t block_size, n_parts;
    uint64_t data_bytes; /* the parts together */
    uint64_t data_sum;
    uint64_t header_sum;
} drw_header;
_Static_assert(sizeof(drw_header) == 96, "drw_header is 96 bytes");

enum { E_PENDING = 1, E_DISK = 2 };

typedef struct entry entry;
struct entry {
    uint64_t hash;
    int64_t bytes;
    int64_t mtime_ns;
    entry *hnext;        /* hash chain */
    entry *lprev, *lnext; /* LRU list (E_DISK only) */
    int state;
};

typedef struct job job;
struct job {
    job *next;
    entry *e;
    size_t bytes;
    uint8_t *buf;
};

struct kv_drawer {
    char *dir;
    int lock_fd;
    int64_t cap, queue_cap;
    uint64_t model_id;
    int32_t bs, n_parts;
    size_t *part_len;
    size_t data_bytes, header_bytes;
    kv_drawer_part_fn part;
    void *part_ctx;

    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    pthread_t writer;
    bool writer_started, stop, writing;
    job *qhead, *qtail;
    int64_t queued_bytes;

    entry **map;
    uint64_t map_mask;
    int64_t n_entries;
    entry *lru_head, *lru_tail;
    kv_drawer_stats st;
};

/* ---- the index (d->mu held) ---- */

static uint64_t bucket(const kv_drawer *d, uint64_t h)
{
    return (h ^ h >> 29) * UINT64_C(0x9e3779b97f4a7c15) >> 20 & d->map_mask;
}

static entry *find(const kv_drawer *d, uint64_t h)
{
    for (entry *e = d->map[bucket(d, h)]; e; e = e->hnext)
        if (e->hash == h)
            return e;
    return NULL;
}

static bool map_grow(kv_drawer *d)
{
    uint64_t n = (d->map_mask + 1) * 2;
    entry **m = calloc(n, sizeof *m);
    if (!m)
        return false;
    entry **old = d->map;
    uint64_t old_n = d->map_mask + 1;
    d->map = m;
    d->map_mask = n - 1;
    for (uint64_t i = 0; i < old_n; i++)
        for (entry *e = old[i], *next; e; e = next) {
            next = e->hnext;
            uint64_t b = bucket(d, e->hash);
            e->hnext = m[b];
            m[b] = e;
        }
    free(old);
    return true;
}

/* A new entry for h (not in the map); NULL on OOM. */
static entry *insert(kv_drawer *d, uint64_t h, int state)
{
    if ((uint64_t)d->n_entries >= d->map_mask + 1 && !map_grow(d))
        return NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->hash = h;
    e->state = state;
    uint64_t b = bucket(d, h);
    e->hnext = d->map[b];
    d->map[b] = e;
    d->n_entries++;
    return e;
}

static void lru_unlink(kv_drawer *d, entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        d->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        d->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_tail(kv_drawer *d, entry *e)
{
    e->lnext = NULL;
    e->lprev = d->lru_tail;
    if (d->lru_tail)
        d->lru_tail->lnext = e;
    else
        d->lru_head = e;
    d->lru_tail = e;
}

/* Takes e out of the map (and the LRU list, and the disk counts, when on
 * disk) and frees it. */
static void remove_entry(kv_drawer *d, entry *e)
{
    entry **pp = &d->map[bucket(d, e->hash)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->state == E_DISK) {
        lru_unlink(d, e);
        d->st.files--;
        d->st.bytes -= e->bytes;
    }
    d->n_entries--;
    free(e);
}

static void block_path(const kv_drawer *d, uint64_t h, const char *ext, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%02x/%016llx%s", d->dir, (unsigned)(h >> 56), (unsigned long long)h,
             ext);
}

/* Deletes on-disk entry e and its file. */
static void drop_file(kv_drawer *d, entry *e)
{
    char path[4096];
    block_path(d, e->hash, ".kvb", path, sizeof path);
    unlink(path);
    remove_entry(d, e);
}

/* ---- the writer thread ---- */

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Writes j's file under a temporary name and renames it into place. */
static bool write_block(const kv_drawer *d, const job *j)
{
    char tmp[4096], path[4096];
    block_path(d, j->e->hash, ".tmp", tmp, sizeof tmp);
    block_path(d, j->e->hash, ".kvb", path, sizeof path);
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%02x", d->dir, (unsigned)(j->e->hash >> 56));
    if (mkdir(sub, 0755) != 0 && errno != EEXIST)
        return false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    bool ok = write_all(fd, j->buf, j->bytes);
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0)
        return true;
    unlink(tmp);
    return false;
}

static void *writer_main(void *arg)
{
    kv_drawer *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->qhead && !d->stop)
            pthread_cond_wait(&d->work, &d->mu);
        job *j = d->qhead;
        if (!j)
            break; /* stopping, queue drained */
        d->qhead = j->next;
        if (!d->qhead)
            d->qtail = NULL;
        d->writing = true;
        /* room first: the folder never holds more than the cap */
        while (d->st.bytes + (int64_t)j->bytes > d->cap && d->lru_head) {
            drop_file(d, d->lru_head);
            d->st.evicted++;
        }
        pthread_mutex_unlock(&d->mu);
        bool ok = write_block(d, j);
        pthread_mutex_lock(&d->mu);
        d->queued_bytes -= (int64_t)j->bytes;
        d->st.pending--;
        if (ok) {
            j->e->state = E_DISK;
            j->e->bytes = (int64_t)j->bytes;
            lru_push_tail(d, j->e);
            d->st.files++;
            d->st.bytes += (int64_t)j->bytes;
            d->st.stored++;
        } else {
            remove_entry(d, j->e);
            d->st.dropped++;
        }
        free(j->buf);
        free(j);
        d->writing = false;
        if (!d->qhead)
            pthread_cond_broadcast(&d->idle);
    }
    d->writing = false;
    pthread_cond_broadcast(&d->idle);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- the backing-store functions (the pool's thread) ---- */

static uint64_t header_sum(const drw_header *h, const int32_t *tokens, int32_t bs)
{
    drw_header c = *h;
    c.header_sum = 0;
    uint64_t s = vt_hash64(&c, sizeof c, UINT64_C(0x6b76647277));
    return vt_hash64(tokens, (size_t)bs * sizeof *tokens, s);
}

static drw_header make_header(const kv_drawer *d, const kv_block_id *id)
{
    drw_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, DRW_MAGIC, sizeof DRW_MAGIC);
    h.version = DRW_VERSION;
    h.header_bytes = (uint32_t)d->header_bytes;
    h.model_id = d->model_id;
    h.pool_salt = id->pool_salt;
    h.seq_salt = id->seq_salt;
    h.hash = id->hash;
    h.check = id->check;
    h.index = id->index;
    h.block_size = (uint32_t)d->bs;
    h.n_parts = (uint32_t)d->n_parts;
    h.data_bytes = d->data_bytes;
    return h;
}

static bool drw_has(void *ctx, const kv_block_id *id)
{
    kv_drawer *d = ctx;
    if (id->block_size != d->bs)
        return false;
    pthread_mutex_lock(&d->mu);
    entry *e = find(d, id->hash);
    bool r = e && e->state == E_DISK;
    pthread_mutex_unlock(&d->mu);
    return r;
}

static bool read_at(int fd, void *p, size_t n, off_t off)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
        off += r;
    }
    return true;
}

/* Reads and checks the file of id into block b; false on any mismatch. */
static bool load_file(kv_drawer *d, int fd, int32_t b, const kv_block_id *id)
{
    drw_header h;
    if (!read_at(fd, &h, sizeof h, 0))
        return false;
    drw_header want = make_header(d, id);
    want.data_sum = h.data_sum;
    want.header_sum = h.header_sum;
    if (memcmp(&h, &want, sizeof h) != 0)
        return false; /* another version, model, layout, salt, place or chain */
    int32_t *toks = malloc((size_t)d->bs * sizeof *toks);
    if (!toks)
        return false;
    bool ok = read_at(fd, toks, (size_t)d->bs * sizeof *toks, (off_t)sizeof h) &&
              memcmp(toks, id->tokens, (size_t)d->bs * sizeof *toks) == 0 &&
              header_sum(&h, toks, d->bs) == h.header_sum;
    free(toks);
    if (!ok)
        return false;
    off_t off = (off_t)d->header_bytes;
    uint64_t sum = 0;
    for (int32_t i = 0; i < d->n_parts; i++) {
        size_t len = 0;
        void *dst = d->part(d->part_ctx, b, i, &len);
        if (!dst || len != d->part_len[i] || !read_at(fd, dst, len, off))
            return false;
        sum = vt_hash64(dst, len, sum);
        off += (off_t)len;
    }
    struct stat sb;
    return sum == h.data_sum && fstat(fd, &sb) == 0 && sb.st_size == off;
}

static bool drw_load(void *ctx, int32_t b, const kv_block_id *id)
{
    kv_drawer *d = ctx;
    if (id->block_size != d->bs)
        return false;
    pthread_mutex_lock(&d->mu);
    entry *e = find(d, id->hash);
    if (!e || e->state != E_DISK) {
        pthread_mutex_unlock(&d->mu);
        return false;
    }
    lru_unlink(d, e); /* most recently used now */
    lru_push_tail(d, e);
    pthread_mutex_unlock(&d->mu);

    char path[4096];
    block_path(d, id->hash, ".kvb", path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool ok = false, gone = fd < 0;
    if (fd >= 0) {
        ok = load_file(d, fd, b, id);
        if (ok)
            futimens(fd, NULL); /* the LRU order survives a restart */
        close(fd);
    }
    pthread_mutex_lock(&d->mu);
    e = find(d, id->hash);
    if (ok) {
        d->st.loaded++;
    } else if (e && e->state == E_DISK) {
        if (gone) {
            remove_entry(d, e); /* deleted behind our back */
        } else {
            drop_file(d, e);
            d->st.rejected++;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return ok;
}

static bool drw_store(void *ctx, int32_t b, const kv_block_id *id)
{
    kv_drawer *d = ctx;
    if (id->block_size != d->bs)
        return false;
    size_t total = d->header_bytes + d->data_bytes;
    pthread_mutex_lock(&d->mu);
    entry *e = find(d, id->hash);
    bool full = d->queued_bytes + (int64_t)total > d->queue_cap || (int64_t)total > d->cap;
    if (e || full) {
        if (!e)
            d->st.dropped++;
        pthread_mutex_unlock(&d->mu);
        return e != NULL;
    }
    pthread_mutex_unlock(&d->mu);

    job *j = calloc(1, sizeof *j);
    uint8_t *buf = malloc(total);
    if (!j || !buf)
        goto fail;
    drw_header h = make_header(d, id);
    memcpy(buf + sizeof h, id->tokens, (size_t)d->bs * sizeof *id->tokens);
    size_t off = d->header_bytes;
    uint64_t sum = 0;
    for (int32_t i = 0; i < d->n_parts; i++) {
        size_t len = 0;
        const void *src = d->part(d->part_ctx, b, i, &len);
        if (!src || len != d->part_len[i])
            goto fail;
        memcpy(buf + off, src, len);
        sum = vt_hash64(src, len, sum);
        off += len;
    }
    h.data_sum = sum;
    h.header_sum = header_sum(&h, id->tokens, d->bs);
    memcpy(buf, &h, sizeof h);
    j->buf = buf;
    j->bytes = total;

    pthread_mutex_lock(&d->mu);
    if (!(j->e = insert(d, id->hash, E_PENDING))) {
        d->st.dropped++;
        pthread_mutex_unlock(&d->mu);
        free(buf);
        free(j);
        return false;
    }
    if (d->qtail)
        d->qtail->next = j;
    else
        d->qhead = j;
    d->qtail = j;
    d->queued_bytes += (int64_t)total;
    d->st.pending++;
    pthread_cond_signal(&d->work);
    pthread_mutex_unlock(&d->mu);
    return true;
fail:
    free(buf);
    free(j);
    pthread_mutex_lock(&d->mu);
    d->st.dropped++;
    pthread_mutex_unlock(&d->mu);
    return false;
}

static const kv_backing drawer_backing = {.has = drw_has, .load = drw_load, .store = drw_store};

const kv_backing *kv_drawer_backing(void)
{
    return &drawer_backing;
}

/* ---- opening: the folder, the lock, the index of what is there ---- */

static int mkdir_p(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return errno;
        path[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return errno;
    return S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int by_mtime(const void *a, const void *b)
{
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    return (x->mtime_ns > y->mtime_ns) - (x->mtime_ns < y->mtime_ns);
}

/* Indexes the DIR/xx/ folders' .kvb files and deletes their .tmp files; the
 * LRU list in mtime order. */
static vt_err scan(kv_drawer *d)
{
    DIR *top = opendir(d->dir);
    if (!top)
        return vt_fail(VT_ERR_IO, "KV drawer %s: cannot read it: %s", d->dir, strerror(errno));
    struct dirent *de;
    char sub[4200], path[4600];
    while ((de = readdir(top))) {
        if (strlen(de->d_name) != 2 || !is_hex(de->d_name, 2))
            continue;
        snprintf(sub, sizeof sub, "%s/%s", d->dir, de->d_name);
        DIR *sd = opendir(sub);
        if (!sd)
            continue;
        struct dirent *fe;
        while ((fe = readdir(sd))) {
            size_t n = strlen(fe->d_name);
            snprintf(path, sizeof path, "%s/%s", sub, fe->d_name);
            if (n == 20 && is_hex(fe->d_name, 16) && strcmp(fe->d_name + 16, ".tmp") == 0) {
                unlink(path); /* a write that a crash or kill cut short */
                continue;
            }
            if (n != 20 || !is_hex(fe->d_name, 16) || strcmp(fe->d_name + 16, ".kvb") != 0 ||
                strncmp(fe->d_name, de->d_name, 2) != 0)
                continue;
            struct stat sb;
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            uint64_t h = strtoull(fe->d_name, NULL, 16);
            if (find(d, h))
                continue;
            entry *e = insert(d, h, E_DISK);
            if (!e) {
                closedir(sd);
                closedir(top);
                return vt_fail(VT_ERR_NOMEM, "KV drawer %s: out of memory indexing it", d->dir);
            }
            e->bytes = sb.st_size;
            e->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
            d->st.files++;
            d->st.bytes += e->bytes;
        }
        closedir(sd);
    }
    closedir(top);
    if (d->st.files == 0)
        return VT_OK;
    entry **v = malloc((size_t)d->st.files * sizeof *v);
    if (!v)
        return vt_fail(VT_ERR_NOMEM, "KV drawer %s: out of memory indexing it", d->dir);
    int64_t n = 0;
    for (uint64_t i = 0; i <= d->map_mask; i++)
        for (entry *e = d->map[i]; e; e = e->hnext)
            v[n++] = e;
    qsort(v, (size_t)n, sizeof *v, by_mtime);
    for (int64_t i = 0; i < n; i++)
        lru_push_tail(d, v[i]);
    free(v);
    while (d->st.bytes > d->cap && d->lru_head) { /* the cap was lowered */
        drop_file(d, d->lru_head);
        d->st.evicted++;
    }
    return VT_OK;
}

vt_err kv_drawer_open(const kv_drawer_config *cfg, kv_drawer **out)
{
    *out = NULL;
    if (!cfg || !cfg->dir || !*cfg->dir || cfg->cap_bytes < 1 || cfg->block_size < 1 ||
        cfg->n_parts < 1 || cfg->n_parts > DRW_MAX_PARTS || !cfg->part || cfg->queue_bytes < 0)
        return vt_fail(VT_ERR_INVALID, "KV drawer: invalid configuration");
    if (strlen(cfg->dir) > 4000)
        return vt_fail(VT_ERR_INVALID, "KV drawer: folder name too long");
    kv_drawer *d = calloc(1, sizeof *d);
    if (!d)
        return vt_fail(VT_ERR_NOMEM, "KV drawer: out of memory");
    d->lock_fd = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->idle, NULL);
    vt_err err = VT_ERR_NOMEM;
    d->dir = strdup(cfg->dir);
    d->part_len = calloc((size_t)cfg->n_parts, sizeof *d->part_len);
    d->map_mask = 1023;
    d->map = calloc(d->map_mask + 1, sizeof *d->map);
    if (!d->dir || !d->part_len || !d->map) {
        vt_fail(VT_ERR_NOMEM, "KV drawer: out of memory");
        goto fail;
    }
    d->cap = cfg->cap_bytes;
    d->queue_cap = cfg->queue_bytes ? cfg->queue_bytes : DRW_DEFAULT_QUEUE;
    d->model_id = cfg->model_id;
    d->bs = cfg->block_size;
    d->n_parts = cfg->n_parts;
    d->part = cfg->part;
    d->part_ctx = cfg->part_ctx;
    d->st.cap_bytes = d->cap;
    for (int32_t i = 0; i < d->n_parts; i++) {
        if (!d->part(d->part_ctx, 0, i, &d->part_len[i]) || d->part_len[i] == 0) {
            err = vt_fail(VT_ERR_INVALID, "KV drawer: part %d of a block is empty", (int)i);
            goto fail;
        }
        d->data_bytes += d->part_len[i];
    }
    d->header_bytes = sizeof(drw_header) + (size_t)d->bs * sizeof(int32_t);
    int rc = mkdir_p(d->dir);
    if (rc != 0) {
        err = vt_fail(VT_ERR_IO, "KV drawer %s: cannot create it: %s", d->dir, strerror(rc));
        goto fail;
    }
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/LOCK", d->dir);
    d->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0) {
        err = vt_fail(VT_ERR_IO, "KV drawer %s: cannot open %s: %s", d->dir, lock, strerror(errno));
        goto fail;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = vt_fail(VT_ERR_IO, "KV drawer %s: %s", d->dir,
                      errno == EWOULDBLOCK ? "in use by another process (give each server its "
                                             "own --kv-drawer folder)"
                                           : strerror(errno));
        goto fail;
    }
    if ((err = scan(d)) != VT_OK)
        goto fail;
    if (pthread_create(&d->writer, NULL, writer_main, d) != 0) {
        err = vt_fail(VT_ERR_NOMEM, "KV drawer: cannot start its writer thread");
        goto fail;
    }
    d->writer_started = true;
    *out = d;
    return VT_OK;
fail:
    kv_drawer_close(d);
    return err;
}

void kv_drawer_flush(kv_drawer *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    while (d->writer_started && (d->qhead || d->writing))
        pthread_cond_wait(&d->idle, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

void kv_drawer_close(kv_drawer *d)
{
    if (!d)
        return;
    if (d->writer_started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_signal(&d->work);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->writer, NULL);
    }
    for (job *j = d->qhead, *next; j; j = next) { /* only when the writer never ran */
        next = j->next;
        free(j->buf);
        free(j);
    }
    if (d->map)
        for (uint64_t i = 0; i <= d->map_mask; i++)
            for (entry *e = d->map[i], *next; e; e = next) {
                next = e->hnext;
                free(e);
            }
    free(d->map);
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* releases the lock */
    pthread_cond_destroy(&d->idle);
    pthread_cond_destroy(&d->work);
    pthread_mutex_destroy(&d->mu);
    free(d->part_len);
    free(d->dir);
    free(d);
}

void kv_drawer_get_stats(kv_drawer *d, kv_drawer_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    *out = d->st;
    pthread_mutex_unlock(&d->mu);
}
