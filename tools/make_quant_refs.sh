#!/bin/sh
# Makes the llama.cpp references for tests/test_quantize.c: for each model in
# tests/data/quantize/models.txt (or only those named on the command line),
# builds it with vitamin gen-model (with the 256-token vocabulary
# tests/data/quantize/vocab-256.gguf, which this script also writes), has
# llama.cpp's quantizer (../shared/oracle/quantize.py, llama_model_quantize
# without an importance matrix) quantize it to each listed type, and records
# in tests/data/quantize/NAME.json what llama.cpp wrote: the SHA-256 of the
# input and of each output file, its size, general.file_type, the metadata
# keys in order, and per tensor (in file order) its name, type, offset, the
# first 16 hex digits of the SHA-256 of its data and, for tensors over 16 KiB,
# the first 8 of the SHA-256 of each 16 KiB chunk (so that a mismatch can say
# how much of a tensor differs). Only
# the hashes of llama.cpp's files are recorded; vitamin's output is compared
# with them by the test. Run from the repo root after `make`, with ORACLE
# pointing at a folder where `npm install node-llama-cpp@3.22.1` was run:
#   ORACLE=/root/oracle tools/make_quant_refs.sh [NAME...]
# vitamin's q3_k / q4_k / q5_k are llama-quantize's aliases of the _m mixes
# and are checked against llama.cpp's Q3_K_M / Q4_K_M / Q5_K_M. quantize.py
# names no Q3_K_S, Q3_K_L, Q4_K_S or Q5_K_S; they are passed to
# llama_model_quantize by their llama_ftype numbers (11, 13, 14, 16).
set -eu
ORACLE=${ORACLE:?set ORACLE to the folder with node_modules/node-llama-cpp}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
BIN=${BIN:-$(pwd)/build/vitamin}
out=tests/data/quantize
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The vocabulary: tokenizer metadata only (llama's quantizer does not load a
# vocabulary), 256 tokens, so that token_embd is small.
python3 - "$out/vocab-256.gguf" <<'EOF'
import struct, sys
def s(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b
toks = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % i for i in range(253)]
kv = [s('general.architecture') + struct.pack('<I', 8) + s('llama'),
      s('tokenizer.ggml.model') + struct.pack('<I', 8) + s('llama'),
      s('tokenizer.ggml.tokens') + struct.pack('<IIQ', 9, 8, len(toks)) +
      b''.join(s(t) for t in toks),
      s('tokenizer.ggml.scores') + struct.pack('<IIQ', 9, 6, len(toks)) +
      b''.join(struct.pack('<f', -float(i)) for i in range(len(toks))),
      s('tokenizer.ggml.token_type') + struct.pack('<IIQ', 9, 5, len(toks)) +
      b''.join(struct.pack('<i', 3 if i < 3 else 6) for i in range(len(toks)))]
data = b'GGUF' + struct.pack('<IQQ', 3, 0, len(kv)) + b''.join(kv)
open(sys.argv[1], 'wb').write(data + b'\0' * (-len(data) % 32))
EOF

# quantize.py with the four mixes it does not name added to its table.
cat > "$tmp/oracle_quantize.py" <<EOF
import sys
src = open("$SHARED/oracle/quantize.py").read()
old = "BF16=32)"
assert src.count(old) == 1, "quantize.py's type table changed: update tools/make_quant_refs.sh"
src = src.replace(old, "BF16=32, Q3_K_S=11, Q3_K_L=13, Q4_K_S=14, Q5_K_S=16)")
exec(compile(src, "$SHARED/oracle/quantize.py", "exec"))
EOF

# The summary of one model's outputs (arguments: model name, input file, then
# TYPE=FILE pairs), as JSON on stdout.
cat > "$tmp/summary.py" <<'EOF'
import hashlib, json, struct, sys
CHUNK = 16384
TYPES = {0: ('f32', 1, 4), 1: ('f16', 1, 2), 2: ('q4_0', 32, 18), 3: ('q4_1', 32, 20),
         6: ('q5_0', 32, 22), 7: ('q5_1', 32, 24), 8: ('q8_0', 32, 34), 10: ('q2_K', 256, 84),
         11: ('q3_K', 256, 110), 12: ('q4_K', 256, 144), 13: ('q5_K', 256, 176),
         14: ('q6_K', 256, 210), 20: ('iq4_nl', 32, 18), 30: ('bf16', 1, 2)}
SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}

def parse(path):
    b = open(path, 'rb').read()
    pos = [4]
    def take(fmt):
        v = struct.unpack_from('<' + fmt, b, pos[0])[0]
        pos[0] += struct.calcsize('<' + fmt)
        return v
    def string():
        n = take('Q')
        v = b[pos[0]:pos[0] + n].decode('utf-8', 'replace')
        pos[0] += n
        return v
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            at, n = take('I'), take('Q')
            return [value(at) for _ in range(n)]
        return take(SCALAR[t])
    take('I')
    n_tensors, n_kv = take('Q'), take('Q')
    kv = []
    for _ in range(n_kv):
        k = string()
        kv.append((k, value(take('I'))))
    align = dict(kv).get('general.alignment', 32)
    tensors = []
    for _ in range(n_tensors):
        name = string()
        ne = [take('Q') for _ in range(take('I'))]
        tensors.append((name, ne, take('I'), take('Q')))
    base = (pos[0] + align - 1) // align * align
    return b, kv, tensors, base

def summary(path):
    b, kv, tensors, base = parse(path)
    rows = []
    for name, ne, t, off in tensors:
        tname, blck, size = TYPES[t]
        n = 1
        for x in ne:
            n *= x
        data = b[base + off: base + off + n // blck * size]
        chunks = ''.join(hashlib.sha256(data[i:i + CHUNK]).hexdigest()[:8]
                         for i in range(0, len(data), CHUNK)) if len(data) > CHUNK else ''
        rows.append([name, tname, off, hashlib.sha256(data).hexdigest()[:16], chunks])
    kvd = dict(kv)
    return {'size': len(b), 'sha256': hashlib.sha256(b).hexdigest(),
            'file_type': kvd.get('general.file_type'),
            'quantization_version': kvd.get('general.quantization_version'),
            'kv_keys': [k for k, _ in kv], 'tensors': rows}

name, inp = sys.argv[1], sys.argv[2]
res = {'model': name, 'input_sha256': hashlib.sha256(open(inp, 'rb').read()).hexdigest(),
       'chunk_bytes': CHUNK, 'outputs': {}}
for arg in sys.argv[3:]:
    t, path = arg.split('=', 1)
    res['outputs'][t] = summary(path)
# one tensor per line
j = lambda v: json.dumps(v, separators=(',', ':'))
print('{"model":%s,"input_sha256":%s,"chunk_bytes":%d,"outputs":{' %
      (j(res['model']), j(res['input_sha256']), CHUNK))
for i, (t, o) in enumerate(res['outputs'].items()):
    head = {k: v for k, v in o.items() if k != 'tensors'}
    print('%s:%s,"tensors":[' % (j(t), j(head)[:-1]))
    print(',\n'.join(j(r) for r in o['tensors']))
    print(']}' + (',' if i + 1 < len(res['outputs']) else ''))
print('}}')
EOF

only=" $* "
grep -v '^#' "$out/models.txt" | while read -r name input types args; do
    [ -n "$name" ] || continue
    [ "$only" = "  " ] || case "$only" in *" $name "*) ;; *) continue ;; esac
    echo "== $name" >&2
    # shellcheck disable=SC2086
    "$BIN" gen-model $args --type "$input" --vocab "$out/vocab-256.gguf" -o "$tmp/$name.gguf"
    pairs=""
    for t in $(echo "$types" | tr ',' ' '); do
        case "$t" in
            q3_k|q4_k|q5_k) o=$(echo "${t}_m" | tr 'a-z' 'A-Z') ;;
            *) o=$(echo "$t" | tr 'a-z' 'A-Z') ;;
        esac
        NLC="$ORACLE" python3 "$tmp/oracle_quantize.py" "$tmp/$name.gguf" \
            "$tmp/$name.$t.gguf" "$o" > "$tmp/$name.$t.log" 2>&1 ||
            { cat "$tmp/$name.$t.log" >&2; exit 1; }
        pairs="$pairs $t=$tmp/$name.$t.gguf"
    done
    # shellcheck disable=SC2086
    python3 "$tmp/summary.py" "$name" "$tmp/$name.gguf" $pairs > "$out/$name.json"
    rm -f "$tmp/$name".*.gguf
done
