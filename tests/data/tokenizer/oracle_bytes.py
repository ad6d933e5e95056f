#!/usr/bin/python3
"""oracle_bytes.py - llama.cpp's own answers for the byte-exact tokenizer
tests: tokenization of raw byte strings (invalid UTF-8 included) with and
without add_special, detokenization, and single-token pieces. Calls the
llama.cpp library that node-llama-cpp ships (as ../../../../shared/oracle/bench.py
does) through its C API with ctypes, so that bytes reach llama_tokenize
unchanged (node-llama-cpp's JavaScript API takes strings, which cannot hold
invalid UTF-8).

  NLC=/work/oracle python3 oracle_bytes.py VOCAB.gguf NAME > NAME.bytes.json

Reads cases.inp, special.inp and bytes.json from this folder and the ggml
.inp vectors beside the vocabulary.
"""
import ctypes as C, glob, json, os, random, sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\n__ggml_vocab_test__\n"

nlc = os.environ.get("NLC", os.getcwd())
bins = glob.glob(os.path.join(nlc, "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"))
if not bins:
    raise SystemExit("node-llama-cpp not found: set NLC to the folder where it is installed")
C.CDLL(os.path.join(bins[0], "libggml-base.so"), mode=C.RTLD_GLOBAL)
G = C.CDLL(os.path.join(bins[0], "libggml.v0.5.0.so"), mode=C.RTLD_GLOBAL)
G.ggml_backend_load_all_from_path.argtypes = [C.c_char_p]
G.ggml_backend_load_all_from_path(bins[0].encode())
L = C.CDLL(glob.glob(os.path.join(bins[0], "libllama.v*.so"))[0])
p, i32, b = C.c_void_p, C.c_int32, C.c_bool


class ModelParams(C.Structure):  # llama.h of llama.cpp v0.5.0 (node-llama-cpp 3.22.1)
    _fields_ = [("devices", p), ("tensor_buft_overrides", p), ("n_gpu_layers", i32), ("split_mode", i32),
                ("load_mode", i32), ("lazy_mode", i32), ("main_gpu", i32), ("tensor_split", p),
                ("progress_callback", p), ("progress_callback_user_data", p), ("kv_overrides", p),
                ("vocab_only", b), ("check_tensors", b), ("use_extra_bufts", b), ("no_host", b),
                ("no_alloc", b), ("load_mtp", b)]


L.llama_model_default_params.restype = ModelParams
L.llama_model_load_from_file.restype = p
L.llama_model_load_from_file.argtypes = [C.c_char_p, ModelParams]
L.llama_model_get_vocab.restype = p
L.llama_model_get_vocab.argtypes = [p]
L.llama_vocab_n_tokens.restype = i32
L.llama_vocab_n_tokens.argtypes = [p]
L.llama_tokenize.restype = i32
L.llama_tokenize.argtypes = [p, C.c_char_p, i32, C.POINTER(i32), i32, b, b]
L.llama_detokenize.restype = i32
L.llama_detokenize.argtypes = [p, C.POINTER(i32), i32, C.c_char_p, i32, b, b]
L.llama_token_to_piece.restype = i32
L.llama_token_to_piece.argtypes = [p, i32, C.c_char_p, i32, i32, b]
L.llama_log_set.argtypes = [p, p]
LOGCB = C.CFUNCTYPE(None, C.c_int, C.c_char_p, p)
_quiet = LOGCB(lambda level, text, data: None)
L.llama_log_set(C.cast(_quiet, p), None)
L.llama_backend_init()

path, name = sys.argv[1], sys.argv[2]
mp = L.llama_model_default_params()
mp.n_gpu_layers = 0
mp.vocab_only = True
model = L.llama_model_load_from_file(path.encode(), mp)
if not model:
    raise SystemExit("cannot load " + path)
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)


def tokenize(data, add_special, parse_special):
    cap = len(data) + 16
    buf = (i32 * cap)()
    n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        buf = (i32 * cap)()
        n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    assert n >= 0
    return list(buf[:n])


def detokenize(ids, remove_special, unparse_special):
    arr = (i32 * max(1, len(ids)))(*ids)
    cap = 64 + 64 * len(ids)
    out = C.create_string_buffer(cap)
    n = L.llama_detokenize(vocab, arr, len(ids), out, cap, remove_special, unparse_special)
    assert n >= 0
    return out.raw[:n]


def piece(tid, special):
    out = C.create_string_buffer(4096)
    n = L.llama_token_to_piece(vocab, tid, out, 4096, 0, special)
    assert n >= 0
    return out.raw[:n]


def read_cases(fn):
    with open(fn, "rb") as f:
        cs = f.read().split(SEP)
    if len(cs) > 1 and cs[-1] == b"":
        cs.pop()
    return cs


bpe = name not in ("llama-spm", "phi-3")
texts = read_cases(os.path.join(HERE, "cases.inp"))
ggml = os.path.join(os.path.dirname(path), "ggml-vocab-%s.gguf.inp" % name)
if os.path.exists(ggml):
    texts = read_cases(ggml) + texts
specials = read_cases(os.path.join(HERE, "special.inp"))
raw = [bytes.fromhex(x["hex"]) for x in json.load(open(os.path.join(HERE, "bytes.json")))
       if x["bpe_ok"] or not bpe]

enc, det = [], []
for data in raw:
    enc.append({"hex": data.hex(), "add_special": False, "parse_special": False,
                "ids": tokenize(data, False, False)})
for data in [b"Hello world", b"", b" leading space", specials[0], specials[1]]:
    for ps in (False, True):
        enc.append({"hex": data.hex(), "add_special": True, "parse_special": ps,
                    "ids": tokenize(data, True, ps)})
for data in texts + raw:
    ids = tokenize(data, False, False)
    det.append({"ids": ids, "remove_special": False, "unparse_special": False,
                "hex": detokenize(ids, False, False).hex()})
for data in specials:
    ids = tokenize(data, True, True)
    for rs in (False, True):
        for us in (False, True):
            det.append({"ids": ids, "remove_special": rs, "unparse_special": us,
                        "hex": detokenize(ids, rs, us).hex()})
rng = random.Random(99)
ids = sorted(set(rng.randrange(n_vocab) for _ in range(100)) | set(range(min(n_vocab, 50))) |
             set(range(max(0, n_vocab - 50), n_vocab)))
pieces = [[t, piece(t, True).hex(), piece(t, False).hex()] for t in ids]
json.dump({"vocab": os.path.basename(path), "encode": enc, "detokenize": det, "pieces": pieces},
          sys.stdout, separators=(",", ":"))
sys.stdout.write("\n")
