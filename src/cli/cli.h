/*
 * cli.h - the `vitamin` command's subcommands. Each cmd_NAME takes the
 * arguments after the subcommand name (argv[0] is the subcommand) and returns
 * the process exit status. Each prints its own --help.
 */
#ifndef VT_CLI_H
#define VT_CLI_H

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);

/* Shared argument helpers (args.c). They print a one-line error to stderr
 * and return false on a bad value. */
#include <stdbool.h>
#include <stdint.h>
bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *opt, const char *s, double *out);
/* "1,2,3" -> newly allocated array; false on a malformed list. */
bool cli_parse_int_list(const char *opt, const char *s, int32_t **out, int *n);
/* Does argv[i] need a value, and is there one? Prints the error if not. */
bool cli_need_value(int argc, char **argv, int i);


/* Threads to use when -t is not given: the online cores (cmd_logits.c). */
#include "model/model.h"
int cli_default_threads(void);

#endif
