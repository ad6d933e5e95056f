#!/bin/sh
# A short run of every libFuzzer harness (what `make check` does after the
# suite, so that a harness that stops building or crashes at once is seen):
#   sh fuzz/smoke.sh FBUILD BUILD
# FBUILD holds the harnesses (fuzz/fuzz.mk), BUILD the test binaries that
# write the seed corpora (tests/test_gguf, tests/test_model_load). Each
# harness runs FUZZ_SMOKE_RUNS inputs (default 2000, at most
# FUZZ_SMOKE_SECONDS, default 20 s) over its seeds, into a scratch corpus.
# Exit status: 0 only if every fuzz/fuzz_*.c was built and its run ended
# without a finding. A harness this script has no seed source for runs from
# an empty corpus (add a line to seeds() for it).
fb=${1:-build-fuzz}; bd=${2:-build}
runs=${FUZZ_SMOKE_RUNS:-2000}; secs=${FUZZ_SMOKE_SECONDS:-20}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
failed=0
seeds() { # $1 harness name -> prints the seed folder (made in $tmp)
    d="$tmp/seeds-$1"; mkdir -p "$d"
    case "$1" in
    gguf) VT_GGUF_CORPUS="$d" "$bd/tests/test_gguf" > /dev/null 2>&1 ;;
    model) VT_MODEL_CORPUS="$d" "$bd/tests/test_model_load" > /dev/null 2>&1 ;;
    vocab) VT_FUZZ_VOCAB_SEEDS="$d" "$fb/fuzz_vocab" > /dev/null 2>&1 ;;
    tokenizer) cp tests/data/vocab/*.inp "$d"/ ;;
    template) cp tests/data/templates/*.jinja "$d"/ ;;
    oai) cp fuzz/seeds-oai/* "$d"/ ;;
    grammar) cp fuzz/seeds-grammar/* "$d"/ ;;
    memory) cp fuzz/seeds-memory/* "$d"/ ;;
    toolcall) cp fuzz/seeds-toolcall/* "$d"/ ;;
    esac
    echo "$d"
}
for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c); short=${name#fuzz_}
    if [ ! -x "$fb/$name" ]; then
        echo "fuzz smoke: $name: not built ($fb/$name)"; failed=$((failed + 1)); continue
    fi
    s=$(seeds "$short")
    n=$(ls "$s" | wc -l | tr -d ' ')
    case "$short" in
    gguf|model|vocab|tokenizer|template|oai|grammar|memory|toolcall)
        if [ "$n" -eq 0 ]; then # its seed source is broken
            echo "fuzz smoke: $name: no seeds were written"; failed=$((failed + 1)); continue
        fi ;;
    *) [ "$n" -eq 0 ] && echo "fuzz smoke: $name: no seed source in fuzz/smoke.sh, empty corpus" ;;
    esac
    mkdir -p "$tmp/corpus-$short" "$tmp/art-$short"
    "$fb/$name" -runs="$runs" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$tmp/art-$short/" "$tmp/corpus-$short" "$s" > "$tmp/$short.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$short.log")
    if [ "$rc" -ne 0 ] || [ -z "$execs" ]; then
        echo "fuzz smoke: $name FAILED (exit $rc, $n seeds):"; tail -n 40 "$tmp/$short.log"
        ls "$tmp/art-$short"
        failed=$((failed + 1))
    else
        echo "fuzz smoke: $name ok ($n seeds, $execs inputs)"
    fi
done
echo "fuzz smoke: $failed failed"
[ "$failed" -eq 0 ]
