/*
 * serve_proc.h - what the tests that run `vitamin serve` as a child process
 * share (serve_proc.c; used by test_page.c and test_soak.c): a gen-model
 * model with a chat template, starting the server on a free port and reading
 * the URL it prints, a plain HTTP GET, a metric's value, stopping it with
 * SIGTERM, and finding node with an npm package.
 */
#ifndef VT_TESTS_SERVE_PROC_H
#define VT_TESTS_SERVE_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* The chat template the test models carry. */
extern const char *const serve_template;

typedef struct {
    pid_t pid;     /* -1: not running */
    int port;      /* 0: not known */
    char log[512]; /* the server's stderr */
} serve_proc;

/* Writes a gen-model model (llama, the llama-spm vocabulary, serve_template)
 * of the given shape to path; false after a recorded failure or a named skip
 * (no vitamin binary, no vocabulary). */
bool serve_make_model(const char *path, int dim, int layers, int heads, int kv_heads, int ff);

/* Starts `vitamin serve -m MODEL --port 0` with the extra arguments (NULL
 * terminated), stderr to a log in the test's scratch folder, and waits (up
 * to 60 s) for its "listening on" line. False after a recorded failure. */
bool serve_start(serve_proc *p, const char *model, const char *const *extra);

/* SIGTERM, then waits up to `secs` for the exit; true if it exited with
 * status 0 (else a recorded failure naming what happened, and SIGKILL). */
bool serve_stop(serve_proc *p, double secs);

/* GET path from the server: the body (malloc'd) of a 200 answer, else NULL. */
char *serve_get(const serve_proc *p, const char *path);

/* The value of an unlabelled metric on /metrics, NAN if absent. */
double serve_metric(const serve_proc *p, const char *name);

/* True if `node` runs. */
bool serve_have_node(void);

/* A folder holding node_modules/PKG (VT_NODE_DIR, .ci/node,
 * ~/.cache/vitamin-test-node, /root/oracle), or NULL. Static storage. */
const char *serve_node_dir(const char *pkg);

/* stdout of a shell command (malloc'd; NULL if it could not run), its wait
 * status in *status. */
char *serve_capture(const char *cmd, int *status);

#endif
