#!/usr/bin/env python3
"""make bench-drawer: the KV drawer's worth (issue 9, "the drawer").

A 2,000-token conversation's second turn after a server restart, three ways,
on the TinyLlama-shaped Q4_K_M bench model of `make bench` (made if missing):

  drawer    turn 1 on `vitamin serve --kv-drawer DIR`; the server stops
            (SIGTERM) and starts again over the same DIR; turn 2 is timed:
            its prefix comes back from the drawer.
  recompute turn 2 on a fresh server without a drawer: the whole prompt is
            computed.
  no-restart turns 1 and 2 on one server without a drawer: the prefix cache
            in memory serves turn 2 (the numbers a drawer must reproduce).

Each way runs RUNS times (alternating, medians). Prints time to first token
(streamed chat completion, greedy) and the ratio recompute / drawer (goal >= 5),
whether turn 2's text is the same in all three, the prompt's cached tokens,
and the drawer's size against its cap (from /metrics and du).
Environment: THREADS (2), RUNS (3), CAP (drawer cap, default 1G), MODEL.
"""
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/vitamin"
THREADS = os.environ.get("THREADS", "2")
RUNS = int(os.environ.get("RUNS", "3"))
CAP = os.environ.get("CAP", "1G")
MODEL = os.environ.get("MODEL", ".bench/tinyllama.q4_k_m.gguf")
TEMPLATE = "scripts/chatml.jinja"


def ensure_model():
    if os.path.exists(MODEL):
        return
    os.makedirs(".bench", exist_ok=True)
    f16 = ".bench/tinyllama.f16.gguf"
    if not os.path.exists(f16):
        subprocess.check_call([BIN, "gen-model", "--arch", "llama", "--vocab",
                               "tests/data/vocab/ggml-vocab-llama-spm.gguf", "--dim", "2048",
                               "--layers", "22", "--heads", "32", "--kv-heads", "4", "--ff",
                               "5632", "--ctx", "4096", "-o", f16])
    subprocess.check_call([BIN, "quantize", "-t", THREADS, f16, MODEL, "q4_k_m"])


LIVE = []  # servers to stop if the benchmark dies half way


class Server:
    def __init__(self, drawer=None):
        args = [BIN, "serve", "-m", MODEL, "--port", "0", "-t", THREADS, "--ctx", "4096",
                "--chat-template", TEMPLATE, "--model-name", "m", "--quiet", "--no-memory"]
        if drawer:
            args += ["--kv-drawer", drawer, "--kv-drawer-size", CAP]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        LIVE.append(self.p)
        line = self.p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit("bench-drawer: the server did not start: " + line +
                             self.p.stderr.read())
        self.port = int(m.group(1))

    def post(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        return c, c.getresponse()

    def chat(self, messages):
        """(time to first content, text, cached prompt tokens) of a streamed greedy reply."""
        t0 = time.monotonic()
        c, r = self.post("/v1/chat/completions", {
            "model": "m", "messages": messages, "max_tokens": 32, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}})
        if r.status != 200:
            raise SystemExit("bench-drawer: HTTP %d: %s" % (r.status, r.read()[:300]))
        ttft, text, cached = None, "", 0
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            for ch in ev.get("choices", []):
                piece = ch.get("delta", {}).get("content")
                if piece and ttft is None:
                    ttft = time.monotonic() - t0
                text += piece or ""
            u = ev.get("usage")
            if u:
                cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        c.close()
        return ttft, text, cached

    def metric(self, name):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
        return float(m.group(1)) if m else None

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=120)
        LIVE.remove(self.p)


def long_text(n_words):
    words = ("the river archive keeps seven lanterns while quiet engines measure distant "
             "harbors and every morning a careful baker counts copper spoons").split()
    return " ".join(words[(i * 7 + i // 5) % len(words)] + ("." if i % 13 == 12 else "")
                    for i in range(n_words))


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            if f.endswith(".kvb"):
                total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    ensure_model()
    turn1 = [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": long_text(1500)}]
    res = {"drawer": [], "recompute": [], "no-restart": []}
    texts, cached, sizes = {}, {}, []
    for run in range(RUNS):
        d = tempfile.mkdtemp(prefix="vt-drawer-")
        try:
            s = Server(d)
            _, reply, _ = s.chat(turn1)
            s.stop()
            turn2 = turn1 + [{"role": "assistant", "content": reply},
                             {"role": "user", "content": "And what did the baker count?"}]
            s = Server(d)
            t, text, c = s.chat(turn2)
            cap = s.metric("vitamin_kv_drawer_cap_bytes")
            s.stop()
            res["drawer"].append(t)
            texts["drawer"], cached["drawer"] = text, c
            sizes.append((du(d), cap))

            s = Server()
            t, text, c = s.chat(turn2)
            s.stop()
            res["recompute"].append(t)
            texts["recompute"], cached["recompute"] = text, c

            s = Server()
            s.chat(turn1)
            t, text, c = s.chat(turn2)
            s.stop()
            res["no-restart"].append(t)
            texts["no-restart"], cached["no-restart"] = text, c
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print("run %d: %s" % (run + 1, "  ".join("%s %.3f s" % (k, v[-1]) for k, v in res.items())),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in res.items()}
    print("| turn 2 after a restart (%s, %s threads, %d runs) | TTFT p50 | cached prompt tokens |"
          % (os.path.basename(MODEL), THREADS, RUNS))
    print("|---|---|---|")
    for k in ("drawer", "recompute", "no-restart"):
        print("| %s | %.3f s | %d |" % (k, med[k], cached[k]))
    print()
    print("recompute / drawer: %.1fx (goal >= 5x)" % (med["recompute"] / med["drawer"]))
    print("turn 2's text: drawer %s recompute, %s no-restart" % (
        "==" if texts["drawer"] == texts["recompute"] else "!=",
        "==" if texts["drawer"] == texts["no-restart"] else "!="))
    print("drawer on disk: max %d bytes, cap %d bytes (%s)" % (
        max(b for b, _ in sizes), int(sizes[0][1] or 0),
        "within" if all(b <= (c or 0) for b, c in sizes) else "OVER"))


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in LIVE:
            p.kill()
