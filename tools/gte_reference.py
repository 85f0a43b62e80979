"""Reference implementations of the GTE multilingual reranker ("new" architecture).

Shared library for the scripts in tools/. It offers two independent ways to compute the
logits of a checkpoint stored in the original "new" layout (docs/gte-architecture.md §2.1):

* ``numpy_forward``: a plain float64 numpy forward written directly from the spec
  (§0 and §3). It is the "exact math" reference.
* ``hf_model`` / ``hf_logits``: Hugging Face transformers' NATIVE
  ``GteForSequenceClassification`` (no remote code), loaded from the same files. It is the
  "what the Python ecosystem computes" reference.

Agreement of the two is what makes the expected values in tests/fixtures trustworthy: they
share no code except the safetensors reader and the scalar erf function.

Requirements (no Hub access is needed or attempted):

    pip install torch transformers==5.24.0 tokenizers safetensors numpy
"""

import json
import math
import os
from pathlib import Path

import numpy as np

# The Hub is never needed: every file is local. Setting these before transformers is
# imported keeps a machine without internet from stalling on retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Tensors that some re-exports store although the official code keeps them non-persistent.
# They are derived data (RoPE tables, position ids), so they are ignored and recomputed.
DERIVED_SUFFIXES = ("position_ids", "inv_freq", "cos_cached", "sin_cached")


# --------------------------------------------------------------------------------------
# Checkpoint reading
# --------------------------------------------------------------------------------------


def expected_tensor_names(config):
    """Names (with the canonical ``new.`` prefix) a "new" checkpoint must hold, in file order."""
    names = ["new.embeddings.word_embeddings.weight"]
    if config.get("type_vocab_size", 0) > 0:
        names.append("new.embeddings.token_type_embeddings.weight")
    names += ["new.embeddings.LayerNorm.weight", "new.embeddings.LayerNorm.bias"]
    for i in range(config["num_hidden_layers"]):
        p = f"new.encoder.layer.{i}."
        names += [
            p + "attention.qkv_proj.weight",
            p + "attention.qkv_proj.bias",
            p + "attention.o_proj.weight",
            p + "attention.o_proj.bias",
            p + "attn_ln.weight",
            p + "attn_ln.bias",
            p + "mlp.up_gate_proj.weight",
            p + "mlp.down_proj.weight",
            p + "mlp.down_proj.bias",
            p + "mlp_ln.weight",
            p + "mlp_ln.bias",
        ]
    names += [
        "new.pooler.dense.weight",
        "new.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    return names


def expected_tensor_shapes(config):
    """Map tensor name -> shape for a "new" checkpoint described by ``config``."""
    h = config["hidden_size"]
    inter = config["intermediate_size"]
    num_labels = len(config.get("id2label", {"0": "LABEL_0"}))
    shapes = {}
    for name in expected_tensor_names(config):
        if name.endswith("word_embeddings.weight"):
            shape = (config["vocab_size"], h)
        elif name.endswith("token_type_embeddings.weight"):
            shape = (config["type_vocab_size"], h)
        elif name.endswith("qkv_proj.weight"):
            shape = (3 * h, h)
        elif name.endswith("qkv_proj.bias"):
            shape = (3 * h,)
        elif name.endswith("up_gate_proj.weight"):
            shape = (2 * inter, h)
        elif name.endswith("down_proj.weight"):
            shape = (h, inter)
        elif name.endswith("o_proj.weight") or name.endswith("pooler.dense.weight"):
            shape = (h, h)
        elif name == "classifier.weight":
            shape = (num_labels, h)
        elif name == "classifier.bias":
            shape = (num_labels,)
        else:  # every remaining tensor is a hidden-sized bias or LayerNorm vector
            shape = (h,)
        shapes[name] = shape
    return shapes


def load_checkpoint(ckpt_dir):
    """Read ``config.json`` + ``model.safetensors`` of a "new"-layout checkpoint.

    Returns ``(config_dict, weights)`` where ``weights`` maps the canonical names (backbone
    under ``new.``, head at the root) to float32 numpy arrays, whatever the stored dtype
    (F32, F16 or BF16). A checkpoint saved without the ``new.`` prefix is accepted too.
    Raises if a tensor is missing, unexpected or has the wrong shape, so that no forward
    pass ever runs on a silently incomplete model.
    """
    # torch reads BF16, which numpy cannot represent; float32 holds F16/BF16 exactly.
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    config = json.loads((ckpt_dir / "config.json").read_text())
    raw = load_file(str(ckpt_dir / "model.safetensors"))

    weights = {}
    for name, tensor in raw.items():
        if name.endswith(DERIVED_SUFFIXES):
            continue
        canonical = name
        if not name.startswith(("new.", "classifier.")):
            canonical = "new." + name
        if canonical in weights:
            raise ValueError(f"tensor {name} present both with and without the 'new.' prefix")
        weights[canonical] = tensor.float().numpy()

    shapes = expected_tensor_shapes(config)
    missing = sorted(set(shapes) - set(weights))
    unexpected = sorted(set(weights) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"checkpoint mismatch: missing={missing} unexpected={unexpected}")
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name}: shape {weights[name].shape}, expected {shape}")
    return config, weights


# --------------------------------------------------------------------------------------
# RoPE frequencies
# --------------------------------------------------------------------------------------


def rope_inv_freq(config):
    """float64 inverse frequencies of the static NTK RoPE (spec §3.3).

    ``base' = rope_theta * factor``; ``inv_freq_j = base'^(-2j/d) / factor^(2/d)``.
    Without ``rope_scaling`` it is plain RoPE with base ``rope_theta``.
    """
    d = config["hidden_size"] // config["num_attention_heads"]
    theta = float(config["rope_theta"])
    scaling = config.get("rope_scaling")
    j = np.arange(d // 2, dtype=np.float64)
    if not scaling:
        return theta ** (-2.0 * j / d)
    kind = scaling.get("type", scaling.get("rope_type"))
    if kind != "ntk" or scaling.get("mixed_b") is not None:
        raise ValueError(f"unsupported rope_scaling {scaling}")
    factor = float(scaling["factor"])
    return (theta * factor) ** (-2.0 * j / d) / factor ** (2.0 / d)


def native_rope_parameters(config):
    """How transformers' native GteConfig expresses our RoPE (spec §1 notes, verified here).

    Native GTE knows no "ntk" rope type: ``GteConfig(rope_scaling={"type": "ntk"})`` is
    accepted with only a warning and then fails when the model is built. The NTK formula
    above equals "linear" RoPE (every frequency divided by ``factor_lin``) with base
    ``rope_theta * factor`` and ``factor_lin = factor^(2/d)``.
    """
    d = config["hidden_size"] // config["num_attention_heads"]
    theta = float(config["rope_theta"])
    scaling = config.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    factor = float(scaling["factor"])
    return {"rope_type": "linear", "factor": factor ** (2.0 / d), "rope_theta": theta * factor}


# --------------------------------------------------------------------------------------
# numpy float64 forward (spec §0 / §3)
# --------------------------------------------------------------------------------------


def _erf(x):
    """Exact erf, vectorised.

    numpy has no erf and ``math.erf`` element by element is far too slow for the
    real-size model (hundreds of millions of calls), so torch's float64 special function
    is used when available. It is a scalar special function, not model code, so the
    forward below stays independent of transformers.
    """
    try:
        import torch

        return torch.special.erf(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    except ImportError:
        return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # population variance, like torch
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _rotate(z, cos, sin):
    """rotate_half RoPE on ``z`` [T, heads, d]: pairs dimension j with j + d/2."""
    half = z.shape[-1] // 2
    z1, z2 = z[..., :half], z[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([z1 * c - z2 * s, z2 * c + z1 * s], axis=-1)


class NumpyGte:
    """float64 copy of the weights plus the forward pass, reusable across many sequences."""

    def __init__(self, config, weights, fp32_rope_inv_freq=None):
        """``fp32_rope_inv_freq``: diagnostic only. Given a float32 inv_freq vector (e.g.
        the buffer of the transformers model), the RoPE angles p * inv_freq are rounded to
        float32 and cos/sin to float32, the way torch builds its table. That isolates the
        (length-dependent) effect of float32 angles from everything else. Default: exact
        float64 angles from the config.
        """
        self.config = config
        self.h = config["hidden_size"]
        self.nh = config["num_attention_heads"]
        self.d = self.h // self.nh
        self.inter = config["intermediate_size"]
        self.eps = float(config["layer_norm_eps"])
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError("only hidden_act 'gelu' (exact erf) is implemented")
        if config.get("position_embedding_type", "rope") != "rope":
            raise ValueError("only rope position embeddings are implemented")
        if config.get("logn_attention_scale") or config.get("layer_norm_type", "layer_norm") != "layer_norm":
            raise ValueError("logn attention scale / rms norm are not part of this model")
        # The embedding table stays float32 (it can be 250048 x 768); rows are upcast
        # when gathered. Everything else is small enough to hold in float64.
        self.word = weights["new.embeddings.word_embeddings.weight"]
        w64 = {k: v.astype(np.float64) for k, v in weights.items() if "word_embeddings" not in k}
        self.w = w64
        tt = w64.get("new.embeddings.token_type_embeddings.weight")
        self.type_row = tt[0] if tt is not None else np.zeros(self.h)
        self.inv_freq = rope_inv_freq(config)
        self.fp32_inv_freq = None
        if fp32_rope_inv_freq is not None:
            self.fp32_inv_freq = np.asarray(fp32_rope_inv_freq, dtype=np.float32)

    def forward_one(self, ids, stats=None):
        """Logits (shape [num_labels]) of one unpadded sequence of token ids.

        If ``stats`` is a list, the mean attention entropy of each layer divided by log(T)
        is appended to it (1.0 = uniform attention), to check a fixture is not degenerate.
        """
        w, h, nh, d, inter = self.w, self.h, self.nh, self.d, self.inter
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError("expected a non-empty 1-D id list")
        if ids.min() < 0 or ids.max() >= self.word.shape[0]:
            raise ValueError("token id outside the embedding table")
        t = len(ids)

        # Embeddings: word row + token type row 0, no absolute positions, then LayerNorm.
        x = self.word[ids].astype(np.float64) + self.type_row
        x = _layer_norm(x, w["new.embeddings.LayerNorm.weight"], w["new.embeddings.LayerNorm.bias"], self.eps)

        # RoPE table for positions 0..T-1 of this sequence: exact float64 angles, unless the
        # diagnostic float32 mode (see __init__) is on.
        if self.fp32_inv_freq is None:
            angles = np.arange(t, dtype=np.float64)[:, None] * self.inv_freq[None, :]
            cos, sin = np.cos(angles), np.sin(angles)
        else:
            angles = (np.arange(t, dtype=np.float32)[:, None] * self.fp32_inv_freq[None, :]).astype(np.float64)
            cos = np.cos(angles).astype(np.float32).astype(np.float64)
            sin = np.sin(angles).astype(np.float32).astype(np.float64)
        scale = 1.0 / math.sqrt(d)

        for i in range(self.config["num_hidden_layers"]):
            p = f"new.encoder.layer.{i}."
            qkv = x @ w[p + "attention.qkv_proj.weight"].T + w[p + "attention.qkv_proj.bias"]
            # Three contiguous blocks q | k | v; inside a block head n owns columns n*d..n*d+d-1.
            q = _rotate(qkv[:, 0:h].reshape(t, nh, d), cos, sin)
            k = _rotate(qkv[:, h : 2 * h].reshape(t, nh, d), cos, sin)
            v = qkv[:, 2 * h : 3 * h].reshape(t, nh, d)
            ctx = np.empty((t, nh, d))
            entropy = 0.0
            for n in range(nh):  # one head at a time keeps the T x T matrix small
                s = (q[:, n, :] @ k[:, n, :].T) * scale
                s -= s.max(axis=-1, keepdims=True)
                e = np.exp(s)
                prob = e / e.sum(axis=-1, keepdims=True)
                ctx[:, n, :] = prob @ v[:, n, :]
                if stats is not None and t > 1:
                    entropy += float(-(prob * np.log(np.maximum(prob, 1e-300))).sum(axis=-1).mean())
            if stats is not None and t > 1:
                stats.append(entropy / nh / math.log(t))
            attn = ctx.reshape(t, h) @ w[p + "attention.o_proj.weight"].T + w[p + "attention.o_proj.bias"]
            x = _layer_norm(x + attn, w[p + "attn_ln.weight"], w[p + "attn_ln.bias"], self.eps)

            ug = x @ w[p + "mlp.up_gate_proj.weight"].T  # no bias
            up, gate = ug[:, :inter], ug[:, inter:]  # first half = up, second half = gate
            act = 0.5 * gate * (1.0 + _erf(gate / math.sqrt(2.0)))
            mlp = (act * up) @ w[p + "mlp.down_proj.weight"].T + w[p + "mlp.down_proj.bias"]
            x = _layer_norm(x + mlp, w[p + "mlp_ln.weight"], w[p + "mlp_ln.bias"], self.eps)

        cls = x[0]
        pooled = np.tanh(w["new.pooler.dense.weight"] @ cls + w["new.pooler.dense.bias"])
        return w["classifier.weight"] @ pooled + w["classifier.bias"]


def numpy_forward(config, weights, input_ids_list):
    """float64 logits for each id list (one unpadded sequence each).

    Returns a list with one entry per sequence: a float for a 1-label model (the rerankers),
    otherwise a numpy array of the label logits.
    """
    model = NumpyGte(config, weights)
    out = []
    for ids in input_ids_list:
        logits = model.forward_one(ids)
        out.append(float(logits[0]) if logits.shape == (1,) else logits)
    return out


# --------------------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------------------


def default_max_length(ckpt_dir):
    """What sentence-transformers >= 4 uses: min(tokenizer model_max_length, max positions)."""
    ckpt_dir = Path(ckpt_dir)
    config = json.loads((ckpt_dir / "config.json").read_text())
    limit = config.get("max_position_embeddings", 8192)
    tc = ckpt_dir / "tokenizer_config.json"
    if tc.exists():
        mml = json.loads(tc.read_text()).get("model_max_length")
        if isinstance(mml, (int, float)) and mml > 0:
            limit = min(limit, int(mml))
    return limit


def load_tokenizer(tokenizer_path, max_length=None):
    """Python ``tokenizers`` tokenizer with pair truncation set like CrossEncoder does.

    ``tokenizer_path`` is a tokenizer.json file or a checkpoint directory holding one.
    """
    from tokenizers import Tokenizer

    path = Path(tokenizer_path)
    if path.is_dir():
        path = path / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length, strategy="longest_first")
    return tok


def encode_pairs(tokenizer, pairs, max_length=8192):
    """Pair encodings ``<s> query </s></s> document </s>`` (ids only), longest_first cut.

    ``tokenizer`` is a path (file or checkpoint directory) or a loaded ``tokenizers``
    Tokenizer; a loaded one is reused (the real tokenizer.json takes ~1.5 s to parse) and
    its truncation setting is changed to ``max_length``.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer, max_length)
    elif max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length, strategy="longest_first")
    return [tokenizer.encode(q, d).ids for q, d in pairs]


# --------------------------------------------------------------------------------------
# transformers native GTE
# --------------------------------------------------------------------------------------


def native_config(config):
    """A transformers ``GteConfig`` equivalent to a "new" config.json."""
    from transformers import GteConfig

    for key, ok in [
        ("position_embedding_type", "rope"),
        ("layer_norm_type", "layer_norm"),
        ("logn_attention_scale", False),
        ("pack_qkv", True),
    ]:
        if config.get(key, ok) != ok:
            raise ValueError(f"config {key}={config[key]!r} is not supported by native GTE")
    id2label = config.get("id2label", {"0": "LABEL_0"})
    cfg = GteConfig(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        hidden_act=config.get("hidden_act", "gelu"),
        max_position_embeddings=config["max_position_embeddings"],
        type_vocab_size=config.get("type_vocab_size", 1),
        layer_norm_eps=config["layer_norm_eps"],
        pad_token_id=config.get("pad_token_id", 1),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0,
        id2label={int(k): v for k, v in id2label.items()},
        rope_parameters=native_rope_parameters(config),
    )
    return cfg


def native_state_dict(config, weights):
    """Our own "new" -> native GTE key/tensor conversion, used to audit from_pretrained.

    Written independently of transformers' conversion mapping: q/k/v are the three row
    blocks of qkv_proj, up/gate the two row halves of up_gate_proj (first = up).
    """
    h, inter = config["hidden_size"], config["intermediate_size"]
    sd = {}
    for name, arr in weights.items():
        if name.startswith("classifier."):
            sd[name] = arr
            continue
        rest = name[len("new.") :]
        if rest.startswith("encoder.layer."):
            _, _, idx, sub = rest.split(".", 3)
            p = f"gte.layers.{idx}."
            if sub.startswith("attention.qkv_proj."):
                kind = sub.rsplit(".", 1)[1]
                for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                    sd[p + f"self_attn.{proj}.{kind}"] = arr[j * h : (j + 1) * h]
            elif sub == "mlp.up_gate_proj.weight":
                sd[p + "mlp.up_proj.weight"] = arr[:inter]
                sd[p + "mlp.gate_proj.weight"] = arr[inter:]
            else:
                sub = sub.replace("attention.o_proj", "self_attn.o_proj")
                sub = sub.replace("attn_ln", "post_attention_layernorm").replace("mlp_ln", "post_mlp_layernorm")
                sd[p + sub] = arr
        else:
            sd["gte." + rest] = arr
    return sd


def hf_model(ckpt_dir, dtype=None, attn_implementation="eager", device="cpu"):
    """transformers' native ``GteForSequenceClassification`` loaded from a "new" checkpoint.

    Loading goes through ``from_pretrained`` (whose "gte" conversion mapping strips
    ``new.``, renames the layers and chunks qkv_proj / up_gate_proj), and is then audited:
    no missing/unexpected/mismatched key, every parameter equal to our own conversion of
    the file, and RoPE buffers finite and equal to the spec's NTK frequencies (the
    meta-device trap of spec §5 item 9).
    """
    import torch
    from transformers import GteForSequenceClassification

    dtype = torch.float32 if dtype is None else dtype
    config, weights = load_checkpoint(ckpt_dir)
    cfg = native_config(config)
    model, info = GteForSequenceClassification.from_pretrained(
        str(ckpt_dir),
        config=cfg,
        dtype=dtype,
        attn_implementation=attn_implementation,
        local_files_only=True,
        output_loading_info=True,
    )
    problems = {k: v for k, v in info.items() if v and k != "skipped_pp_keys"}
    if problems:
        raise RuntimeError(f"native GTE load was not clean: {problems}")

    # Audit: the model's state must be exactly our independent conversion of the file.
    expected = native_state_dict(config, weights)
    actual = {k: v for k, v in model.state_dict().items() if not k.endswith(("inv_freq", "original_inv_freq"))}
    if set(expected) != set(actual):
        raise RuntimeError(
            f"key sets differ: only-ours={sorted(set(expected) - set(actual))} "
            f"only-model={sorted(set(actual) - set(expected))}"
        )
    for k, arr in expected.items():
        want = torch.from_numpy(np.ascontiguousarray(arr)).to(dtype)
        if not torch.equal(actual[k].cpu(), want):
            raise RuntimeError(f"parameter {k} differs from the checkpoint")

    rotary = model.gte.rotary_emb
    want = torch.from_numpy(rope_inv_freq(config)).float()
    for buf in (rotary.inv_freq, rotary.original_inv_freq):
        got = buf.detach().float().cpu()
        if not torch.isfinite(got).all() or not torch.allclose(got, want, rtol=1e-6, atol=0):
            raise RuntimeError(f"RoPE inv_freq buffer is wrong: {got[:4]} vs {want[:4]}")

    model.eval()
    return model.to(device)


def hf_logits(model, tokenizer=None, inputs=None, max_length=8192, batch_size=1):
    """Logits of the native model for ``inputs``.

    ``inputs`` is either a list of (query, document) pairs, tokenized here with
    ``tokenizer`` (a tokenizer.json path, checkpoint directory or loaded Tokenizer; pair template, longest_first at ``max_length``), or a list of id
    lists. Sequences are right-padded within each batch (pad id from the config) with an
    attention mask; batch_size=1 runs every sequence unpadded. Returns float64 logits (one
    float per sequence for a 1-label model).
    """
    import torch

    inputs = list(inputs)
    if inputs and isinstance(inputs[0], (tuple, list)) and inputs[0] and isinstance(inputs[0][0], str):
        if tokenizer is None:
            raise ValueError("pairs need a tokenizer")
        id_lists = encode_pairs(tokenizer, inputs, max_length)
    else:
        id_lists = [list(x) for x in inputs]

    device = next(model.parameters()).device
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 1
    out = []
    with torch.inference_mode():
        for start in range(0, len(id_lists), batch_size):
            chunk = id_lists[start : start + batch_size]
            width = max(len(x) for x in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, x in enumerate(chunk):
                ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
                mask[r, : len(x)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logits = logits.double().cpu().numpy()
            for row in logits:
                out.append(float(row[0]) if row.shape == (1,) else row)
    return out


def sigmoid(x):
    """Numerically safe logistic function (the CrossEncoder score)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
