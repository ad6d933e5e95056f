#!/bin/sh
# Runs every test binary in $1 and adds up their "N passed, N failed, N skipped"
# lines. Exit status: 0 only if no test failed and every binary exited cleanly.
# A binary that ran no test (0 passed, 0 failed, 0 skipped) fails, and so,
# when CI is set (not "", "0" or "false"), does one whose every test skipped.
# At the end: every skipped test with its reason (the binaries' SKIP lines)
# and every failed test, so that neither is lost in the output above.
dir=${1:-build/tests}
passed=0; failed=0; skipped=0; crashed=0
ci=0
case "$(printf '%s' "${CI:-}" | tr 'A-Z' 'a-z')" in ''|0|false) ;; *) ci=1 ;; esac
skips=$(mktemp); fails=$(mktemp)
trap 'rm -f "$skips" "$fails"' EXIT
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    name=$(basename "$t")
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    printf '%s\n' "$out" | sed -n "s/^  SKIP /  $name: /p" >> "$skips"
    printf '%s\n' "$out" | sed -n "s/^  not ok /  $name: /p" >> "$fails"
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "$name: crashed or printed no summary (exit $rc)"
        echo "  $name: crashed or printed no summary (exit $rc)" >> "$fails"
        crashed=$((crashed + 1)); failed=$((failed + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    s=${s:-0}
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$name: exited $rc"; echo "  $name: exited $rc" >> "$fails"
        failed=$((failed + 1))
    elif [ "$f" -eq 0 ] && [ $((p + s)) -eq 0 ]; then
        echo "$name: ran no test"; echo "  $name: ran no test" >> "$fails"
        failed=$((failed + 1))
    elif [ "$f" -eq 0 ] && [ "$p" -eq 0 ] && [ "$ci" -eq 1 ]; then
        echo "$name: every test skipped (CI is set)"
        echo "  $name: every test skipped (CI is set)" >> "$fails"
        failed=$((failed + 1))
    fi
done
if [ -s "$skips" ]; then
    echo "skipped ($(wc -l < "$skips" | tr -d ' ') lines):"
    cat "$skips"
fi
if [ -s "$fails" ]; then
    echo "failed:"
    cat "$fails"
fi
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
