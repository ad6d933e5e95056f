/*
 * cli.h - the `vitamin` command's subcommands and the helpers they share.
 * Each cmd_NAME takes the arguments after `vitamin` (argv[0] is the
 * subcommand), prints its own --help, and returns the exit status: 0 on
 * success, 1 when the work failed, 2 for a usage error. Errors are one line
 * on stderr.
 */
#ifndef VT_CLI_H
#define VT_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_run_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_memory(int argc, char **argv);

/* Strict parsers for option values (args.c): the whole string must parse and
 * lie in range, else they print a one-line error naming the option and
 * return false. */
bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *opt, const char *s, double *out);
/* A byte size: a positive number with an optional K/M/G (and B) suffix,
 * powers of 1024 ("512M", "2G"). */
bool cli_parse_size(const char *opt, const char *s, int64_t *out);
/* "1,2,3" -> newly allocated array; false on a malformed list. */
bool cli_parse_int_list(const char *opt, const char *s, int32_t **out, int *n);
/* Does argv[i] need a value, and is there one? Prints the error if not. */
bool cli_need_value(int argc, char **argv, int i);

/* The memory store's default path: $XDG_DATA_HOME/vitamin/memory.db, else
 * ~/.local/share/vitamin/memory.db (malloc'd), or NULL when neither
 * XDG_DATA_HOME nor HOME is set. */
char *cli_memory_default_db(void);

/* Threads to use when -t is not given: the online cores (cmd_logits.c). */
int cli_default_threads(void);

/* Sampling options and the engine shared by `vitamin run` and `vitamin
 * chat` (session.c). */
typedef struct {
    vt_request_params p;
    const char *stops[SMP_MAX_STOP];
} cli_sampling;

void cli_sampling_init(cli_sampling *c, int32_t max_tokens);
/* Consumes a sampling option at argv[i]: returns how many arguments it
 * used (0: not a sampling option), -1 after printing an error. */
int cli_sampling_option(cli_sampling *c, int argc, char **argv, int i);
extern const char *const cli_sampling_help;

/* Loads the model and its tokenizer, starts a pool of `threads` threads and
 * an engine (its own thread) configured by cfg (model_path and n_threads
 * ignored). On failure prints one line naming cmd and path and returns 1. */
int cli_engine_open(const char *cmd, const char *path, long threads, const vt_engine_config *cfg,
                    md_model **m, tok_tokenizer **tok, kn_pool **pool, vt_engine **e);
void cli_engine_close(md_model *m, tok_tokenizer *tok, kn_pool *pool, vt_engine *e);

/* Streams completion 0 of r: each piece of text goes to on_text (return
 * false to abort the request, e.g. stdout closed). While *interrupted
 * (may be NULL) becomes true, the request is aborted. Returns the DONE
 * event's usage in *usage and the finish reason; an ERROR event's message is
 * printed as "vitamin CMD: ..." and makes the result VT_FINISH_NONE. */
vt_finish cli_stream(const char *cmd, vt_request *r, bool (*on_text)(void *, const char *, size_t),
                     void *user, volatile sig_atomic_t *interrupted, vt_usage *usage);
/* "prompt: N tokens (C cached), X tok/s; generated: N tokens, Y tok/s" on stderr. */
void cli_print_speeds(const vt_usage *u);

#endif
