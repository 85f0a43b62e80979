//! Helpers shared by the GPU test binaries (`tests/gpu_kernels.rs`, `tests/gpu_model.rs`):
//! the shared device, a seeded generator, fp16 rounding, the tolerance check that prints the
//! first mismatches, packed-sequence layouts, and a writer for synthetic checkpoints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crossrank::cuda::{Gpu, KernelOrigin};
use half::f16;

/// Every GPU test carries this, so a run without `--ignored` reports them as ignored.
pub const NEEDS_GPU: &str = "needs a CUDA GPU: run with --ignored";

/// The device all tests share (`CROSSRANK_TEST_DEVICE`, default 0), opened once.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let ordinal = std::env::var("CROSSRANK_TEST_DEVICE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let origin = KernelOrigin::from_env().expect("CROSSRANK_KERNELS");
        let gpu = Gpu::new(ordinal, origin).unwrap_or_else(|e| panic!("cannot open cuda:{ordinal}: {e}"));
        eprintln!(
            "[gpu] {} (kernels: {})",
            gpu.info().describe(),
            gpu.info().kernels.name()
        );
        gpu
    })
    .clone()
}

/// splitmix64 with a Box-Muller normal.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x1234_5678)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// `n` values `mean + std·N(0,1)`, rounded to fp16 (so host and device see the same).
    pub fn normal_f16(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n).map(|_| round_f16(mean + std * self.normal())).collect()
    }

    /// `n` values `mean + std·N(0,1)` in f32 (for the kernels' fp32 inputs).
    pub fn normal_f32(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n).map(|_| mean + std * self.normal()).collect()
    }
}

pub fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

pub fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

pub fn from_f16(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// `(cu_seqlens, positions)` of sequences of the given lengths packed back to back.
pub fn pack(lengths: &[usize]) -> (Vec<u32>, Vec<u32>) {
    let mut cu = vec![0u32];
    let mut pos = Vec::new();
    for &l in lengths {
        cu.push(cu.last().unwrap() + l as u32);
        pos.extend(0..l as u32);
    }
    (cu, pos)
}

/// Checks `|got - want| <= abs + rel·|want|` elementwise (NaN never passes). On failure
/// panics with the count, the max error and the first 10 mismatches; on success prints the
/// max error (visible with --nocapture), so the GPU log shows every margin.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let mut bad = Vec::new();
    let mut n_bad = 0usize;
    let (mut max_err, mut max_at) = (0.0f32, 0usize);
    let mut max_ratio = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let bound = abs + rel * w.abs();
        let ok = err <= bound; // false for NaN
        if !ok {
            n_bad += 1;
            if bad.len() < 10 {
                bad.push(format!(
                    "  [{i}] got {g:+.6e} want {w:+.6e} |err| {err:.3e} (bound {bound:.3e})"
                ));
            }
        }
        if (err.is_nan() && !max_err.is_nan()) || err > max_err {
            max_err = err;
            max_at = i;
        }
        if bound > 0.0 {
            max_ratio = max_ratio.max(err / bound);
        }
    }
    if n_bad > 0 {
        panic!(
            "{what}: {n_bad} of {} values outside |got - want| <= {abs:e} + {rel:e}·|want|; max |err| {max_err:.3e} at [{max_at}]\nfirst mismatches:\n{}",
            got.len(),
            bad.join("\n")
        );
    }
    eprintln!(
        "[ok] {what}: {} values, max |err| {max_err:.3e} at [{max_at}], {:.0}% of the bound",
        got.len(),
        100.0 * max_ratio
    );
}

/// The committed tiny fixture: `$CROSSRANK_TINY_FIXTURE`, else `tests/fixtures/tiny` under the
/// current directory (the GPU machine runs from the repo root), else under the crate.
pub fn tiny_fixture() -> PathBuf {
    let candidates = [
        std::env::var_os("CROSSRANK_TINY_FIXTURE").map(PathBuf::from),
        Some(PathBuf::from("tests/fixtures/tiny")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("config.json").is_file() {
            return c;
        }
    }
    panic!("tiny fixture not found (set CROSSRANK_TINY_FIXTURE or generate tests/fixtures/tiny with tools/make_fixture.py)");
}

/// Shape of a synthetic checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticShape {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub inter: usize,
    /// Tokenizer ids; the embedding table has this rounded up to a multiple of 64 rows.
    pub tokenizer_ids: usize,
}

/// Writes a complete model directory (config.json, model.safetensors in F16 with the "new"
/// packed tensor names, and a word-level tokenizer.json with the XLM-R pair template) with
/// seeded random weights scaled like tools/make_fixture.py's (unit embeddings, attention
/// scores with std ~2, LayerNorm gains around 1, a head that spreads logits over a few units).
pub fn write_synthetic_model(dir: &Path, shape: SyntheticShape, seed: u64) {
    let SyntheticShape {
        hidden: h,
        heads,
        layers,
        inter,
        tokenizer_ids,
    } = shape;
    let vocab = tokenizer_ids.div_ceil(64) * 64;
    let config = serde_json::json!({
        "architectures": ["NewForSequenceClassification"],
        "model_type": "new",
        "vocab_size": vocab,
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": inter,
        "hidden_act": "gelu",
        "max_position_embeddings": 8192,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-12,
        "layer_norm_type": "layer_norm",
        "position_embedding_type": "rope",
        "rope_theta": 20000,
        "rope_scaling": {"type": "ntk", "factor": 8.0},
        "pack_qkv": true,
        "logn_attention_scale": false,
        "logn_attention_clip1": false,
        "id2label": {"0": "LABEL_0"},
        "torch_dtype": "float16",
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), word_level_tokenizer(tokenizer_ids)).unwrap();

    let mut rng = Rng::new(seed);
    let (inv_h, inv_i) = (1.0 / (h as f32).sqrt(), 1.0 / (inter as f32).sqrt());
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
        tensors.push((name, shape, values));
    };
    add(
        "new.embeddings.word_embeddings.weight".into(),
        vec![vocab, h],
        rng.normal_f16(vocab * h, 0.0, 1.0),
    );
    add(
        "new.embeddings.token_type_embeddings.weight".into(),
        vec![1, h],
        rng.normal_f16(h, 0.0, 0.3),
    );
    add(
        "new.embeddings.LayerNorm.weight".into(),
        vec![h],
        rng.normal_f16(h, 1.0, 0.1),
    );
    add(
        "new.embeddings.LayerNorm.bias".into(),
        vec![h],
        rng.normal_f16(h, 0.0, 0.05),
    );
    for l in 0..layers {
        let p = format!("new.encoder.layer.{l}.");
        let mut qkv = rng.normal_f16(2 * h * h, 0.0, 1.5 * inv_h);
        qkv.extend(rng.normal_f16(h * h, 0.0, inv_h));
        add(format!("{p}attention.qkv_proj.weight"), vec![3 * h, h], qkv);
        let mut qkv_b = rng.normal_f16(2 * h, 0.0, 0.1);
        qkv_b.extend(rng.normal_f16(h, 0.0, 0.05));
        add(format!("{p}attention.qkv_proj.bias"), vec![3 * h], qkv_b);
        add(
            format!("{p}attention.o_proj.weight"),
            vec![h, h],
            rng.normal_f16(h * h, 0.0, inv_h),
        );
        add(
            format!("{p}attention.o_proj.bias"),
            vec![h],
            rng.normal_f16(h, 0.0, 0.05),
        );
        add(format!("{p}attn_ln.weight"), vec![h], rng.normal_f16(h, 1.0, 0.1));
        add(format!("{p}attn_ln.bias"), vec![h], rng.normal_f16(h, 0.0, 0.05));
        add(
            format!("{p}mlp.up_gate_proj.weight"),
            vec![2 * inter, h],
            rng.normal_f16(2 * inter * h, 0.0, inv_h),
        );
        add(
            format!("{p}mlp.down_proj.weight"),
            vec![h, inter],
            rng.normal_f16(h * inter, 0.0, inv_i),
        );
        add(format!("{p}mlp.down_proj.bias"), vec![h], rng.normal_f16(h, 0.0, 0.05));
        add(format!("{p}mlp_ln.weight"), vec![h], rng.normal_f16(h, 1.0, 0.1));
        add(format!("{p}mlp_ln.bias"), vec![h], rng.normal_f16(h, 0.0, 0.05));
    }
    add(
        "new.pooler.dense.weight".into(),
        vec![h, h],
        rng.normal_f16(h * h, 0.0, 1.5 * inv_h),
    );
    add("new.pooler.dense.bias".into(), vec![h], rng.normal_f16(h, 0.0, 0.1));
    add(
        "classifier.weight".into(),
        vec![1, h],
        rng.normal_f16(h, 0.0, 2.0 * inv_h),
    );
    add("classifier.bias".into(), vec![1], rng.normal_f16(1, 0.0, 0.1));

    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let raw: Vec<u8> = values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
            (name, shape, raw)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, raw)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), raw).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// A word-level tokenizer.json with `n_ids` ids (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3,
/// then `w4`, `w5`, ...) and the XLM-R templates `<s> A </s>` / `<s> A </s></s> B </s>`.
pub fn word_level_tokenizer(n_ids: usize) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<s>", "<pad>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for i in 4..n_ids {
        vocab.insert(format!("w{i}"), i.into());
    }
    let special = |content: &str, id: usize| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": true})
    };
    let piece = |id: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": id, "type_id": type_id}});
    let seq = |id: &str| serde_json::json!({"Sequence": {"id": id, "type_id": 0}});
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special("<s>", 0), special("<pad>", 1), special("</s>", 2), special("<unk>", 3)],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("<s>", 0), seq("A"), piece("</s>", 0)],
            "pair": [piece("<s>", 0), seq("A"), piece("</s>", 0), piece("</s>", 0), seq("B"), piece("</s>", 0)],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    serde_json::to_string(&tok).unwrap()
}

/// `n` random pair sequences of the given lengths: `<s> ... </s></s> ... </s>` with ordinary
/// ids in `4..max_id`.
pub fn random_pairs(rng: &mut Rng, lengths: &[usize], max_id: u32) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .map(|&len| {
            assert!(len >= 4);
            let q = (len - 4) / 3;
            let mut ids = vec![0u32];
            ids.extend((0..q).map(|_| 4 + rng.below(max_id as u64 - 4) as u32));
            ids.extend([2, 2]);
            ids.extend((0..len - 4 - q).map(|_| 4 + rng.below(max_id as u64 - 4) as u32));
            ids.push(2);
            ids
        })
        .collect()
}
