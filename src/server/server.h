/*
 * server.h - `vitamin serve`'s HTTP server: an OpenAI-compatible API
 * (/v1/models, /v1/completions, /v1/chat/completions, streaming as
 * server-sent events) plus /tokenize, /detokenize, /health and /metrics, on
 * libmicrohttpd over a running engine. One internal polling thread serves
 * every connection; a request waiting for the engine (streaming or not) is a
 * suspended connection that the engine's on_event callback resumes, so no
 * thread is ever blocked per request. Bodies are validated by oai.h; every
 * error is an OpenAI error object with its HTTP status.
 */
#ifndef VT_SERVER_H
#define VT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "vitamin.h"

typedef struct {
    const char *host;         /* address to bind (default 127.0.0.1) */
    int port;                 /* 0: any free port (srv_port says which) */
    const char *model_name;   /* the name /v1/models lists and requests must use */
    const char *api_key_file; /* NULL: no keys needed */
    size_t max_body;          /* request body bytes (default 8 MiB) */
    int max_queue;            /* engine requests held at once; more get 429 (default 1024) */
    int max_connections;      /* open connections (default 512) */
    int idle_timeout;         /* seconds before an idle connection is closed (default 60) */
    double shutdown_grace;    /* seconds running requests get at shutdown (default 5) */
    bool log;                 /* one line per request on stderr */
    /* Long-term memory (memory/, server/memory.c): the store (borrowed, used
     * only on the server's thread; NULL: memory off), its URI (the memory
     * thread opens it again), an engine for embeddings, the token budget of the
     * recalled block in a chat prompt (default 512) and, without keys, the
     * server's one user (default "default"; borrowed). */
    struct mem_store *memory;
    const char *memory_uri;  /* the same store, for the memory thread's own handle */
    vt_engine *memory_embedder; /* embeddings of turns and queries (NULL: none) */
    size_t memory_budget;
    const char *memory_user;
} srv_config;

typedef struct srv_server srv_server;

/* Starts serving over e (borrowed, with its tokenizer; chat may be NULL: chat
 * requests are then refused) once the model is loaded. Strings in cfg are
 * copied. NULL on failure (vt_last_error: the bind error, a bad key file). */
srv_server *srv_start(const srv_config *cfg, vt_engine *e, const chat_fmt *chat);
/* The port it listens on. */
int srv_port(const srv_server *s);
/* Stops accepting connections (new requests on open ones get 503), lets
 * running requests finish for cfg.shutdown_grace seconds, aborts the rest
 * and closes every connection. NULL: no-op. */
void srv_stop(srv_server *s);
/* Frees the server (stopping it first if srv_stop was not called). Call it
 * after the engine is destroyed: until then the engine may still call the
 * server's on_event for requests it is ending. NULL: no-op. */
void srv_free(srv_server *s);

#endif
