/*
 * cli.h - the `vitamin` command's subcommands and the helpers they share.
 * Each cmd_NAME takes the arguments after `vitamin` (argv[0] is the
 * subcommand), prints its own --help, and returns the exit status: 0 on
 * success, 1 when the work failed, 2 for a usage error. Errors are one line
 * on stderr.
 */
#ifndef VT_CLI_H
#define VT_CLI_H

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

/* Strict parsers for option values (args.c): the whole string must parse and
 * lie in range, else they print a one-line error naming the option and
 * return false. */
bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *opt, const char *s, double *out);
/* "1,2,3" -> newly allocated array; false on a malformed list. */
bool cli_parse_int_list(const char *opt, const char *s, int32_t **out, int *n);
/* Does argv[i] need a value, and is there one? Prints the error if not. */
bool cli_need_value(int argc, char **argv, int i);

/* Threads to use when -t is not given: the online cores (cmd_logits.c). */
int cli_default_threads(void);

/* Sampling options and model sessions shared by `vitamin run` and
 * `vitamin chat` (session.c). */
typedef struct {
    smp_params p;
    const char *stops[SMP_MAX_STOP];
} cli_sampling;

void cli_sampling_init(cli_sampling *c, int32_t max_tokens);
/* Consumes a sampling option at argv[i]: returns how many arguments it
 * used (0: not a sampling option), -1 after printing an error. */
int cli_sampling_option(cli_sampling *c, int argc, char **argv, int i);
extern const char *const cli_sampling_help;
int cli_session_open(const char *cmd, const char *path, long threads, long n_ctx, md_model **m,
                     tok_tokenizer **tok, kn_pool **pool, eng_session **s);
void cli_session_close(md_model *m, tok_tokenizer *tok, kn_pool *pool, eng_session *s);

#endif
