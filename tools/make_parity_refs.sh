#!/bin/sh
# Makes the llama.cpp reference logits for the generated-model parity test:
# for each model in tests/data/parity/models.txt (or only those named on the
# command line), builds it with vitamin gen-model (+ quantize) and asks
# llama.cpp (../shared/oracle/logits.mjs) for the top-10 logits after every
# position of a short (24) and a long (100) token list, and for models named
# *rope* an extra-long one (256, where rope frequency factors and scaling
# matter). Run from the repo root after `make`, with ORACLE pointing at a
# folder where `npm install node-llama-cpp@3.22.1` was run, e.g.
#   ORACLE=/root/oracle tools/make_parity_refs.sh qwen3-f16 llama-rope-freqs
set -eu
ORACLE=${ORACLE:?set ORACLE to the folder with node_modules/node-llama-cpp}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
BIN=${BIN:-$(pwd)/build/vitamin}
out=tests/data/parity
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
short=$(seq 0 23 | awk '{printf "%s%d", (NR>1 ? "," : ""), (($1*7919+13)%31000)+1}')
long=$(seq 0 99 | awk '{printf "%s%d", (NR>1 ? "," : ""), (($1*104729+101)%31000)+1}')
xlong=$(seq 0 255 | awk '{printf "%s%d", (NR>1 ? "," : ""), (($1*7727+37)%31000)+1}')
only=" $* "
grep -v '^#' "$out/models.txt" | while read -r name vocab type args; do
    [ -n "$name" ] || continue
    [ "$only" = "  " ] || case "$only" in *" $name "*) ;; *) continue ;; esac
    echo "== $name" >&2
    # shellcheck disable=SC2086
    "$BIN" gen-model $args --vocab "tests/data/vocab/ggml-vocab-$vocab.gguf" -o "$tmp/$name.f16.gguf"
    model="$tmp/$name.f16.gguf"
    if [ "$type" != f16 ]; then
        "$BIN" quantize "$tmp/$name.f16.gguf" "$tmp/$name.gguf" "$type" 2>/dev/null
        model="$tmp/$name.gguf"
    fi
    (cd "$ORACLE" && node "$SHARED/oracle/logits.mjs" "$model" --tokens "$short" --top 10 --all) > "$out/$name.short.ref.json"
    (cd "$ORACLE" && node "$SHARED/oracle/logits.mjs" "$model" --tokens "$long" --top 10 --all) > "$out/$name.long.ref.json"
    case "$name" in *rope*)
        (cd "$ORACLE" && node "$SHARED/oracle/logits.mjs" "$model" --tokens "$xlong" --top 10 --all) > "$out/$name.xlong.ref.json" ;;
    esac
done
