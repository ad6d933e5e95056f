#!/bin/sh
# make bench-serve: vitamin serve vs llama.cpp's llama-server on the same file,
# one after the other in the same run, driven by ../shared/oracle/loadgen.mjs
# (the official openai client). The TinyLlama-shaped Q4_K_M bench model of
# `make bench` (made here if missing), 64 requests, 32 at a time:
#   (a) prompt 256, generate 128
#   (b) prompt 256 of which 224 are shared by every request, generate 64
#   (c) prompt 32, generate 256
# llama-server runs as `-np 32 -c 16384 -t THREADS` (its KV: 16384 tokens in
# 32 slots of 512); vitamin serve gets the same KV memory (--ctx 16384, one
# pool) and THREADS threads. Prints one loadgen JSON line per run and a table
# of wall time, time to first token (p50) and failed requests, with ratios.
# Environment: ORACLE (folder with node_modules/node-llama-cpp and openai;
# required), LLAMA_PEER (where build_llama_server.sh builds llama-server;
# default ~/.cache/vitamin-llama-peer - the first build takes 10-20 minutes),
# THREADS (2), N (64), CONC (32), SCENARIOS ("a b c"), VT_SHARED (../shared),
# LLAMA_ARGS (more llama-server flags: on a machine where the AMX path of the
# llama-server this script builds segfaults at its first batch, as seen on a
# Sapphire Rapids VM in ggml_backend_amx_mul_mat, LLAMA_ARGS=--no-repack runs
# it without its AMX/repacked weights, a much weaker peer; say so beside the
# numbers). That crash is llama.cpp's own (ggml-org/llama.cpp#20824). A fairer
# peer there keeps the AVX-512 repacked kernels and leaves AMX out: configure
# the same source into LLAMA_PEER/build with -DGGML_NATIVE=OFF -DGGML_AVX2=ON
# -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON
# -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_INT8=OFF
# -DGGML_AMX_TILE=OFF, build the llama-server target, and point LLAMA_PEER at it
# (a llama-server already in LLAMA_PEER/build/bin is used as it is).
set -eu
BIN=${1:-build/vitamin}
SHARED=${VT_SHARED:-../shared}
ORACLE=${ORACLE:-}
THREADS=${THREADS:-2}
N=${N:-64}
CONC=${CONC:-32}
SCENARIOS=${SCENARIOS:-"a b c"}
PEER=${LLAMA_PEER:-$HOME/.cache/vitamin-llama-peer}
if [ -z "$ORACLE" ] || [ ! -d "$ORACLE/node_modules/node-llama-cpp" ] || [ ! -d "$ORACLE/node_modules/openai" ]; then
    echo "bench-serve: set ORACLE to a folder where 'npm install node-llama-cpp@3.22.1 openai' was run" >&2
    exit 2
fi
SHARED=$(cd "$SHARED" && pwd)
mkdir -p .bench
model=.bench/tinyllama.q4_k_m.gguf
if [ ! -f "$model" ]; then
    [ -f .bench/tinyllama.f16.gguf ] || "$BIN" gen-model --arch llama \
        --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf --dim 2048 --layers 22 --heads 32 \
        --kv-heads 4 --ff 5632 --ctx 2048 -o .bench/tinyllama.f16.gguf
    "$BIN" quantize -t "$THREADS" .bench/tinyllama.f16.gguf "$model" q4_k_m
fi
server=$PEER/build/bin/llama-server
if [ ! -x "$server" ]; then
    echo "bench-serve: building llama-server into $PEER (10-20 minutes the first time)" >&2
    ORACLE=$ORACLE sh "$SHARED/oracle/build_llama_server.sh" "$PEER" >/dev/null
fi
port_of() { # log file -> the port a server printed, waiting for it
    i=0
    while [ $i -lt 600 ]; do
        p=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p; s/.*server is listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -n 1)
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
wait_health() { # url
    i=0
    while [ $i -lt 600 ]; do
        curl -sf "$1/health" >/dev/null 2>&1 && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
load() { # base-url scenario -> one JSON line
    case $2 in
    a) set -- "$1" --prompt 256 --gen 128 ;;
    b) set -- "$1" --prompt 256 --shared-prefix 224 --gen 64 ;;
    c) set -- "$1" --prompt 32 --gen 256 ;;
    esac
    url=$1
    shift
    (cd "$ORACLE" && node "$SHARED/oracle/loadgen.mjs" --url "$url/v1" --model m --n "$N" \
        --conc "$CONC" --vocab 32000 "$@")
}
field() { sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$1" | head -n 1; }
p50() { sed -n 's/.*"ttft_ms":{"p50":\([0-9.]*\).*/\1/p' "$1"; }
: > .bench/serve.results
for s in $SCENARIOS; do
    for who in vitamin llama; do
        log=.bench/serve-$who.log
        if [ $who = vitamin ]; then
            "$BIN" serve -m "$model" --port 0 -t "$THREADS" --ctx 16384 --model-name m --no-memory > "$log" 2>&1 &
        else
            port=$((20000 + $$ % 20000))
            "$server" -m "$model" --host 127.0.0.1 --port "$port" -np "$CONC" -c 16384 \
                -t "$THREADS" ${LLAMA_ARGS:-} > "$log" 2>&1 &
        fi
        pid=$!
        if [ $who = vitamin ]; then
            port=$(port_of "$log") || { cat "$log" >&2; kill "$pid"; exit 1; }
        fi
        url=http://127.0.0.1:$port
        if ! wait_health "$url"; then
            echo "bench-serve: $who did not start (see LLAMA_ARGS above if llama-server crashed)" >&2
            cat "$log" >&2
            kill "$pid" 2>/dev/null || true
            exit 1
        fi
        out=.bench/serve-$s-$who.json
        load "$url" "$s" > "$out" || true
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        printf '%s %s ' "$s" "$who" >> .bench/serve.results
        cat "$out" >> .bench/serve.results
        cat "$out"
    done
done
printf '\n%d requests, %d at a time, %d threads, model %s\n' "$N" "$CONC" "$THREADS" "$model"
printf '| scenario | vitamin wall s | llama-server wall s | ratio | vitamin TTFT p50 ms | llama TTFT p50 ms | ratio | failed (vt / llama) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for s in $SCENARIOS; do
    v=.bench/serve-$s-vitamin.json
    l=.bench/serve-$s-llama.json
    vw=$(field "$v" wall_s); lw=$(field "$l" wall_s)
    vt=$(p50 "$v"); lt=$(p50 "$l")
    ve=$(field "$v" errors); le=$(field "$l" errors)
    vc=$(field "$v" completed); lc=$(field "$l" completed)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' "$s" "$vw" "$lw" \
        "$(echo "$vw $lw" | awk '{printf "%.2fx", $1 / $2}')" "$vt" "$lt" \
        "$(echo "$vt $lt" | awk '{ if ($2 > 0) printf "%.2fx", $1 / $2; else print "-"}')" \
        "$((N - ${vc%.*}))" "$((N - ${lc%.*}))"
done
