#!/usr/bin/env python3
"""Evaluator of the recall benchmark (bench/recall/data/, made by gen.py).

For every question, a retriever returns the ids of the best turns of the
question's user; a question counts at k when one of its evidence turns is in
the top k (EvHit@k). Retrievers:
  - the baseline of issue 9: per user, an SQLite FTS5 table of that user's turn
    texts with `tokenize='porter unicode61'`, the question's words (each one
    quoted) OR-ed together, rows in bm25() order;
  - for Korean also the same with an FTS5 `trigram` table, as a second
    reference line;
  - vitamin: `vitamin memory --db TMP import FILE --user U` once per user, then
    one `vitamin memory --db TMP search --user U --top K --json --queries FILE`
    per user (one JSON string per line in, one {"results":[{"id",...}]} per line
    out), once per search mode the CLI offers (see --modes).
Prints markdown tables (overall, then per category), or JSON with --json.
`--check` only validates the data and exits non-zero on a problem.
Python 3 standard library only.
"""
import argparse
import collections
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KS = (5, 10)
MIN_SESSIONS, MIN_QUESTIONS = 20, 200
TURN_KEYS = ("id", "text", "speaker", "time", "session")
Q_KEYS = ("question", "evidence", "user", "category")


# ---------------------------------------------------------------- data

def load(data_dir, langs):
    """Returns {lang: (turns {user: [row...]}, questions [q...])}."""
    out = {}
    tdir = os.path.join(data_dir, "turns")
    for lang in langs:
        qpath = os.path.join(data_dir, "questions_%s.jsonl" % lang)
        with open(qpath, encoding="utf-8") as f:
            qs = [json.loads(line) for line in f if line.strip()]
        turns = {}
        for name in sorted(os.listdir(tdir)):
            user = name[:-len(".jsonl")]
            if name.endswith(".jsonl") and user.startswith(lang):
                with open(os.path.join(tdir, name), encoding="utf-8") as f:
                    turns[user] = [json.loads(line) for line in f if line.strip()]
        out[lang] = (turns, qs)
    return out


def check(data):
    """Every problem found in the data, as strings (empty: all good)."""
    bad = []
    for lang, (turns, qs) in data.items():
        if not turns:
            bad.append("%s: no conversations" % lang)
        ids = {}
        for user, rows in turns.items():
            seen, sessions = set(), set()
            for i, r in enumerate(rows):
                miss = [k for k in TURN_KEYS if not isinstance(r.get(k), str) or not r.get(k)]
                if miss:
                    bad.append("%s line %d: missing %s" % (user, i + 1, ",".join(miss)))
                    continue
                if r["id"] in seen:
                    bad.append("%s: id %s twice" % (user, r["id"]))
                seen.add(r["id"])
                sessions.add(r["session"])
                if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["time"]):
                    bad.append("%s %s: time %r is not ISO 8601 UTC" % (user, r["id"], r["time"]))
            if len(sessions) < MIN_SESSIONS:
                bad.append("%s: %d sessions (< %d)" % (user, len(sessions), MIN_SESSIONS))
            ids[user] = seen
        if len(qs) < MIN_QUESTIONS:
            bad.append("%s: %d questions (< %d)" % (lang, len(qs), MIN_QUESTIONS))
        for i, q in enumerate(qs):
            where = "%s question %d" % (lang, i + 1)
            miss = [k for k in Q_KEYS if not q.get(k)]
            if miss:
                bad.append("%s: missing %s" % (where, ",".join(miss)))
                continue
            if q["user"] not in ids:
                bad.append("%s: unknown user %r" % (where, q["user"]))
                continue
            for e in q["evidence"]:
                if e not in ids[q["user"]]:
                    bad.append("%s: evidence %r not among %s's turns" % (where, e, q["user"]))
    return bad


# ---------------------------------------------------------------- baseline

def fts_query(question):
    words = re.findall(r"\w+", question)
    return " OR ".join('"%s"' % w.replace('"', '""') for w in words)


# For the "obvious steps" reference line only (not the baseline): common
# function words of the questions.
STOP = {
    "en": set("""a an the of to in on at for by with from about as and or but is are was were be
        been being do does did done have has had having what which who whom whose when where why
        how that this these those it its it's they them their there here i you he she we me my
        your his her our s t can could would should will shall may might must not no yes so if
        than then too very just any some such into over under up down out off again once kind
        type sort""".split()),
    "ko": set("""무엇인가요 무엇을 무엇에 무엇이 뭐예요 뭐였나요 어떤 어디인가요 어디에서 어디서 어디로
        어디 어느 언제 언제인가요 누구 누구인가요 누구의 누구와 있나요 하나요 했나요 인가요 나요
        요즘 지금 현재 최근 최근에 그 것은 것 건 때는 무슨 몇""".split()),
}


def baseline(turns, qs, tokenize, topk, stop=None, neighbours=0):
    """{qid index: [ids...]} from FTS5 with the given tokenizer; with stop,
    those words are left out of the query; with neighbours n, each turn is
    indexed together with the n turns before and after it in its session."""
    by_user = collections.defaultdict(list)
    for i, q in enumerate(qs):
        by_user[q["user"]].append(i)
    out = {}
    for user, idx in by_user.items():
        db = sqlite3.connect(":memory:")
        db.execute("CREATE VIRTUAL TABLE t USING fts5(id UNINDEXED, text, tokenize=%s)"
                   % ("'%s'" % tokenize))
        rows = turns.get(user, [])
        docs = []
        for j, r in enumerate(rows):
            text = r["text"]
            if neighbours:
                near = [rows[x]["text"] for x in range(max(0, j - neighbours),
                                                      min(len(rows), j + neighbours + 1))
                        if x != j and rows[x]["session"] == r["session"]]
                text = " ".join([text] + near)
            docs.append((r["id"], text))
        db.executemany("INSERT INTO t(id, text) VALUES (?, ?)", docs)
        for i in idx:
            question = qs[i]["question"]
            if stop:
                question = " ".join(w for w in re.findall(r"\w+", question)
                                    if w.lower() not in stop)
            expr = fts_query(question)
            rows = db.execute("SELECT id FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?",
                              (expr, topk)).fetchall() if expr else []
            out[i] = [r[0] for r in rows]
        db.close()
    return out


# ---------------------------------------------------------------- vitamin

def vitamin_help(vitamin):
    try:
        p = subprocess.run([vitamin, "memory", "search", "--help"], capture_output=True,
                           text=True, timeout=30)
    except OSError:
        return None
    text = p.stdout + p.stderr
    return text if "search" in text and "--queries" in text else None


def detect_modes(help_text):
    """Search modes named in `vitamin memory search --help`: an option like
    `--mode bm25|vector|hybrid` (or `--mode {a,b}`). [None] when there is none
    (one run with the CLI's default)."""
    m = re.search(r"--mode[ =]+[{\[<(]?([A-Za-z0-9_-]+(?:\s*[|,/]\s*[A-Za-z0-9_-]+)+)", help_text)
    if not m:
        return [None]
    return [x.strip() for x in re.split(r"[|,/]", m.group(1)) if x.strip()]


def embed_all(url, model, texts, batch=64):
    """Embeddings of texts from an OpenAI-compatible POST {url} (e.g. vitamin
    serve's /v1/embeddings); returns a list of float lists in order."""
    import urllib.request
    out = []
    for i in range(0, len(texts), batch):
        body = json.dumps({"model": model, "input": texts[i:i + batch]}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            data = json.loads(r.read())["data"]
        data.sort(key=lambda d: d["index"])
        out += [d["embedding"] for d in data]
    return out


def run(cmd, timeout=600):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                                (p.stderr or p.stdout).strip()[:500]))
    return p.stdout


def vitamin_search(vitamin, turns, qs, topk, modes, extra, tmp, embed=None):
    """{mode: ({question index: [ids...]}, seconds import, seconds search)}.
    embed: None, or a function from a list of texts to their embeddings, then
    given with every imported turn and every query."""
    by_user = collections.defaultdict(list)
    for i, q in enumerate(qs):
        by_user[q["user"]].append(i)
    db = os.path.join(tmp, "mem.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    vecs, qvecs = {}, {}
    if embed:
        for user, rows in turns.items():
            vecs[user] = embed([r["text"] for r in rows])
        qv = embed([q["question"] for q in qs])
        qvecs = dict(enumerate(qv))
    t0 = time.time()
    for user, rows in turns.items():
        path = os.path.join(tmp, user + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for j, r in enumerate(rows):
                line = {k: r[k] for k in TURN_KEYS}
                if embed:
                    line["embedding"] = vecs[user][j]
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        run([vitamin, "memory", "--db", db] + extra + ["import", path, "--user", user])
    t_import = time.time() - t0
    out = {}
    for mode in modes:
        hits, t0 = {}, time.time()
        for user, idx in by_user.items():
            qpath = os.path.join(tmp, user + ".queries")
            with open(qpath, "w", encoding="utf-8") as f:
                for i in idx:
                    q = {"query": qs[i]["question"], "embedding": qvecs[i]} if embed \
                        else qs[i]["question"]
                    f.write(json.dumps(q, ensure_ascii=False) + "\n")
            cmd = [vitamin, "memory", "--db", db] + extra + \
                  ["search", "--user", user, "--top", str(topk), "--json", "--queries", qpath]
            if mode:
                cmd += ["--mode", mode]
            lines = [l for l in run(cmd).splitlines() if l.strip()]
            if len(lines) != len(idx):
                raise RuntimeError("%s: %d result lines for %d queries" % (user, len(lines), len(idx)))
            for i, line in zip(idx, lines):
                hits[i] = [str(r.get("id")) for r in json.loads(line).get("results", [])]
        out[mode] = (hits, t_import, time.time() - t0)
    return out


# ---------------------------------------------------------------- scoring

def score(qs, hits):
    """{"all": {k: pct}, category: {k: pct}, "n": {...}}"""
    tot = collections.Counter()
    got = {k: collections.Counter() for k in KS}
    for i, q in enumerate(qs):
        ev = set(q["evidence"])
        ids = hits.get(i, [])
        for cat in ("all", q["category"]):
            tot[cat] += 1 if ids is not None else 0
            for k in KS:
                got[k][cat] += 1 if ev & set(ids[:k]) else 0
    return {cat: {"n": tot[cat], **{"evhit@%d" % k: round(100.0 * got[k][cat] / tot[cat], 1)
                                    for k in KS}} for cat in tot}


def misses(qs, hits, k=5, per_cat=3):
    out = collections.defaultdict(list)
    for i, q in enumerate(qs):
        if not set(q["evidence"]) & set(hits.get(i, [])[:k]) and len(out[q["category"]]) < per_cat:
            out[q["category"]].append({"qid": q.get("qid"), "question": q["question"],
                                       "evidence": q["evidence"], "got": hits.get(i, [])[:k]})
    return out


def markdown(res, langs):
    lines = []
    systems = []
    for lang in langs:
        for name in res[lang]:
            if name not in systems:
                systems.append(name)
    order = list(systems)
    systems.sort(key=lambda n: (n.startswith("vitamin"), order.index(n)))
    head = "| retriever | " + " | ".join("%s EvHit@%d" % (l, k) for l in langs for k in KS) + " |"
    lines += [head, "|" + "---|" * (1 + len(langs) * len(KS))]
    base = {l: res[l].get("baseline fts5 porter unicode61", {}).get("all", {}) for l in langs}
    for name in systems:
        cells = []
        for l in langs:
            for k in KS:
                s = res[l].get(name, {}).get("all")
                if not s:
                    cells.append("—")
                    continue
                v = s["evhit@%d" % k]
                d = v - base[l].get("evhit@%d" % k, v)
                cells.append("%.1f" % v + (" (%+.1f)" % d if name != "baseline fts5 porter unicode61" else ""))
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    for l in langs:
        cats = sorted({c for s in res[l].values() for c in s if c != "all"})
        lines += ["", "%s, by category (EvHit@5 / EvHit@10; n questions)" % l, "",
                  "| retriever | " + " | ".join("%s (%d)" % (c, next(iter(res[l].values()))[c]["n"])
                                               for c in cats) + " |",
                  "|" + "---|" * (1 + len(cats))]
        for name in [n for n in systems if n in res[l]]:
            s = res[l][name]
            lines.append("| %s | %s |" % (name, " | ".join(
                "%.1f / %.1f" % (s[c]["evhit@5"], s[c]["evhit@10"]) if c in s else "—" for c in cats)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="EvHit@5/@10 of the recall benchmark")
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--lang", action="append", choices=["en", "ko"],
                    help="only this language (repeatable); default both")
    ap.add_argument("--vitamin", default="build/vitamin", help="the vitamin binary")
    ap.add_argument("--no-vitamin", action="store_true", help="baselines only")
    ap.add_argument("--modes", help="comma-separated --mode values for `vitamin memory search` "
                                    "(default: those its --help names, else its default)")
    ap.add_argument("--vitamin-arg", action="append", default=[],
                    help="extra argument for every `vitamin memory` call, before the "
                         "subcommand (repeatable), e.g. --vitamin-arg=--embedding-model=E.gguf")
    ap.add_argument("--embed-url", help="an OpenAI-compatible embeddings endpoint (e.g. "
                    "http://127.0.0.1:8080/v1/embeddings of `vitamin serve -m EMBEDDING.gguf`): "
                    "vitamin is then also run with an embedding on every turn and query")
    ap.add_argument("--embed-model", default="default", help="the model name sent to --embed-url")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    ap.add_argument("--misses", type=int, default=0,
                    help="also list up to N missed questions per category for vitamin")
    ap.add_argument("--check", action="store_true", help="validate the data and exit")
    args = ap.parse_args()
    langs = args.lang or ["en", "ko"]
    data = load(args.data, langs)
    bad = check(data)
    if args.check or bad:
        for b in bad[:50]:
            print("recall data: " + b, file=sys.stderr)
        if not bad:
            for l in langs:
                t, q = data[l]
                print("%s: %d conversations, %d turns, %d questions: ok" %
                      (l, len(t), sum(len(r) for r in t.values()), len(q)))
        sys.exit(1 if bad else 0)

    res = {l: {} for l in langs}
    info = {"notes": []}
    for l in langs:
        turns, qs = data[l]
        res[l]["baseline fts5 porter unicode61"] = score(qs, baseline(turns, qs, "porter unicode61", 10))
        if l == "ko":
            res[l]["reference fts5 trigram"] = score(qs, baseline(turns, qs, "trigram", 10))
        res[l]["reference: baseline + stop words + neighbour turns"] = score(
            qs, baseline(turns, qs, "porter unicode61", 10, STOP[l], 1))
    help_text = None if args.no_vitamin else vitamin_help(args.vitamin)
    missed = {}
    if help_text is None:
        info["notes"].append("vitamin memory search not available at %s: baselines only"
                             % args.vitamin if not args.no_vitamin else "baselines only")
    else:
        modes = args.modes.split(",") if args.modes else detect_modes(help_text)
        with tempfile.TemporaryDirectory(prefix="recall-") as tmp:
            for l in langs:
                turns, qs = data[l]
                runs = [(None, "")]
                if args.embed_url:
                    runs.append((lambda texts: embed_all(args.embed_url, args.embed_model, texts),
                                 " + embeddings"))
                for embed, label in runs:
                    found = vitamin_search(args.vitamin, turns, qs, 10, modes, args.vitamin_arg,
                                           tmp, embed)
                    for mode, (hits, ti, ts) in found.items():
                        name = "vitamin" + label + (" --mode %s" % mode if mode else "")
                        res[l][name] = score(qs, hits)
                        info["notes"].append(
                            "%s %s: import %.2f s (%d turns), search %.2f s (%d queries)"
                            % (l, name, ti, sum(len(r) for r in turns.values()), ts, len(qs)))
                        if args.misses:
                            missed.setdefault(l, {})[name] = misses(qs, hits, 5, args.misses)
    if args.json:
        print(json.dumps({"results": res, "notes": info["notes"], "misses": missed},
                         ensure_ascii=False, indent=1))
        return
    print(markdown(res, langs))
    for n in info["notes"]:
        print("\n" + n if n is info["notes"][0] else n)
    for l, by in missed.items():
        for name, cats in by.items():
            print("\n%s %s, missed at k=5:" % (l, name))
            for cat, items in cats.items():
                for m in items:
                    print("  [%s] %s  evidence %s  got %s" % (cat, m["question"], m["evidence"], m["got"]))


if __name__ == "__main__":
    main()
