/*
 * auth.c - the API keys of `vitamin serve` (--api-key-file): one `KEY USER
 * [admin]` per line, blank lines and `#` comments ignored. A request's
 * bearer token is compared with every key in constant time (the time does
 * not depend on where a key and the token first differ, nor on which key
 * matched), and the matching key names the request's user.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

typedef struct {
    char *key;
    size_t len;
    char *user;
    bool admin;
} key_entry;

struct srv_auth {
    key_entry *k;
    int n;
};

void srv_auth_free(srv_auth *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n; i++) {
        free(a->k[i].key);
        free(a->k[i].user);
    }
    free(a->k);
    free(a);
}

static char *next_word(char **p)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return NULL;
    char *w = s;
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (*s)
        *s++ = 0;
    *p = s;
    return w;
}

vt_err srv_auth_load(const char *path, srv_auth **out)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        return vt_fail(VT_ERR_IO, "cannot open the key file %s", path);
    srv_auth *a = calloc(1, sizeof *a);
    char *line = NULL;
    size_t cap = 0;
    int cap_k = 0, ln = 0;
    vt_err err = a ? VT_OK : vt_fail(VT_ERR_NOMEM, "out of memory");
    while (!err && getline(&line, &cap, f) >= 0) {
        ln++;
        line[strcspn(line, "\r\n")] = 0;
        char *h = strchr(line, '#');
        if (h)
            *h = 0;
        char *p = line, *key = next_word(&p), *user = next_word(&p), *flag = next_word(&p);
        if (!key)
            continue;
        if (!user || (flag && strcmp(flag, "admin")) || next_word(&p) || strlen(user) > 128) {
            err = vt_fail(VT_ERR_FORMAT, "%s:%d: expected `KEY USER [admin]`", path, ln);
            break;
        }
        if (a->n == cap_k) {
            key_entry *nk = realloc(a->k, sizeof *nk * (size_t)(cap_k = cap_k ? cap_k * 2 : 8));
            if (!nk) {
                err = vt_fail(VT_ERR_NOMEM, "out of memory");
                break;
            }
            a->k = nk;
        }
        key_entry *e = &a->k[a->n];
        e->key = strdup(key);
        e->user = strdup(user);
        e->len = strlen(key);
        e->admin = flag != NULL;
        a->n++;
        if (!e->key || !e->user)
            err = vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    free(line);
    fclose(f);
    if (!err && a->n == 0)
        err = vt_fail(VT_ERR_FORMAT, "%s: no keys", path);
    if (err) {
        srv_auth_free(a);
        return err;
    }
    *out = a;
    return VT_OK;
}

/* 0 if a[0..na) equals b[0..nb), in time that depends only on na and nb. */
static unsigned ct_diff(const char *a, size_t na, const char *b, size_t nb)
{
    unsigned d = (unsigned)(na != nb);
    size_t n = na > nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0, y = i < nb ? (unsigned char)b[i] : 0;
        d |= (unsigned)(x ^ y);
    }
    return d;
}

const char *srv_auth_check(const srv_auth *a, const char *token, size_t len, bool *admin)
{
    const char *user = NULL;
    bool adm = false;
    for (int i = 0; i < a->n; i++) { /* every key, whether or not one matched */
        unsigned d = ct_diff(a->k[i].key, a->k[i].len, token, len);
        if (!d && !user) {
            user = a->k[i].user;
            adm = a->k[i].admin;
        }
    }
    if (admin)
        *admin = adm;
    return user;
}
