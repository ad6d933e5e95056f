#!/bin/sh
# make bench: vitamin vs llama.cpp, same machine, same run, same files.
# Builds the benchmark models (cached in .bench/) with gen-model + quantize,
# then for each runs `vitamin bench` and ../shared/oracle/bench.py (llama.cpp
# through node-llama-cpp's prebuilt library) and prints the ratios.
# Environment: ORACLE = folder with node_modules/node-llama-cpp (required),
# VT_SHARED (../shared), THREADS (2), PROMPT (512), GEN (128),
# MODELS (default: all four).
set -eu
BIN=${1:-build/vitamin}
SHARED=${VT_SHARED:-../shared}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
ORACLE=${ORACLE:-}
if [ -z "$ORACLE" ] || [ ! -d "$ORACLE/node_modules/node-llama-cpp" ]; then
    echo "bench: set ORACLE to a folder where 'npm install node-llama-cpp@3.22.1' was run" >&2
    exit 2
fi
[ -d "$SHARED/oracle" ] || { echo "bench: $SHARED/oracle not found (set VT_SHARED)" >&2; exit 2; }
mkdir -p .bench
VOCAB_LLAMA=tests/data/vocab/ggml-vocab-llama-spm.gguf
VOCAB_QWEN2=$SHARED/fixtures/vocab/ggml-vocab-qwen2.gguf

make_model() { # name vocab args...
    name=$1; vocab=$2; shift 2
    [ -f ".bench/$name.f16.gguf" ] && return 0
    echo "bench: generating .bench/$name.f16.gguf" >&2
    "$BIN" gen-model "$@" --vocab "$vocab" -o ".bench/$name.f16.gguf"
}
quant() { # name type
    [ -f ".bench/$1.$2.gguf" ] && return 0
    echo "bench: quantizing .bench/$1.$2.gguf" >&2
    "$BIN" quantize -t "$THREADS" ".bench/$1.f16.gguf" ".bench/$1.$2.gguf" "$2"
}

make_model tinyllama "$VOCAB_LLAMA" --arch llama --dim 2048 --layers 22 --heads 32 --kv-heads 4 \
    --ff 5632 --ctx 2048
make_model qwen3moe "$VOCAB_QWEN2" --arch qwen3moe --dim 1024 --layers 16 --heads 16 --kv-heads 4 \
    --head-dim 64 --experts 32 --experts-used 4 --expert-ff 768 --tied --rope-base 1000000
MODELS=${MODELS:-"tinyllama.q8_0 tinyllama.q4_k_m qwen3moe.q8_0 qwen3moe.q4_k_m"}
for m in $MODELS; do quant "${m%%.*}" "${m#*.}"; done

field() { sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$1"; }
printf '\n%-18s %10s %10s %7s   %10s %10s %7s\n' model "vt pp" "llama pp" ratio "vt tg" "llama tg" ratio
printf '%-18s %10s %10s %7s   %10s %10s %7s\n' "" "tok/s" "tok/s" "" "tok/s" "tok/s" ""
for m in $MODELS; do
    f=.bench/$m.gguf
    "$BIN" bench -m "$f" -t "$THREADS" -p "$PROMPT" -n "$GEN" > .bench/vt.json
    NLC=$ORACLE /usr/bin/python3 "$SHARED/oracle/bench.py" "$f" --threads "$THREADS" \
        --prompt "$PROMPT" --gen "$GEN" > .bench/llama.json
    vpp=$(field .bench/vt.json prefill_tok_s); vtg=$(field .bench/vt.json decode_tok_s)
    lpp=$(field .bench/llama.json prefill_tok_s); ltg=$(field .bench/llama.json decode_tok_s)
    printf '%-18s %10s %10s %6.2fx   %10s %10s %6.2fx\n' "$m" "$vpp" "$lpp" \
        "$(echo "$vpp $lpp" | awk '{print $1/$2}')" "$vtg" "$ltg" \
        "$(echo "$vtg $ltg" | awk '{print $1/$2}')"
done
