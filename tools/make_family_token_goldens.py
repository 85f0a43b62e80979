"""Golden pair encodings (ids AND segment ids) from Python `tokenizers` for the family fixtures.

For each fixture tokenizer (tests/fixtures/xlmr-tiny: reduced XLM-R Unigram; tests/fixtures/
bert-tiny: reduced uncased WordPiece with segment ids 0/1) this writes seeded (query,
document) pairs with their `input_ids` and `token_type_ids`, without truncation and with
`longest_first` truncation at many max_length values (tiny, 40, 128, 512, 2048, and values
chosen to cut only the longer side or both), including long documents (up to ~6,000
characters) so that the engine's pre-truncation is exercised. tests/family_tokens.rs checks
that the Rust tokenizer reproduces every line exactly.

Usage:

    python tools/make_family_token_goldens.py --out tests/fixtures/family_token_goldens.jsonl \
        [--pairs 1200] [--seed 0]

One JSON object per line:

    {"tokenizer": "xlmr-tiny"|"bert-tiny", "query": a, "document": b, "max_length": N or null,
     "input_ids": [...], "token_type_ids": [...]}

U+2028, U+2029 and U+0085 are written escaped so that line-based readers never split a line.

Requirements: tokenizers==0.23.2, numpy (same material as tools/make_token_goldens.py).
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gte_reference as ref  # noqa: E402
import make_token_goldens as mtg  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Text WordPiece/BERT normalization treats specially: accents and case (lowercase + strip
# accents), CJK (split per character), control characters (dropped), punctuation (split),
# words longer than max_input_chars_per_word (100) -> [UNK], literal special tokens.
BERT_LITERALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[unused0]", "##ing", "un##able", "[sep]",
                 "ÀÉÎÕÜ", "Ñandú", "Ærøskøbing", "Straße", "İstanbul", "ǅ", "ﬁ", "naïve café", "Ωmega",
                 "東京大学", "中文字符", "日本語テキスト", "한국어", "\u0301e", "e\u0301", "a\u00adb",
                 "x" * 101, "y" * 100, "supercalifragilisticexpialidocious" * 3, "don't", "U.S.A.", "e-mail",
                 "3.14159", "$100,000", "#hashtag", "@user", "a/b\\c", "\x00\x01\x7f", "\ufffd", "\u200b"]


def bert_decorate(gen, text):
    for _ in range(int(gen.rng.integers(1, 4))):
        pos = int(gen.rng.integers(0, len(text) + 1))
        text = text[:pos] + gen.pick(BERT_LITERALS) + text[pos:]
    return text


def make_pairs(gen, name, tok, n_pairs):
    def length(s):
        return len(tok.encode(s, add_special_tokens=False).ids)

    pairs = []
    specials = len(tok.encode("", "").ids)  # the engine refuses a max_length below the template's size
    long_q, long_d = gen.long_text(3000), gen.long_text(6000)
    literals = mtg.SPECIAL_LITERALS if name.startswith("xlmr") else BERT_LITERALS
    fixed = [("", "", None), ("", "University of Tokyo", None), ("Univ. of Tokyo", "", None), ("", "", specials),
             ("", "University of Tokyo", specials), ("Univ. of Tokyo", "", specials + 1),
             ("Univ. of Tokyo", "University of Tokyo", specials + 1),
             (long_q, long_d, None), (long_q, long_d, 512), (long_q, long_d, 2048), (long_q, long_d, 40),
             (long_d, "Univ. of Tokyo", 512), ("Univ. of Tokyo", long_d, 128), (long_d, long_q, 511)]
    fixed += [(lit, lit, None) for lit in literals] + [(lit, "x " + lit, 6) for lit in literals]
    # Literal added tokens around the early exit of truncation (it never stops right after one).
    m = "<mask>" if name.startswith("xlmr") else "[MASK]"
    for a, b in [("a b c d e" + m * 6, "x y z w v u"), ("a b c" + m * 6, "x y z w v u"), (m * 6 + " hello world", "a b c d e"),
                 (m * 3 + " hello world", "a b c d e"), ("a b c " + m + " d e f", "x y z w v u"),
                 ("a b c d " + m + " e f", "x y z w v u"), ("hello world " + m * 6, "a b c d e f")]:
        for extra in (1, 2, 3):
            fixed += [(a, b, specials + extra), (b, a, specials + extra)]
    pairs += [(q, d, n, "fixed") for q, d, n in fixed]
    while len(pairs) < n_pairs:
        r = gen.rng.random()
        if r < 0.35:
            q, d = gen.affiliation(), gen.pick(mtg.INSTITUTIONS) if gen.chance(0.7) else gen.affiliation()
        elif r < 0.6:
            q, d = gen.text(), gen.text()
        elif r < 0.8:  # long documents: truncation and pre-truncation have room to act
            q, d = gen.text(), gen.long_text(int(gen.rng.integers(200, 2000)))
        else:  # both sides long
            q, d = gen.long_text(int(gen.rng.integers(200, 800))), gen.long_text(int(gen.rng.integers(200, 1500)))
        if not name.startswith("xlmr") and gen.chance(0.3):
            q = bert_decorate(gen, q) if gen.chance(0.5) else q
            d = bert_decorate(gen, d)
        nq, nd = length(q), length(d)
        if gen.chance(0.12):
            n, why = gen.pick([40, 128, 256, 512, 2048]), "typical"
        else:
            n, why = mtg.pick_max_length(gen, nq, nd)
            if n is not None:
                n = max(n, specials)
            if nq + nd > 400 and (n is None or n > nq + nd):  # keep the file small: long pairs are cut
                n, why = int(gen.rng.integers(specials, 400)), "long-cut"
        pairs.append((q, d, n, why))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/family_token_goldens.jsonl")
    ap.add_argument("--fixtures", type=Path, default=REPO / "tests/fixtures")
    ap.add_argument("--pairs", type=int, default=1200, help="pairs per tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", action="append", metavar="NAME=PATH",
                    help="instead of the two fixtures: a tokenizer.json to write goldens for (the name picks the "
                         "material: one starting with 'xlmr' gets XLM-R literals, others BERT's), e.g. the full "
                         "WordPiece: --tokenizer bert-full=/tmp/crossrank-minilm-drift/tokenizer.json")
    args = ap.parse_args()

    if args.tokenizer:
        sources = [tuple(t.split("=", 1)) for t in args.tokenizer]
    else:
        sources = [(name, args.fixtures / name / "tokenizer.json") for name in ("xlmr-tiny", "bert-tiny")]
    lines = []
    for k, (name, path) in enumerate(sources):
        tok = ref.load_tokenizer(Path(path))
        gen = mtg.Gen(args.seed + k)
        counts, n_ids, segments = Counter(), 0, Counter()
        for q, d, n, why in make_pairs(gen, name, tok, args.pairs):
            if n is None:
                tok.no_truncation()
            else:
                tok.enable_truncation(n, strategy="longest_first")
            enc = tok.encode(q, d)
            counts[why] += 1
            n_ids += len(enc.ids)
            segments.update(enc.type_ids)
            lines.append(mtg.dumps({"tokenizer": name, "query": q, "document": d, "max_length": n,
                                    "input_ids": enc.ids, "token_type_ids": enc.type_ids}))
        tok.no_truncation()
        print(f"{name}: {sum(counts.values())} pairs, {n_ids} ids, segment ids {dict(sorted(segments.items()))}, "
              f"max_length kinds {dict(sorted(counts.items()))}")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(lines)} lines, {len(text.encode('utf-8')) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
