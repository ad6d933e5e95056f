/*
 * main.c - the `vitamin` command: dispatches to a subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "vitamin.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive chat using the model's template"},
    {"serve", cmd_serve, "serve the model over HTTP (OpenAI-compatible API)"},
    {"run-batch", cmd_run_batch, "run an OpenAI Batch API file (JSONL) through the engine"},
    {"info", cmd_info, "describe a GGUF model (architecture, tensors, memory)"},
    {"logits", cmd_logits, "print next-token logits for a token list (JSON)"},
    {"tokenize", cmd_tokenize, "tokenize text with a model's vocabulary"},
    {"template", cmd_template, "render a chat template for a context (JSON)"},
    {"quantize", cmd_quantize, "convert a GGUF model to another tensor type"},
    {"gen-model", cmd_gen_model, "write a random-weight GGUF model (tests, benchmarks)"},
    {"bench", cmd_bench, "measure prefill and decode speed"},
    {"memory", cmd_memory, "the long-term memory store: add, import, search, export, forget"},
};

static void usage(FILE *out)
{
    fprintf(out, "vitamin %s - LLM inference engine\n\nusage: vitamin COMMAND [options]\n\n"
                 "commands:\n", VT_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn)
            fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nRun 'vitamin COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vitamin %s\n", VT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].fn && !strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vitamin: unknown command '%s' (see 'vitamin --help')\n", argv[1]);
    return 2;
}
