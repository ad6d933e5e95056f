#!/bin/sh
# Quick start: installs the build dependencies, builds vitamin, makes a small
# demo model (random weights, Llama-2 tokenizer, a ChatML chat template),
# runs it once from the command line, then serves it with `vitamin serve`
# and sends one streamed chat request with curl before stopping the server.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-debian.sh
make -j2
demo=build/demo.gguf
if [ ! -f "$demo" ]; then
    echo "== making a demo model ($demo)"
    ./build/vitamin gen-model --arch llama --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf \
        --dim 256 --layers 4 --heads 8 --kv-heads 2 --ff 768 \
        --chat-template scripts/chatml.jinja -o build/demo.f16.gguf
    ./build/vitamin quantize build/demo.f16.gguf "$demo" q4_k_m
fi
echo "== vitamin info -m $demo"
./build/vitamin info -m "$demo"
echo "== vitamin run -m $demo -p 'Once upon a time' -n 24 --temp 0   (random weights: gibberish)"
./build/vitamin run -m "$demo" -p "Once upon a time" -n 24 --temp 0
echo

echo "== vitamin serve -m $demo --port 0   (a free port on 127.0.0.1)"
log=build/quickstart-serve.log
./build/vitamin serve -m "$demo" --port 0 --model-name demo > "$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
url=""
i=0
while [ $i -lt 100 ]; do
    url=$(sed -n 's/^vitamin serve: listening on \(http:[^ ]*\).*/\1/p' "$log")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
    i=$((i + 1))
done
[ -n "$url" ] || { echo "quickstart: the server did not start" >&2; cat "$log" >&2; exit 1; }
echo "   listening on $url; a streamed chat completion:"
echo "== curl $url/v1/chat/completions (stream)"
curl -sS -N "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "demo", "stream": true, "max_tokens": 16, "temperature": 0,
         "messages": [{"role": "user", "content": "Hello! Who are you?"}]}'
echo
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
echo "== server log ($log):"
cat "$log"
echo "== done. Try: ./build/vitamin serve -m $demo   and open http://127.0.0.1:8080/ (the chat page)"
