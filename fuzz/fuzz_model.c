/*
 * fuzz_model.c - libFuzzer harness for md_load_gguf (model metadata and
 * tensor binding) and, for every model it accepts, one forward pass. The
 * input is a GGUF file whose tensor data may be missing: the harness puts it
 * at the start of a buffer followed by PAD zero bytes, so that the tensor
 * infos of a small model (up to PAD bytes of weights) find data of the size
 * they declare, while the fuzzed bytes stay a few kilobytes of metadata and
 * tensor infos. A model that loads must survive md_eval over two tokens with
 * zero weights: md_load's promise is that the forward pass can trust what it
 * accepted. Any crash, leak or undefined behaviour stops the run.
 *
 * Seeds: header-only copies of small models of every architecture, written
 * by tests/test_model_load with VT_MODEL_CORPUS=DIR (see fuzz/README.md).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model.h"

#define PAD (1u << 20)
#define MAX_INPUT (1u << 16)

static uint8_t *buf; /* MAX_INPUT + PAD bytes, zero past the input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    if (!buf && !(buf = calloc(1, MAX_INPUT + PAD)))
        abort();
    memcpy(buf, data, size);
    gguf_file *g = NULL;
    if (gguf_open_memory(buf, size + PAD, &g) == VT_OK) {
        md_model *m = NULL;
        if (md_load_gguf(g, &m) == VT_OK) {
            const md_hparams *hp = &m->hp;
            if (hp->n_vocab < 1 || hp->dim < 1 || hp->n_layers < 1 || hp->head_dim < 1 ||
                hp->n_heads % hp->n_kv_heads || hp->n_experts_used > hp->n_experts)
                __builtin_trap();
            int32_t tokens[2] = {0, (int32_t)(hp->n_vocab - 1)};
            float *logits = NULL;
            if (md_eval(m, NULL, tokens, 2, false, &logits, NULL) == VT_OK && !logits)
                __builtin_trap();
            free(logits);
            md_destroy(m);
        } else if (m) {
            __builtin_trap(); /* *out must be NULL on failure */
        }
        gguf_close(g);
    }
    memset(buf, 0, size);
    return 0;
}
