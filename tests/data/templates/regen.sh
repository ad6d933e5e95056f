#!/bin/sh
# Regenerates the expected renderings of this folder's own contexts
# (ctx-*.json) for every template (*.jinja) with the oracle,
# @huggingface/jinja through ../shared/oracle/template.mjs:
#   MODEL.ctx-NAME.expected.json   the rendering, as template.mjs prints it
#   MODEL.ctx-NAME.error.txt       the oracle's error message, when it throws
# The clock is pinned (fixed-date.mjs, TZ=UTC) for strftime_now().
# gguf-qwen2-dense.Q8_0.conv-multiturn.expected.json was made the same way
# from the tokenizer.chat_template of ../shared/fixtures/models/qwen2-dense.Q8_0.gguf
# (saved to a file first), for the test of `vitamin template -m`.
#   ORACLE=/path/with/node_modules SHARED=../shared sh tests/data/templates/regen.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$here/../../../../shared}
ORACLE=${ORACLE:-/work/oracle}
cd "$ORACLE"
for t in "$here"/*.jinja; do
  m=$(basename "$t" .jinja)
  for c in "$here"/ctx-*.json; do
    cn=$(basename "$c" .json)
    out="$here/$m.$cn.expected.json"; err="$here/$m.$cn.error.txt"
    rm -f "$out" "$err"
    if TZ=UTC node --import "file://$here/fixed-date.mjs" "$SHARED/oracle/template.mjs" "$t" "$c" \
         > "$out.tmp" 2> "$err.tmp"; then
      mv "$out.tmp" "$out"; rm -f "$err.tmp"
    else
      rm -f "$out.tmp"
      sed -n 's/^Error: //p' "$err.tmp" | head -n 1 > "$err"
      rm -f "$err.tmp"
    fi
  done
done
