#!/bin/sh
# Runs every test binary in $1 and adds up their "N passed, N failed, N skipped"
# lines. Exit status: 0 only if no test failed and every binary exited cleanly.
dir=${1:-build/tests}
passed=0; failed=0; skipped=0; crashed=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "$(basename "$t"): crashed or printed no summary (exit $rc)"
        crashed=$((crashed + 1)); failed=$((failed + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$(basename "$t"): exited $rc"; failed=$((failed + 1))
    fi
done
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
