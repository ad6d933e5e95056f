#!/bin/sh
# make bench: vitamin vs llama.cpp, same machine, same run, same files.
# Builds the benchmark models (cached in .bench/) with gen-model + quantize,
# then for each runs `vitamin bench` and ../shared/oracle/bench.py (llama.cpp
# through node-llama-cpp's prebuilt library) and prints the ratios.
# Each pair runs REPEAT times, alternating vitamin and llama.cpp (this machine
# is shared and noisy), and the medians are compared. Then the tokenizer
# speed benchmark (bench/bench_tokenizer.sh).
# The batched table: `vitamin bench --parallel N` against `bench.py
# --parallel N` (N sequences, each prefilled with its own random prompt of
# PAR_PROMPT tokens, then PAR_GEN steps each decoding one token of every
# sequence in one batch), for every N in PARALLEL, alternating and medians
# as above.
# Environment: ORACLE = folder with node_modules/node-llama-cpp (required),
# VT_SHARED (../shared), THREADS (2), PROMPT (512), GEN (128), REPEAT (3),
# MODELS (default: all four), TOKENIZER (1: also run the tokenizer benchmark),
# SINGLE (1: the single-sequence table), PARALLEL ("8 32 64"; empty: no
# batched table), PAR_PROMPT (256), PAR_GEN (128).
set -eu
BIN=${1:-build/vitamin}
SHARED=${VT_SHARED:-../shared}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
REPEAT=${REPEAT:-3}
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
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
if [ "${SINGLE:-1}" = 1 ]; then
printf '\n%d threads, prompt %d, %d generated tokens, median of %d alternating runs\n' \
    "$THREADS" "$PROMPT" "$GEN" "$REPEAT"
printf '%-18s %10s %10s %7s   %10s %10s %7s\n' model "vt pp" "llama pp" ratio "vt tg" "llama tg" ratio
printf '%-18s %10s %10s %7s   %10s %10s %7s\n' "" "tok/s" "tok/s" "" "tok/s" "tok/s" ""
for m in $MODELS; do
    f=.bench/$m.gguf
    : > .bench/vt.all; : > .bench/llama.all
    i=0
    while [ "$i" -lt "$REPEAT" ]; do
        "$BIN" bench -m "$f" -t "$THREADS" -p "$PROMPT" -n "$GEN" >> .bench/vt.all
        NLC=$ORACLE /usr/bin/python3 "$SHARED/oracle/bench.py" "$f" --threads "$THREADS" \
            --prompt "$PROMPT" --gen "$GEN" 2>/dev/null >> .bench/llama.all
        i=$((i + 1))
    done
    vpp=$(field .bench/vt.all prefill_tok_s | median); vtg=$(field .bench/vt.all decode_tok_s | median)
    lpp=$(field .bench/llama.all prefill_tok_s | median); ltg=$(field .bench/llama.all decode_tok_s | median)
    printf '%-18s %10s %10s %6sx   %10s %10s %6sx\n' "$m" "$vpp" "$lpp" "$(ratio "$vpp" "$lpp")" \
        "$vtg" "$ltg" "$(ratio "$vtg" "$ltg")"
done
fi
PARALLEL=${PARALLEL-8 32 64}
PAR_PROMPT=${PAR_PROMPT:-256}
PAR_GEN=${PAR_GEN:-128}
if [ -n "$PARALLEL" ]; then
    printf '\nbatched: %d threads, N sequences of %d prompt tokens each, then %d steps of N tokens, median of %d alternating runs\n' \
        "$THREADS" "$PAR_PROMPT" "$PAR_GEN" "$REPEAT"
    printf '%-18s %4s %10s %10s %7s   %10s %10s %7s\n' model N "vt pp" "llama pp" ratio "vt batch" "llama bt" ratio
    printf '%-18s %4s %10s %10s %7s   %10s %10s %7s\n' "" "" "tok/s" "tok/s" "" "tok/s" "tok/s" ""
    for m in $MODELS; do
        for np in $PARALLEL; do
            f=.bench/$m.gguf
            : > .bench/vt.all; : > .bench/llama.all
            i=0
            while [ "$i" -lt "$REPEAT" ]; do
                "$BIN" bench -m "$f" -t "$THREADS" -p "$PAR_PROMPT" -n "$PAR_GEN" --parallel "$np" \
                    >> .bench/vt.all
                NLC=$ORACLE /usr/bin/python3 "$SHARED/oracle/bench.py" "$f" --threads "$THREADS" \
                    --prompt "$PAR_PROMPT" --gen "$PAR_GEN" --parallel "$np" 2>/dev/null >> .bench/llama.all
                i=$((i + 1))
            done
            vpp=$(field .bench/vt.all prefill_tok_s | median)
            vbt=$(field .bench/vt.all batched_decode_tok_s | median)
            lpp=$(field .bench/llama.all prefill_tok_s | median)
            lbt=$(field .bench/llama.all batched_decode_tok_s | median)
            printf '%-18s %4s %10s %10s %6sx   %10s %10s %6sx\n' "$m" "$np" "$vpp" "$lpp" \
                "$(ratio "$vpp" "$lpp")" "$vbt" "$lbt" "$(ratio "$vbt" "$lbt")"
        done
    done
fi
if [ "${TOKENIZER:-1}" = 1 ]; then
    printf '\n'
    VT_SHARED=$SHARED ORACLE=$ORACLE sh bench/bench_tokenizer.sh "$BIN"
fi
