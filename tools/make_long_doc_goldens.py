"""Golden ids from Python `tokenizers` for long documents cut by `longest_first` truncation.

The engine tokenizes only a prefix of a long side where that provably gives the same ids
(src/pretruncate.rs). This file pins what Python `tokenizers` (0.23) gives for the full
texts, so the two can be compared id for id: many words, long words, mixed scripts, CJK
without spaces, runs of whitespace (tabs, newlines, CRLF, U+3000, NBSP, zero-width
characters), combining marks right after a space, words that normalize to nothing, Prepend
characters before a space, special-token literals next to spaces, texts just around the
first cut, both sides long, and "absurd" sides (a run without whitespace, or of words that
normalize to nothing, far longer than the work bound, 64 x max_length bytes) that the engine
pre-cuts (ids may differ; the test checks
that they are flagged).

Texts are stored as runs, `[[piece, repeat], ...]`, so huge documents stay small on disk.

Usage:

    python tools/make_long_doc_goldens.py --xlmr /work/shared/assets/xlmr-tokenizer.json \
        --tiny tests/fixtures/tiny/tokenizer.json --out tests/fixtures/long_doc_goldens.jsonl

Output, one JSON object per line:

    {"case": name, "query": runs, "document": runs, "max_length": N, "absurd": bool,
     "ids": {"xlmr": [...], "tiny": [...]}}
        ids = Tokenizer.encode(query, document) with truncation longest_first at N

Requirements: pip install tokenizers==0.23.2 numpy
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_token_goldens as mtg  # noqa: E402

MAX_LENGTHS = [8, 12, 16, 32, 64, 128, 256, 512]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2002", "\u202f", " \t ", "\n\n", " \u3000 ",
          "\u200b ", " \u200b", "\u200b", "\ufeff ", "\u2028", "\u0085", "\u000b"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u200e", "\u200f", "\u2060", "\x00", "\x7f"]
COMBINING_MARKS = ["\u0301", "\u0308", "\u0303", "\u0323\u0302", "\u093c", "\u05c1", "\u064e", "\u0e34", "\u20dd"]
CJK_BLOCKS = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0x0E00, 0x0E7F)]
PREPEND = ["\u0600", "\u0601", "\u06dd", "\u070f", "\u0d4e", "\U000110bd"]


def runs(text):
    return [[text, 1]]


def expand(rs):
    return "".join(piece * times for piece, times in rs)


class Docs:
    def __init__(self, seed):
        self.g = mtg.Gen(seed)
        self.rng = self.g.rng

    def n(self, lo, hi):
        return int(self.rng.integers(lo, hi))

    def words_doc(self, n_chars):
        """Affiliations, soups and random code points: the project's general golden material."""
        return self.g.long_text(n_chars)

    def join_words(self, words, seps=None):
        seps = seps or [" "] * 8 + SPACES
        out = []
        for w in words:
            out.append(w)
            out.append(self.g.pick(seps))
        return "".join(out)

    def cjk_doc(self, n_chars):
        out, size = [], 0
        while size < n_chars:
            lo, hi = self.g.pick(CJK_BLOCKS)
            k = self.n(5, 400)
            out.append("".join(chr(self.n(lo, hi + 1)) for _ in range(k)))
            out.append(self.g.pick([" ", "\u3000", "\n", "、", "。", " \u3000", "\t"]))
            size += k + 1
        return "".join(out)

    def long_words_doc(self, n_words):
        words = []
        for _ in range(n_words):
            r = self.rng.random()
            if r < 0.5:
                words.append(self.g.pick(mtg.WORDS))
            elif r < 0.8:
                words.append("".join(self.g.pick("abcdefghijklmnopqrstuvwxyzéüß") for _ in range(self.n(20, 400))))
            else:
                words.append("".join(self.g.pick(mtg.WORDS) for _ in range(self.n(3, 60))))
        return self.join_words(words)

    def whitespace_runs_doc(self, n_words):
        words = [self.g.pick(mtg.WORDS + mtg.CITIES + mtg.COUNTRIES) for _ in range(n_words)]
        seps = ["".join(self.g.pick(SPACES) for _ in range(self.n(1, 8))) for _ in range(30)]
        return self.join_words(words, seps)

    def combining_doc(self, n_words):
        words = []
        for _ in range(n_words):
            w = self.g.pick(mtg.WORDS)
            if self.g.chance(0.5):
                w = self.g.pick(COMBINING_MARKS) + w  # the mark follows the space before it
            if self.g.chance(0.3):
                w = w + self.g.pick(COMBINING_MARKS)
            words.append(w)
        return self.join_words(words)

    def zero_width_doc(self, n_words):
        words = []
        for _ in range(n_words):
            if self.g.chance(0.5):  # words that normalize to nothing
                words.append("".join(self.g.pick(ZERO_WIDTH) for _ in range(self.n(1, 4))))
            else:
                w = self.g.pick(mtg.WORDS)
                if self.g.chance(0.3):
                    k = self.n(0, len(w) + 1)
                    w = w[:k] + self.g.pick(ZERO_WIDTH) + w[k:]
                words.append(w)
        return self.join_words(words)

    def prepend_doc(self, n_words):
        words = []
        for _ in range(n_words):
            w = self.g.pick(mtg.WORDS + ["١٢٣", "٣٤٥"])
            if self.g.chance(0.4):
                w = w + self.g.pick(PREPEND)  # a Prepend character right before the space
            words.append(w)
        return self.join_words(words)

    def special_doc(self, n_words):
        words = []
        for _ in range(n_words):
            words.append(self.g.pick(mtg.WORDS + mtg.SPECIAL_LITERALS + ["<mask>", "</s>", "<s>"]))
        return self.join_words(words, [" ", "  ", "", "\t", "\n"])

    def query(self):
        r = self.rng.random()
        if r < 0.1:
            return ""
        if r < 0.8:
            return self.g.affiliation()
        return self.g.text()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xlmr", required=True, type=Path)
    ap.add_argument("--tiny", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--per-case", type=int, default=30)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    toks = {}
    for name, path in (("xlmr", args.xlmr), ("tiny", args.tiny)):
        t = Tokenizer.from_file(str(path))
        t.no_padding()
        toks[name] = t
    d = Docs(args.seed)

    cases = []  # (case, query runs, document runs, max_length, absurd)

    def add(case, q, doc, n, absurd=False):
        cases.append((case, q, doc, n, absurd))

    for _ in range(args.per_case):
        n = d.g.pick(MAX_LENGTHS)
        # sides from just under the first cut (8 bytes per token) to several times it
        size = min(int(n * d.rng.uniform(4, 24)), 3500)
        add("words", runs(d.query()), runs(d.words_doc(size)), n)
        add("cjk", runs(d.query()), runs(d.cjk_doc(size // 2)), n)
        add("long_words", runs(d.query()), runs(d.long_words_doc(max(4, size // 12))), n)
        add("whitespace_runs", runs(d.query()), runs(d.whitespace_runs_doc(max(4, size // 8))), n)
        add("combining", runs(d.query()), runs(d.combining_doc(max(4, size // 8))), n)
        add("zero_width", runs(d.query()), runs(d.zero_width_doc(max(4, size // 5))), n)
        add("prepend", runs(d.query()), runs(d.prepend_doc(max(4, size // 8))), n)
        add("special_literals", runs(d.query()), runs(d.special_doc(max(4, size // 6))), n)
        add("both_long", runs(d.words_doc(size)), runs(d.words_doc(int(size * d.rng.uniform(0.5, 2)))), n)
        # right around the first cut (8 x max_length bytes)
        text = d.words_doc(n * 12)
        cut = len(text.encode()[: n * 8 + d.n(-8, 9)].decode("utf-8", "ignore"))
        add("around_first_cut", runs(d.query()), runs(text[: cut + d.n(0, 3)]), n)

    # 12,000-word documents, at typical limits, stored as runs
    for n in (128, 512, 8192):
        add("12000_words", runs("Dept. of Physics, University of Tokyo"),
            [["University of Tokyo, Department of Physics ", 2000], ["東京大学\u3000理学部 ", 2000],
             ["Université Paris-Saclay\t", 2000]], n)
        add("12000_words_ws", runs("Univ. of Tokyo"), [["word\u00a0 \n", 6000], ["\u200b ", 6000]], n)
        # 12,000 words that normalize to nothing: over the work bound (64 x max_length bytes)
        # they are pre-cut like a run without whitespace; within it, exact
        add("vanishing_words", runs("Univ. of Tokyo"), [["\u200b ", 12000], ["University of Tokyo ", 20]], n,
            4 * 12000 > 64 * n)
        add("vanishing_within_bound", runs("Univ. of Tokyo"), [["\u200b ", 8 * n], ["University of Tokyo ", 40]], n)
    # absurd: runs without whitespace far longer than 64 x max_length bytes
    for n in (16, 128):
        add("absurd_word", runs("Univ. of Tokyo"), [["abcdefghij", 2000 * n]], n, True)
        add("absurd_cjk", runs("Univ. of Tokyo"), [["東京大学理学部物理学科", 1000 * n]], n, True)
        add("absurd_query", [["xyz", 30 * n * 10]], runs("University of Tokyo"), n, True)

    lines, counts = [], Counter()
    for case, q, doc, n, absurd in cases:
        ids = {}
        for name, t in toks.items():
            t.enable_truncation(n, strategy="longest_first")
            ids[name] = t.encode(expand(q), expand(doc)).ids
        counts[case] += 1
        lines.append(mtg.dumps({"case": case, "query": q, "document": doc, "max_length": n, "absurd": absurd,
                                "ids": ids}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(lines)} pairs, {len(text.encode('utf-8')) / 1e6:.2f} MB")
    print("cases:", dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
