# vitamin - plain GNU Makefile.
#   make                       build/vitamin and build/libvitamin.a
#   make test                  unit + parity tests (summary line at the end)
#   make SANITIZE=address,undefined test
#   make check                 both of the above, then make fuzz-smoke (what CI runs)
#   make test-tsan             the thread tests under ThreadSanitizer
#   make bench                 benchmarks against llama.cpp (needs the oracle)
#   make bench-kv              KV efficiency: paged pool vs per-slot cache (no oracle)
#   make bench-drawer          the KV drawer: a second turn after a restart vs recompute
#   make bench-recall          memory recall quality (EvHit@5/@10) vs the FTS5 baseline
#   make bench-memory          memory store speed: import rate, search p95 at 1M memories
#   make bench-grammar         grammar masks: vitamin vs llama.cpp's grammar sampler (oracle)
#   make test-grammar          the JSON Schema generations at full size (200 per schema)
#   make fuzz                  libFuzzer harnesses (clang), see fuzz/README.md
#   make fuzz-smoke            build them and run each a few seconds over its seeds

CC       ?= cc
OPT      ?= -O2
SANITIZE ?=
SHARED   ?= $(if $(VT_SHARED),$(VT_SHARED),$(abspath ../shared))
BUILD    ?= build

CFLAGS_BASE := -std=c17 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
               -Iinclude -Isrc -MMD -MP
LDLIBS   := -lmicrohttpd -ljansson -lsqlite3 -lpq -lm -lpthread
LDFLAGS  ?=

ifneq ($(SANITIZE),)
  BUILD := build-san
  CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZE)
endif

ISA_AVX2   := -mavx2 -mfma -mf16c -mbmi2
ISA_AVX512 := $(ISA_AVX2) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16

# MODULES / TESTS narrow a build to some modules and test programs (e.g.
# `make BUILD=build-x MODULES="util kernels" TESTS=test_quants check-some`).
MODULES  ?= $(filter-out cli,$(notdir $(wildcard src/*)))
TESTS    ?= $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
LIB_SRC  := $(sort $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(foreach t,$(TESTS),tests/$(t).c))
TESTLIB_SRC := tests/harness.c

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# the chat page (GET /): src/server/page.html as C, with its CSP (the hashes
# of its inline script and style), made by tools/embed_page.py
ifneq ($(filter server,$(MODULES)),)
  LIB_OBJ += $(BUILD)/gen/page_html.o
endif

all: $(BUILD)/vitamin $(BUILD)/libvitamin.a

$(BUILD)/%_avx2.o: EXTRA := $(ISA_AVX2)
$(BUILD)/%_avx512.o: EXTRA := $(ISA_AVX512)
$(BUILD)/src/kernels/amx.o: EXTRA := $(ISA_AVX512) -mamx-tile -mamx-int8

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(EXTRA) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/page_html.c: src/server/page.html tools/embed_page.py
	@mkdir -p $(dir $@)
	python3 tools/embed_page.py $< $@
$(BUILD)/gen/page_html.o: $(BUILD)/gen/page_html.c
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

$(BUILD)/libvitamin.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vitamin: $(CLI_OBJ) $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTLIB_OBJ) $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

# the llama.cpp parity tests share a comparison helper
$(BUILD)/tests/test_parity_fixtures $(BUILD)/tests/test_parity_generated: $(BUILD)/tests/parity.o
# the tests that run `vitamin serve` as a child share its start and stop
$(BUILD)/tests/test_page $(BUILD)/tests/test_soak $(BUILD)/tests/test_serve \
    $(BUILD)/tests/test_serve_embed $(BUILD)/tests/test_grammar $(BUILD)/tests/test_grammar_json \
    $(BUILD)/tests/test_serve_memory $(BUILD)/tests/test_toolcall_serve \
    $(BUILD)/tests/test_serve_format: $(BUILD)/tests/serve_proc.o
# test_alloc_fail counts and fails the library's allocations through wrappers
$(BUILD)/tests/test_alloc_fail: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
    -Wl,--wrap=free,--wrap=strdup,--wrap=strndup

tests: $(TEST_BIN) $(BUILD)/vitamin

test: tests
	@VT_SHARED=$(SHARED) VT_BIN=$(abspath $(BUILD)/vitamin) VT_BUILD=$(abspath $(BUILD)) \
	  sh tests/run.sh $(BUILD)/tests

# Everything CI runs: the suite, then the suite again under ASan+UBSan, the
# thread tests under TSan, then every fuzz harness built (clang) and run
# briefly over its seeds.
check: test
	$(MAKE) SANITIZE=address,undefined test
	$(MAKE) test-tsan
	$(MAKE) fuzz-smoke

# Builds and runs only the test programs in TESTS (no vitamin binary built;
# tests that run one use TEST_BIN_VITAMIN).
TEST_BIN_VITAMIN ?= $(abspath $(BUILD)/vitamin)
check-some: $(TEST_BIN)
	@VT_SHARED=$(SHARED) VT_BIN=$(TEST_BIN_VITAMIN) VT_BUILD=$(abspath $(BUILD)) \
	  VT_ENGINE_THREADS=$(VT_ENGINE_THREADS) sh tests/run.sh $(BUILD)/tests

# The thread tests under ThreadSanitizer (own build folder: $(BUILD)-tsan):
# the pool, and the engine's threads (clients submitting, reading and
# aborting while the engine thread steps); models made by this build's vitamin.
TSAN_TESTS ?= test_pool test_engine
test-tsan: $(BUILD)/vitamin
	$(MAKE) BUILD=$(BUILD)-tsan SANITIZE=thread TESTS="$(TSAN_TESTS)" \
	  TEST_BIN_VITAMIN=$(abspath $(BUILD)/vitamin) VT_ENGINE_THREADS=1 check-some

bench: all
	@VT_SHARED=$(SHARED) sh bench/run.sh $(BUILD)/vitamin

# Serving speed: vitamin serve vs llama-server under loadgen.mjs (bench/serve.sh).
bench-serve: all
	@VT_SHARED=$(SHARED) sh bench/serve.sh $(BUILD)/vitamin

# Kernel micro-benchmarks (bench/bench_kernels.c; prints tables, see --help
# there): make bench-kernels ARGS="--gemv-only --tok 8 q8_0".
$(BUILD)/bench/bench_kernels: $(BUILD)/bench/bench_kernels.o $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)
bench-kernels: $(BUILD)/bench/bench_kernels
	$(BUILD)/bench/bench_kernels $(ARGS)

# KV efficiency (issue 7): vitamin's paged pool vs a per-slot cache (llama.cpp's
# -np N -c C) on a mixed-length workload, then the engine's own counters.
# test_kv_efficiency runs a small version of the same simulation.
$(BUILD)/bench/bench_kv: $(BUILD)/bench/bench_kv.o $(BUILD)/bench/kvsim.o $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)
$(BUILD)/tests/test_kv_efficiency: $(BUILD)/bench/kvsim.o
bench-kv: $(BUILD)/bench/bench_kv $(BUILD)/vitamin
	$(BUILD)/bench/bench_kv --vitamin $(BUILD)/vitamin

# The KV drawer (issue 9): a 2,000-token conversation's second turn after a
# restart, from the drawer vs recomputed (bench/drawer.py).
bench-drawer: all
	python3 bench/drawer.py $(BUILD)/vitamin

# Recall quality of the long-term memory (issue 9): English and Korean
# multi-session conversations, vitamin memory search vs plain FTS5 (bench/recall).
bench-recall: all
	python3 bench/recall/eval.py --vitamin $(BUILD)/vitamin

# The memory store's speed (issue 9): import rate, and search p95 for a user with
# 100,000 memories (1,024-dim embeddings) in a store of 1,000,000 (built once
# into .bench/, bench/memory.c).
$(BUILD)/bench/bench_memory: $(BUILD)/bench/memory.o $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)
bench-memory: $(BUILD)/bench/bench_memory $(BUILD)/vitamin
	$(BUILD)/bench/bench_memory --vitamin $(BUILD)/vitamin --dir .bench

# The memory store's kill -9 test at length (the suite runs 200 rounds).
test-memory-crash:
	VT_MEMORY_CRASH_ROUNDS=2000 $(MAKE) BUILD=$(BUILD) TESTS=test_memory_crash check-some

# Grammar masks (issue 10): microseconds per token on the Llama-3 and Qwen2
# vocabularies beside llama.cpp's grammar sampler (node-llama-cpp from
# .ci/node or VT_NODE_DIR), bench/grammar_bench.c.
$(BUILD)/bench/grammar_bench: $(BUILD)/bench/grammar_bench.o $(BUILD)/libvitamin.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)
bench-grammar: $(BUILD)/bench/grammar_bench $(BUILD)/vitamin
	$(BUILD)/bench/grammar_bench --vitamin $(BUILD)/vitamin --shared $(SHARED) \
	  --node-dir $(if $(VT_NODE_DIR),$(VT_NODE_DIR),.ci/node)

# test_grammar_json at full size: 200 generations per schema (the suite runs 40).
test-grammar: $(BUILD)/vitamin
	VT_GRAMMAR_GENS=200 $(MAKE) BUILD=$(BUILD) TESTS=test_grammar_json check-some

FBUILD ?= build-fuzz
fuzz:
	$(MAKE) -f fuzz/fuzz.mk FBUILD=$(FBUILD)

# Builds every fuzz/fuzz_*.c and runs each a few seconds (fuzz/smoke.sh); the
# seeds come from test binaries of $(BUILD).
fuzz-smoke: $(BUILD)/tests/test_gguf $(BUILD)/tests/test_model_load fuzz
	sh fuzz/smoke.sh $(FBUILD) $(BUILD)

clean:
	rm -rf build build-*

.PHONY: all tests test check check-some test-tsan bench bench-serve bench-kernels bench-kv bench-drawer bench-recall bench-memory test-memory-crash bench-grammar test-grammar fuzz fuzz-smoke clean
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
