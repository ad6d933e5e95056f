#!/usr/bin/env python3
"""Generator of the recall benchmark's data (bench/recall/data/).

Builds, for English and for Korean separately, several long two-speaker
conversations (one memory user each, >= 20 dated sessions each) and questions
whose answers sit in known turns. No language model is involved: the language
tables (lang_en.py, lang_ko.py) hold hand-written fact types, each with several
ways to state it casually in a conversation, several paraphrased questions,
value lists, filler chit-chat, reactions and distractor lines; this file picks
from them with one seeded random generator, so the same seed gives the same
bytes. See README.md for the design and its limits.

Usage: python3 bench/recall/gen.py [--seed N] [--out DIR]
Writes DIR/turns/<user>.jsonl (the `vitamin memory import` format:
{"id","text","speaker","time","session"}) and DIR/questions_<lang>.jsonl
({"qid","question","evidence","user","category","answer"}).
"""
import argparse
import datetime as dt
import json
import os
import random
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lang_en  # noqa: E402
import lang_ko  # noqa: E402

LANGS = {"en": lang_en, "ko": lang_ko}

# How often a fact is stated in its plain variant (words a question would use,
# see PLAIN in the language tables) rather than a casual or indirect one.
P_PLAIN = 0.5
# How often a fact's value also turns up in an unrelated turn (L.ECHO).
P_ECHO = 0.35

# ---------------------------------------------------------------- formatting

_JOSA = {  # Korean particle pairs: (after a final consonant, after a vowel)
    "은": ("은", "는"), "는": ("은", "는"), "이": ("이", "가"), "가": ("이", "가"),
    "을": ("을", "를"), "를": ("을", "를"), "과": ("과", "와"), "와": ("과", "와"),
    "아": ("아", "야"), "야": ("아", "야"), "이랑": ("이랑", "랑"), "랑": ("이랑", "랑"),
    "으로": ("으로", "로"), "로": ("으로", "로"), "이에요": ("이에요", "예요"),
    "예요": ("이에요", "예요"), "이야": ("이야", "야"), "이는": ("이는", "는"),
    "이가": ("이가", "가"), "이도": ("이도", "도"), "이의": ("이의", "의"),
    "이를": ("이를", "를"), "이한테": ("이한테", "한테"), "이라": ("이라", "라"),
    "이라고": ("이라고", "라고"), "이고": ("이고", "고"),
    "이었어": ("이었어", "였어"), "이라는": ("이라는", "라는"),
}
for _p in ("에게", "에", "의", "도", "에서", "한테", "만"):  # the same after any syllable
    _JOSA[_p] = (_p, _p)


def _final(word):
    """Jongseong index of the last Hangul syllable of word (0: none)."""
    for ch in reversed(word):
        o = ord(ch)
        if 0xAC00 <= o <= 0xD7A3:
            return (o - 0xAC00) % 28
        if ch.isdigit():
            return 0 if ch in "2459" else 1
        if ch.isalpha():
            return 0
    return 0


def josa(word, j):
    pair = _JOSA.get(j)
    if pair is None:
        raise ValueError("unknown josa " + j)
    fin = _final(word)
    if j in ("으로", "로"):
        return word + ("로" if fin in (0, 8) else "으로")
    return word + (pair[0] if fin else pair[1])


def article(word):
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")


def fmt(template, ctx):
    def sub(m):
        key, spec = m.group(1), m.group(2)
        cap = key[:1].isupper() and key.lower() in ctx and key not in ctx
        val = ctx[key.lower()] if cap else ctx[key]
        if spec == "an":
            val = article(val)
        elif spec:
            val = josa(val, spec)
        if cap:
            val = val[:1].upper() + val[1:]
        return val
    out = _SLOT.sub(sub, template)
    if "{" in out or "}" in out:
        raise ValueError("unfilled slot in " + template)
    return out


# ---------------------------------------------------------------- time

def time_phrase(rng, L, d, allowed=None):
    """A relative time phrase for an event told on date d, and the event's date
    as an answer string (L.date_str / L.week_str ...)."""
    kind, phrase = rng.choice([t for t in L.TIMES if t[0] in allowed] if allowed else L.TIMES)
    if kind == "today":
        return phrase, L.date_str(d)
    if kind.startswith("day"):
        n = int(kind[3:])
        return phrase, L.date_str(d - dt.timedelta(days=n))
    if kind == "weekend":
        back = d.weekday() + 2  # the Saturday of the week before
        return phrase, L.weekend_str(d - dt.timedelta(days=back))
    if kind == "week":
        return phrase, L.week_str(d)
    if kind == "2weeks":
        return phrase, L.date_str(d - dt.timedelta(days=14))
    if kind == "friday":
        back = (d.weekday() - 4) % 7 or 7
        return phrase, L.date_str(d - dt.timedelta(days=back))
    if kind == "month":
        first = d.replace(day=1) - dt.timedelta(days=1)
        return phrase, L.month_str(first)
    raise ValueError(kind)


# ---------------------------------------------------------------- episodes

class Conv:
    """One conversation being built: sessions of blocks, a block being a list
    of turns (speaker index, text, tag); tags name evidence turns."""

    def __init__(self, lang, L, uid, names, rng, nsess):
        self.lang, self.L, self.uid, self.names, self.rng = lang, L, uid, names, rng
        start = dt.date(2023, 1, 2) + dt.timedelta(days=rng.randrange(0, 120))
        self.dates, d = [], start
        for _ in range(nsess):
            self.dates.append(d)
            d += dt.timedelta(days=rng.randint(4, 15))
        self.blocks = [[] for _ in range(nsess)]
        self.questions = []
        self.ntag = 0
        self.used_values = {}
        self.talk_deck = []

    def ctx(self, owner, extra=None):
        c = {"me": self.names[owner], "you": self.names[1 - owner],
             "name": self.names[owner]}
        if extra:
            c.update(extra)
        return c

    def tag(self):
        self.ntag += 1
        return "t%d" % self.ntag

    def episode(self, sess, owner, template, ctx, mood):
        """Adds one episode (a list of 'S*text'/'Otext' turns) to session sess;
        returns the tags of its evidence turns."""
        turns, tags = [], []
        for line in template:
            who = owner if line[0] == "S" else 1 - owner
            star = line[1:2] == "*"
            text = fmt(line[2:] if star else line[1:], ctx)
            t = self.tag() if star else None
            if t:
                tags.append(t)
            turns.append((who, text, t))
        if turns[-1][0] == owner and self.rng.random() < 0.75:
            react = self.rng.choice(self.L.REACT[mood])
            turns.append((1 - owner, fmt(react, self.ctx(1 - owner)), None))
        self.blocks[sess].append(turns)
        if not tags:
            raise ValueError("episode without evidence: %r" % (template,))
        return tags

    def pick_value(self, key, values, avoid=()):
        used = self.used_values.setdefault(key, set())
        pool = [v for v in values if v not in used and v not in avoid] or \
               [v for v in values if v not in avoid] or list(values)
        v = self.rng.choice(pool)
        used.add(v)
        return v

    def value_ctx(self, v):
        parts = v.split("|")
        return {k: parts[i] for i, k in enumerate("abcd") if i < len(parts)}

    def say(self, F, field="say"):
        plain = F.get("plain_" + field)
        if plain and self.rng.random() < P_PLAIN:
            return self.rng.choice(plain)
        return self.rng.choice(F[field])

    def ask(self, templates, owner, tags, cat, answer, extra=None):
        q = fmt(self.rng.choice(templates), self.ctx(owner, extra))
        self.questions.append({"question": q, "tags": list(tags),
                               "category": cat, "answer": answer})

    # -- fact kinds -------------------------------------------------------

    def echo(self, value):
        """A same-entity distractor: the value said in an unrelated turn of
        some session, by either speaker."""
        x = value.split("|")[0]
        if not x or self.rng.random() >= P_ECHO:
            return
        who = self.rng.randrange(2)
        line = fmt(self.rng.choice(self.L.ECHO), {"x": x})
        react = self.rng.choice(self.L.REACT["neu"])
        self.blocks[self.rng.randrange(len(self.dates))].append(
            [(who, line, None), (1 - who, react, None)])

    def add_fact(self, F, owner, sess):
        rng, n = self.rng, len(self.dates)
        v = self.pick_value(F["key"], F["values"])
        self.echo(v)
        c = self.ctx(owner, self.value_ctx(v))
        kind, mood = F["kind"], F.get("mood", "pos")
        answer = F.get("answer", "{a}")
        if kind in ("static", "event", "trait"):
            tp = None
            if kind == "event":
                tp, when = time_phrase(rng, self.L, self.dates[sess], F.get("times"))
                c["t"] = tp
            tags = self.episode(sess, owner, self.say(F), c, mood)
            if kind == "trait":
                self.ask(F["infer"], owner, tags, "inference", fmt(answer, c),
                         self.value_ctx(v))
                return
            self.ask(F["ask"], owner, tags, "single_hop", fmt(answer, c),
                     self.value_ctx(v))
            if kind == "event" and F.get("when"):
                self.ask(F["when"], owner, tags, "temporal", when, self.value_ctx(v))
        elif kind == "mutable":
            s2 = rng.randint(min(sess + 4, n - 1), n - 1)
            tags1 = self.episode(sess, owner, self.say(F), c, mood)
            v2 = self.pick_value(F["key"], F["values"], avoid=(v,))
            c2 = self.ctx(owner, self.value_ctx(v2))
            tp, when = time_phrase(rng, self.L, self.dates[s2])
            c2["t"] = tp
            c2.update({"old_" + k: x for k, x in self.value_ctx(v).items()})
            tags2 = self.episode(s2, owner, self.say(F, "upd"), c2, "pos")
            self.ask(F["now"], owner, tags2, "update", fmt(answer, c2))
            if F.get("before") and rng.random() < 0.6:
                self.ask(F["before"], owner, tags1, "update", fmt(answer, c))
        elif kind == "multi":
            s2 = rng.randint(min(sess + 3, n - 1), n - 1)
            v2 = self.pick_value(F["key"], F["values"], avoid=(v,))
            c2 = self.ctx(owner, self.value_ctx(v2))
            for cc, ss in ((c, sess), (c2, s2)):
                cc["t"] = time_phrase(rng, self.L, self.dates[ss])[0]
            first = self.say(F)
            rest = [t for t in F["say"] + F.get("plain_say", []) if t is not first]
            says = [first, rng.choice(rest)]
            tags = self.episode(sess, owner, says[0], c, mood)
            tags += self.episode(s2, owner, says[1], c2, mood)
            self.ask(F["ask"], owner, tags, "multi_hop",
                     self.L.AND.join((fmt(answer, c), fmt(answer, c2))))
        else:
            raise ValueError(kind)

    def add_relation(self, R, owner, sess):
        """Multi-hop: a relative introduced by relation in one session, then
        by name alone in a later one; the question names the relation."""
        rng, n = self.rng, len(self.dates)
        me = self.L.GENDER.get(self.names[owner], "n")
        rels = [r for r in R["rels"] if (r.split("|") + ["n", "n"])[2] in ("n", me)]
        rel, g = self.pick_value("rel", rels).split("|")[:2]
        person = self.pick_value("person", [p for p in R["people"]
                                            if g == "n" or p.endswith("|" + g)]).split("|")[0]
        c = self.ctx(owner, {"r": rel, "p": person})
        tags1 = self.episode(sess, owner, rng.choice(R["intro"]), c, "neu")
        A = rng.choice(R["attrs"])
        v = self.pick_value("rel_" + A["key"], A["values"])
        s2 = rng.randint(min(sess + 2, n - 1), n - 1)
        c2 = dict(c)
        c2.update(self.value_ctx(v))
        c2["t"] = time_phrase(rng, self.L, self.dates[s2])[0]
        tags2 = self.episode(s2, owner, rng.choice(A["say"]), c2, A.get("mood", "pos"))
        self.ask(A["ask"], owner, tags1 + tags2, "multi_hop",
                 fmt(A.get("answer", "{a}"), c2), {"r": rel})

    # -- filler -----------------------------------------------------------

    def filler(self, sess, topics):
        L, rng = self.L, self.rng
        nm = lambda who: self.ctx(who)  # noqa: E731
        a = rng.randrange(2)
        blocks = [[(a, fmt(rng.choice(L.GREET), nm(a)), None),
                   (1 - a, fmt(rng.choice(L.GREET_BACK), nm(1 - a)), None)]]
        for _ in range(rng.randint(3, 6)):
            who = rng.randrange(2)
            if not self.talk_deck:  # every exchange once before any comes back
                self.talk_deck = list(L.SMALLTALK)
                rng.shuffle(self.talk_deck)
            ex = self.talk_deck.pop()
            blocks.append([(who if i % 2 == 0 else 1 - who,
                            fmt(line, dict(nm(who if i % 2 == 0 else 1 - who),
                                           **L.fill_slots(rng))), None)
                           for i, line in enumerate(ex)])
        for _ in range(rng.randint(1, 3)):
            who = rng.randrange(2)
            if topics and rng.random() < 0.55:
                F = rng.choice(topics)
                if F.get("dis") and rng.random() < 0.6:
                    line = rng.choice(F["dis"])
                else:
                    line = fmt(rng.choice(L.TOPIC_MENTION),
                               {"topic": rng.choice(F["topic"])})
            else:
                line = rng.choice(L.RANDOM_LINES)
            blocks.append([(who, fmt(line, nm(who)), None),
                           (1 - who, fmt(rng.choice(L.REACT["neu"]), nm(1 - who)), None)])
        b = rng.randrange(2)
        closing = [(b, fmt(rng.choice(L.BYE), nm(b)), None),
                   (1 - b, fmt(rng.choice(L.BYE_BACK), nm(1 - b)), None)]
        return blocks[0], blocks[1:], closing

    # -- assembly ---------------------------------------------------------

    def render(self, topics):
        rng, rows, tagid = self.rng, [], {}
        for s, eps in enumerate(self.blocks):
            greet, mid, closing = self.filler(s, topics)
            mid = mid + eps
            rng.shuffle(mid)
            turns = list(greet)
            for b in mid + [closing]:
                if b is not closing and b[0][0] == turns[-1][0] and not any(t[2] for t in b):
                    b = [(1 - w, text, tag) for w, text, tag in b]
                turns += b
            clock = dt.datetime.combine(self.dates[s], dt.time(rng.randint(8, 21),
                                                             rng.randrange(60)))
            for i, (who, text, tag) in enumerate(turns):
                tid = "D%d:%d" % (s + 1, i + 1)
                if tag:
                    tagid[tag] = tid
                rows.append({"id": tid, "text": text, "speaker": self.names[who],
                             "time": clock.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "session": "D%d" % (s + 1)})
                clock += dt.timedelta(seconds=rng.randint(20, 240))
        qs = []
        for q in self.questions:
            qs.append({"question": q["question"],
                       "evidence": [tagid[t] for t in q["tags"]],
                       "user": self.uid, "category": q["category"],
                       "answer": q["answer"]})
        return rows, qs


def gen_conv(lang, L, uid, names, rng, nsess):
    C = Conv(lang, L, uid, names, rng, nsess)
    facts = list(L.FACTS)
    rng.shuffle(facts)
    n_own = len(facts) * 3 // 4
    chosen = facts[:n_own]
    # some fact types for both speakers (the same question words about two people)
    both = set(F["key"] for F in rng.sample(chosen, len(chosen) // 4))
    plan = []
    for F in chosen:
        owners = [0, 1] if F["key"] in both else [rng.randrange(2) if rng.random() < 0.4 else 0]
        for o in owners:
            plan.append((F, o))
    rng.shuffle(plan)
    for i, (F, o) in enumerate(plan):
        late = F["kind"] in ("mutable", "multi")
        top = nsess - 6 if late else nsess - 1
        sess = rng.randint(0, max(0, top))
        C.add_fact(F, o, sess)
    for _ in range(L.RELATION_COUNT):
        C.add_relation(L.RELATION, rng.randrange(2), rng.randint(0, nsess - 4))
    return C.render(chosen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20231)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "data"))
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "turns"), exist_ok=True)
    for lang, L in LANGS.items():
        rng = random.Random("%d/%s" % (args.seed, lang))
        allq = []
        for k, names in enumerate(L.PAIRS):
            uid = "%s%d" % (lang, k + 1)
            nsess = rng.randint(22, 28)
            rows, qs = gen_conv(lang, L, uid, names, rng, nsess)
            with open(os.path.join(args.out, "turns", uid + ".jsonl"), "w",
                      encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            allq += qs
        with open(os.path.join(args.out, "questions_%s.jsonl" % lang), "w",
                  encoding="utf-8") as f:
            for i, q in enumerate(allq):
                q = dict({"qid": "%s-q%03d" % (lang, i + 1)}, **q)
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        print("%s: %d conversations, %d questions" % (lang, len(L.PAIRS), len(allq)))


if __name__ == "__main__":
    main()
