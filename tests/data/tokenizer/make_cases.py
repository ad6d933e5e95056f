#!/usr/bin/env python3
"""make_cases.py - writes the extra tokenizer test texts of this folder:
cases.inp (plain text, special tokens not parsed), special.inp (texts with
special-token markup, tokenized with parse_special) and bytes.json (raw byte
strings, invalid UTF-8 included, as hex). The expected token ids come from
llama.cpp itself: see README.md in this folder.
"""
import json
import os
import random

SEP = "\n__ggml_vocab_test__\n"
HERE = os.path.dirname(os.path.abspath(__file__))

cases = [
    # Korean
    "안녕하세요, 세계! 오늘 날씨가 정말 좋네요. 한국어 토크나이저 테스트입니다.",
    "ㄱㄴㄷ 한글 Hangul 123 가나다라마바사 ㅋㅋㅋ ㅠㅠ",
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    # Japanese, Chinese
    "こんにちは世界。東京は日本の首都です。カタカナとひらがな、漢字。ｶﾀｶﾅ",
    "你好，世界！我爱自然语言处理。这是一个测试：中文分词。",
    "「繁體中文」測試；（括號）、頓號。《書名》——破折號……省略號",
    # emoji
    "🙂🙃😀 family: 👨‍👩‍👧‍👦 flags: 🇰🇷🇯🇵 skin: 👍🏽 ❤️‍🔥 keycap 1️⃣",
    "😀😀😀😀😀 🤖🧠💡 ✅❌",
    # mixed scripts
    "English, Ελληνικά, Русский, العربية, עברית, हिन्दी, ไทย, 한국어, 日本語, ქართული",
    "Hello세계World世界123abc가나",
    "في عام ٢٠٢٤، بلغ عدد السكان 123 مليون.",
    "नमस्ते दुनिया, यह एक परीक्षण है। क्षत्रिय",
    "สวัสดีชาวโลก นี่คือการทดสอบ",
    # combining marks
    "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 à la carte",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ \u0301\u0302 a\u0300\u0301\u0302b",
    # whitespace
    " " * 50 + "x" + " " * 30,
    "\t\tindented\t\ttabs\t",
    "\n\n\n\n\n",
    "a \n \n b",
    " \t \r\n \u3000\u00a0x",
    " " * 100,
    "line1\r\nline2\r\n\r\nline3\r",
    "a\u2028b\u2029c\u0085d\u00a0e\u3000f\u2003g\u1680h\u202fi",
    "  hello  world  ",
    "a" + " " * 30 + "b" + " " * 7 + "c",
    "\n \n  \n   \n",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main(void) {\n\tprintf(\"%d\\n\", x->y[3] >>= 2);\n\treturn 0; // done\n}\n",
    '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}',
    "<div class=\"x\">Hello &amp; bye</div>",
    "# Title\n\n- item 1\n- item 2\n\n```c\nint x = 0;\n```\n",
    "https://example.com/path?q=1&r=2#frag user@mail.org",
    "x+=1; y-=2; z*=3; a||b && c|d ^ e ~f `g` $h",
    # numbers
    "1234567890 12 123 1234 3.14159 1,000,000 ١٢٣٤٥ ²³ ½ Ⅻ 𝟙𝟚𝟛 ９８７",
    "abc123def 1a2b3c 0x1F 1e-5",
    # contractions and apostrophes
    "I'M YOU'RE WE'VE THEY'LL HE'D IT'S don't 'S 'T 'Re 'vE",
    "''' ' 's's 'll've rock'n'roll ' s",
    "'\u212a '\u017f '\u0130 \u0130stanbul",
    "Hello . , ! ? it 's I 'm you 're they 've we 'll he 'd ' hi '",
    # symbols
    "€100 £50 ¥1000 © ® ™ ∑∫√∞ ≤≥≠ ←→↑↓ ♠♣♥♦ ＄",
    "𝐀𝐁𝐂 𝒶𝒷𝒸 ℌℑℜ",
    # control, unassigned, private use
    "\x01\x02\x1f\x7f\u200b\u200d\ufeff end",
    "\ue000\U000F0000 \u0378\U0001FFFF \u0378x\u0378",
    # special-token look-alikes (not parsed)
    "<|endoftext|> <s> </s> <|im_start|>user\nhi<|im_end|>",
    "<0x41> <0x0A> ▁▁hello ▁ world",
    "[PAD151650] õ÷Áýÿø >>TITLE<< <fim_prefix>",
    # long words, repetition
    "Pneumonoultramicroscopicsilicovolcanoconiosis " + "supercalifragilistic" * 5,
    "a" * 60 + " " + "!" * 20 + "?" * 5 + "." * 7,
    "ab" * 40,
    "\u00e9" * 30 + " " + "가" * 20,
]

special = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<s>[INST] Hello [/INST]</s>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|endoftext|>Hello<|endoftext|>",
    "<|user|>\nHi <|end|>\n<|assistant|>  Hello",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>User: hi<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>hi<|END_OF_TURN_TOKEN|>",
    ">>TITLE<<text>>ABSTRACT<< more",
    "<fim_prefix>def f():<fim_suffix>\n<fim_middle>",
    "<|im_start|<|im_start|>>",
    "<|im_end|>   \n  x </s>  y",
    "text <unk> more <s>",
]

rng = random.Random(1234)
raw = [
    b"\xff", b"\x80abc", b"abc\xc3", b"\xe2\x82", b"\xe2\x82x", b"\xf0\x9f\x98",
    b"\xc0\x80", b"\xed\xa0\x80", b"\xc3\x28", b"\xf8\x88\x80\x80\x80",
    b"Hello \xff world \xc3\x28 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c",
    b"\xc3\xb5\xc3", b"\xfe\xfe\xff\xff", b"a\x00b\x00", b"\xe4\xb8\xad\xe6\x96\x87\xe2",
    b" \xa0 \xc2\xa0 \xe3\x80\x80",
    b"Hello world", b"", b" ", b"\n",
]
for _ in range(12):
    raw.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48))))
for _ in range(4):
    raw.append(bytes(rng.choice(b" \n\x80\xc3\xa9\xe2\x82\xac\xf0\x9fabc,'") for _ in range(40)))


def llama_throws(b):
    """Would llama.cpp's BPE path throw (a 4-byte form above U+10FFFF)?"""
    i = 0
    while i < len(b):
        c = b[i]
        if c < 0x80 or c < 0xC0:
            i += 1
            continue
        n = 2 if c < 0xE0 else 3 if c < 0xF0 else 4 if c < 0xF8 else 0
        if n == 0 or i + n > len(b) or any((x & 0xC0) != 0x80 for x in b[i + 1:i + n]):
            i += 1
            continue
        if n == 4 and (((c & 7) << 18) | ((b[i + 1] & 0x3F) << 12)) > 0x10FFFF:
            return True
        i += n
    return False


with open(os.path.join(HERE, "cases.inp"), "w", encoding="utf-8", newline="") as f:
    f.write(SEP.join(cases) + SEP)
with open(os.path.join(HERE, "special.inp"), "w", encoding="utf-8", newline="") as f:
    f.write(SEP.join(special) + SEP)
with open(os.path.join(HERE, "bytes.json"), "w") as f:
    json.dump([{"hex": b.hex(), "bpe_ok": not llama_throws(b)} for b in raw], f, indent=0)
