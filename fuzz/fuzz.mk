# libFuzzer harnesses: every fuzz/fuzz_NAME.c becomes build-fuzz/fuzz_NAME,
# linked with all library sources compiled by clang with ASan+UBSan.
#   make fuzz                          build them all
#   make -f fuzz/fuzz.mk FBUILD=build-fuzz-gguf FUZZERS=fuzz_gguf \
#        FMODULES="util gguf"
#                                      one harness over some modules (a name)
#                                      or single files (a path under src/)
# Harnesses link against an archive, so each pulls in only what it uses.
#   build-fuzz/fuzz_gguf -max_total_time=600 fuzz/corpus-gguf
# See fuzz/README.md (seed corpora, dictionaries, running in the background).
FCC      ?= clang
FBUILD   ?= build-fuzz
FFLAGS   := -std=c17 -O1 -g -D_GNU_SOURCE -pthread -Iinclude -Isrc -Wall -Wextra -Werror \
            -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -DVT_NO_FORCE_INLINE
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZERS  ?= $(FUZZ_SRC:fuzz/%.c=%)
FMODULES ?= $(filter-out cli,$(notdir $(wildcard src/*)))
LIB_SRC  := $(sort $(foreach m,$(FMODULES),$(if $(filter %.c,$(m)),src/$(m),$(wildcard src/$(m)/*.c))))
LIB_OBJ  := $(LIB_SRC:%.c=$(FBUILD)/%.o)
ISA_AVX2   := -mavx2 -mfma -mf16c -mbmi2
ISA_AVX512 := $(ISA_AVX2) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16

all: $(FUZZERS:%=$(FBUILD)/%)

$(FBUILD)/%_avx2.o: EXTRA := $(ISA_AVX2)
$(FBUILD)/%_avx512.o: EXTRA := $(ISA_AVX512)
$(FBUILD)/src/kernels/amx.o: EXTRA := $(ISA_AVX512) -mamx-tile -mamx-int8

$(FBUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FCC) $(FFLAGS) $(EXTRA) -MMD -MP -c $< -o $@

$(FBUILD)/libfuzzlib.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FBUILD)/fuzz_%: fuzz/fuzz_%.c $(FBUILD)/libfuzzlib.a
	$(FCC) $(FFLAGS) -MMD -MP -MF $@.d -fsanitize=fuzzer $(filter %.c %.a,$^) -o $@ -ljansson \
	    -lsqlite3 -lpq -lm

.PHONY: all
.SECONDARY:

# header dependencies (a changed struct rebuilds every object that uses it)
-include $(shell find $(FBUILD) -name '*.d' 2>/dev/null)
