#!/bin/sh
# make_embed_refs.sh - llama.cpp's embeddings for tests/test_embed.c: makes the
# test's models with gen-model (the same arguments as the test), asks
# node-llama-cpp's LlamaEmbeddingContext (tools/embed_ref.mjs) for the
# embedding of one token list, and writes tests/data/embed/NAME.txt (the
# tokens on line 1, llama.cpp's raw vector on line 2).
# Usage: ORACLE=~/oracle VITAMIN=build/vitamin sh tools/make_embed_refs.sh
set -eu
ORACLE=${ORACLE:-/root/oracle}
VITAMIN=${VITAMIN:-build/vitamin}
VOCAB=tests/data/vocab/ggml-vocab-llama-spm.gguf
ARGS="--arch llama --dim 128 --layers 2 --heads 4 --kv-heads 2 --ff 256 --type q8_0"
TOKENS=1,450,4996,17354,1701,432,29916,2251,975,278,17366,11203,29889,13,1576,3974,338,1716,322,3211,29892,541,263,1243,29991,8969,12
ROOT=$(pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p tests/data/embed
for p in mean last cls default; do
    opt="--pooling $p"
    [ "$p" = default ] && opt=""
    # shellcheck disable=SC2086
    "$VITAMIN" gen-model $ARGS $opt --vocab "$VOCAB" -o "$TMP/$p.gguf" >/dev/null
    (cd "$ORACLE" && node "$ROOT/tools/embed_ref.mjs" "$TMP/$p.gguf" "$TOKENS") >"$TMP/$p.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2]); print(",".join(repr(x) for x in d["vector"]))' \
        "$TMP/$p.json" "$TOKENS" >"tests/data/embed/$p.txt"
    echo "tests/data/embed/$p.txt"
done
