#!/bin/sh
# Tokenization speed, vitamin vs llama.cpp, same machine, same run, same text:
# MB/s of tokenizing ~1 MB of mixed-language text (Korean, Japanese, Chinese,
# emoji, code, English... made deterministically by repeating the texts of
# tests/data/tokenizer/cases.inp and llama.cpp's test vectors) with the
# Llama-3 (llama-bpe) and Qwen2 vocabularies. vitamin: `vitamin tokenize
# --bench`; llama.cpp: node-llama-cpp's model.tokenize (bench/tokenize_speed.mjs).
# Both: best of REPEAT runs after a warm-up, no BOS, specials not parsed; the
# token counts must agree.
#   ORACLE=/path/with/node_modules sh bench/bench_tokenizer.sh [build/vitamin]
# Environment: ORACLE (required), VT_SHARED (../shared), REPEAT (5).
set -eu
BIN=${1:-build/vitamin}
SHARED=${VT_SHARED:-../shared}
REPEAT=${REPEAT:-5}
ORACLE=${ORACLE:-}
if [ -z "$ORACLE" ] || [ ! -d "$ORACLE/node_modules/node-llama-cpp" ]; then
    echo "bench_tokenizer: set ORACLE to a folder where 'npm install node-llama-cpp@3.22.1' was run" >&2
    exit 2
fi
[ -x "$BIN" ] || { echo "bench_tokenizer: $BIN not found (make first)" >&2; exit 2; }
[ -d "$SHARED/fixtures/vocab" ] || { echo "bench_tokenizer: $SHARED/fixtures/vocab not found (set VT_SHARED)" >&2; exit 2; }
mkdir -p .bench
TEXT=.bench/tokenize-1mb.txt
if [ ! -f "$TEXT" ]; then
    : > "$TEXT.tmp"
    while [ "$(wc -c < "$TEXT.tmp")" -lt 1048576 ]; do
        grep -v '^__ggml_vocab_test__$' tests/data/tokenizer/cases.inp >> "$TEXT.tmp"
        grep -v '^__ggml_vocab_test__$' tests/data/vocab/ggml-vocab-llama-bpe.gguf.inp >> "$TEXT.tmp"
    done
    mv "$TEXT.tmp" "$TEXT"
fi
SCRIPT=$(cd "$(dirname "$0")" && pwd)/tokenize_speed.mjs
field() { sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$1"; }

printf '\n%-10s %10s %10s %12s %12s %7s\n' vocab bytes tokens "vitamin MB/s" "llama MB/s" ratio
for v in llama-bpe qwen2; do
    vocab=$SHARED/fixtures/vocab/ggml-vocab-$v.gguf
    "$BIN" tokenize -m "$vocab" --bench "$TEXT" --repeat "$REPEAT" > .bench/tok-vt.json
    (cd "$ORACLE" && NODE_PATH="$ORACLE/node_modules" node "$SCRIPT" "$vocab" "$OLDPWD/$TEXT" "$REPEAT") \
        2>/dev/null > .bench/tok-llama.json
    vt=$(field .bench/tok-vt.json mb_per_s)
    ll=$(field .bench/tok-llama.json mb_per_s)
    nv=$(field .bench/tok-vt.json tokens)
    nl=$(field .bench/tok-llama.json tokens)
    [ "$nv" = "$nl" ] || echo "bench_tokenizer: $v: token counts differ (vitamin $nv, llama.cpp $nl)" >&2
    printf '%-10s %10s %10s %12.2f %12.2f %6.2fx\n' "$v" "$(field .bench/tok-vt.json bytes)" "$nv" \
        "$vt" "$ll" "$(echo "$vt $ll" | awk '{ printf "%.2f", $1 / $2 }')"
done
