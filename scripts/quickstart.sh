#!/bin/sh
# Quick start: installs the build dependencies, builds vitamin, makes a small
# demo model (random weights, Llama-2 tokenizer) and runs it.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-debian.sh
make -j2
demo=build/demo.gguf
if [ ! -f "$demo" ]; then
    echo "== making a demo model ($demo)"
    ./build/vitamin gen-model --arch llama --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf \
        --dim 256 --layers 4 --heads 8 --kv-heads 2 --ff 768 -o build/demo.f16.gguf
    ./build/vitamin quantize build/demo.f16.gguf "$demo" q4_k_m
fi
echo "== vitamin info -m $demo"
./build/vitamin info -m "$demo"
echo "== vitamin logits -m $demo --tokens 1,450,4996,17354,1701 --top 5"
./build/vitamin logits -m "$demo" --tokens 1,450,4996,17354,1701 --top 5
echo "== vitamin run -m $demo -p 'Once upon a time' -n 24 --temp 0   (random weights: gibberish)"
./build/vitamin run -m "$demo" -p "Once upon a time" -n 24 --temp 0
echo
echo "== vitamin bench -m $demo -p 128 -n 32"
./build/vitamin bench -m "$demo" -p 128 -n 32
