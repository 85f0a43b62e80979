"""Inputs for the bounded-records measurements (written to a scratch folder, not committed).

    python make_inputs.py OUTDIR

normal.jsonl     200 affiliation pairs (seeded)
absurd.jsonl     the same pairs with a 300 MB document (6 x 10^7 short words) after the
                 first 100 and a 30 MB single "word" after the next 50
short.jsonl      3,000 short pairs
long.jsonl       3,000 pairs whose document has 12,000 words
big100k.jsonl    20,000 pairs whose document is ~100 KB of words
"""
import json
import random
import sys
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(13)
WORDS = ("university institute department laboratory hospital physics chemistry Tokyo Paris "
         "東京大学 物理学科 université Universität школа факультет of for and de la").split()


def sentence(n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def pair(i, doc=None):
    return {"id": f"p{i:06d}", "query": sentence(rng.randint(3, 12)), "document": doc or sentence(rng.randint(2, 8))}


normal = [pair(i) for i in range(200)]
with open(out / "normal.jsonl", "w") as f:
    for r in normal:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
unit = " ".join(rng.choice(WORDS) for _ in range(1000)) + " "
with open(out / "absurd.jsonl", "w") as f:
    for k, r in enumerate(normal):
        if k == 100:
            doc = unit * (300_000_000 // len(unit.encode()))
            f.write(json.dumps({"id": "huge-doc", "query": "Univ. of Tokyo", "document": doc}, ensure_ascii=False) + "\n")
        if k == 150:
            f.write(json.dumps({"id": "huge-word", "query": "Univ. of Tokyo", "document": "x" * 30_000_000}) + "\n")
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open(out / "short.jsonl", "w") as f:
    for i in range(3000):
        f.write(json.dumps(pair(i), ensure_ascii=False) + "\n")
with open(out / "long.jsonl", "w") as f:
    for i in range(3000):
        f.write(json.dumps(pair(i, sentence(12_000)), ensure_ascii=False) + "\n")
with open(out / "big100k.jsonl", "w") as f:
    block = sentence(20_000)
    for i in range(20_000):
        start = rng.randint(0, 1000)
        doc = block[start:start + 100_000]
        f.write(json.dumps(pair(i, doc), ensure_ascii=False) + "\n")
