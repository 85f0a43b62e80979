//! `crossrank bench`: end-to-end throughput of the scoring pipeline on one model.
//!
//! The input (a pairs file, or synthetic affiliation pairs generated here) is read into
//! memory first; then the whole pipeline runs on it as `crossrank score` does — parse and
//! tokenize on every core, sort windows by length, pack batches, forward, restore order,
//! render JSONL — into a sink. A few warm-up batches run first, untimed.
//!
//! Reported: pairs/s, tokens/s, model TFLOP/s counted exactly from the shapes
//! ([`FlopModel`]), % of the GPU's dense fp16 peak ([`dense_fp16_peak_tflops`]), padding
//! efficiency against sentence-transformers-style padded batches of 32 in input order, and
//! where the time went (tokenize / pack / copy / compute / write, with the forward thread's
//! busy fraction). A backend that profiles adds its per-op breakdown
//! ([`Backend::profile_report`]).

use std::io::{BufRead, Cursor, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Backend;
use crate::pipeline::{score_stream, OnError, PipelineOptions, RunStats, Sinks};
use crate::progress::Progress;
use crate::records::{parse_record, Format, LineReader};
use crate::verify::SplitMix64;

/// FLOPs of one pair of `L` tokens, `a·L + b·L² + c`, counted by the model's family from
/// its shapes ([`crate::arch::ModelFamily::flop_model`]): matmuls and attention;
/// embedding gathers, LayerNorm, GELU, softmax and RoPE are not counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlopModel {
    /// FLOPs per token (`a`).
    pub per_token: f64,
    /// FLOPs per token² (`b`, attention).
    pub per_token_sq: f64,
    /// FLOPs per pair (`c`: the CLS row of the last layer, pooler and classifier).
    pub per_pair: f64,
}

impl FlopModel {
    /// The model family's FLOP count.
    pub fn new(c: &ModelConfig) -> Self {
        c.family.flop_model(c)
    }

    pub fn pair(&self, len: usize) -> f64 {
        let l = len as f64;
        self.per_token * l + self.per_token_sq * l * l + self.per_pair
    }

    /// Total FLOPs of `pairs` pairs with `Σ L = tokens` and `Σ L² = tokens_sq`.
    pub fn total(&self, pairs: u64, tokens: u64, tokens_sq: u64) -> f64 {
        self.per_token * tokens as f64 + self.per_token_sq * tokens_sq as f64 + self.per_pair * pairs as f64
    }
}

/// Dense fp16/bf16 tensor-core peak (TFLOP/s, no sparsity) of a GPU named in a device
/// description, and the name matched. `None` for CPUs and unknown GPUs.
pub fn dense_fp16_peak_tflops(device: &str) -> Option<(&'static str, f64)> {
    let d = device.to_ascii_uppercase();
    if d.starts_with("CPU") {
        return None;
    }
    const TABLE: [(&str, &str, f64); 5] = [
        ("H100", "PCIE", 756.0),
        ("H100", "", 989.0),
        ("H200", "", 989.0),
        ("A100", "", 312.0),
        ("L40S", "", 362.0),
    ];
    TABLE
        .iter()
        .find(|(gpu, variant, _)| d.contains(gpu) && d.contains(variant))
        .map(|&(gpu, variant, tf)| {
            let name = match (gpu, variant) {
                ("H100", "PCIE") => "H100 PCIe",
                ("H100", _) => "H100 SXM",
                _ => gpu,
            };
            (name, tf)
        })
}

/// A backend that answers at once: `crossrank bench --host-only`.
/// A backend that returns zeros at once: `bench --host-only` measures the host side alone
/// (read, tokenize, pack, write), i.e. the most pairs/s it can feed a device.
pub struct NullBackend;

impl Backend for NullBackend {
    fn describe(&self) -> String {
        "none (host side only)".into()
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        Ok(vec![0.0; batch.num_seqs()])
    }

    fn default_batch_tokens(&self) -> usize {
        16384
    }
}

/// Runs the whole pipeline over `data` (after `warmup` untimed batches) into a sink and
/// returns the machine-readable result ([`report`]). `options` carries the pipeline tuning;
/// the names and the error policy are set here.
pub fn measure(
    engine: &Engine,
    data: Vec<u8>,
    format: Format,
    source: &str,
    warmup: usize,
    mut options: PipelineOptions,
    host_only: bool,
) -> Result<Value> {
    let warmup_batches = warm_up(engine, &data, format, warmup)?;

    options.input_name = source.to_string();
    options.output_name = "<sink>".into();
    options.on_error = OnError::Skip;
    let mut progress = Progress::new(true, None);
    let mut sink = std::io::sink();
    let reader = LineReader::new(Cursor::new(data));
    let sinks = Sinks {
        output: &mut sink,
        rejects: None,
    };
    let (stats, result) = score_stream(engine, reader, sinks, &options, &mut progress);
    result?;
    Ok(report(engine, &stats, source, warmup_batches, host_only))
}

/// The input's lines (the first `n` when given), as bytes.
pub fn read_lines(path: &Path, n: Option<usize>) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut data = Vec::new();
    let mut lines = 0;
    while n.is_none_or(|n| lines < n) {
        let got = reader.read_until(b'\n', &mut data).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            break;
        }
        if data.last() != Some(&b'\n') {
            data.push(b'\n');
        }
        lines += 1;
    }
    Ok(data)
}

/// Runs about `batches` batches of the input's first pairs, untimed. Returns how many ran.
fn warm_up(engine: &Engine, data: &[u8], format: Format, batches: usize) -> Result<usize> {
    if batches == 0 {
        return Ok(0);
    }
    let budget = batches * engine.batch_tokens();
    let mut reader = LineReader::new(data);
    let mut encoded = Vec::new();
    let mut tokens = 0;
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io("<input>", e))? {
        let Ok(r) = parse_record(format, line, raw) else {
            continue;
        };
        let e = engine.encode(&r.query, &r.document)?;
        if tokens + e.len() > budget && !encoded.is_empty() {
            break;
        }
        tokens += e.len();
        encoded.push(e);
    }
    let mut ran = 0;
    engine.score_encoded_with(&encoded, &mut |_, _| ran += 1)?;
    Ok(ran)
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// The machine-readable result.
pub fn report(engine: &Engine, s: &RunStats, source: &str, warmup_batches: usize, host_only: bool) -> Value {
    let wall = secs(s.wall).max(1e-12);
    let device = engine.backend().describe();
    let flops = FlopModel::new(engine.config()).total(s.pairs, s.tokens, s.tokens_sq);
    let tflops = flops / wall / 1e12;
    let peak = if host_only {
        None
    } else {
        dense_fp16_peak_tflops(&device)
    };
    let profile = engine.backend().profile_report();
    let copy = profile.as_ref().and_then(|p| p.copy_seconds).unwrap_or(0.0);
    let forward = secs(s.forward_busy);
    let split = json!({
        "tokenize_thread_s": round(secs(s.tokenize_busy), 4),
        "tokenize_per_worker_fraction": round(secs(s.tokenize_busy) / s.workers.max(1) as f64 / wall, 4),
        "pack_s": round(secs(s.pack_busy), 4),
        "copy_s": round(copy, 4),
        "compute_s": round((forward - copy).max(0.0), 4),
        "write_s": round(secs(s.write_busy), 4),
        "forward_busy_fraction": round(s.forward_busy_fraction(), 4),
        "forward_idle_s": round(secs(s.forward_idle), 4),
        "forward_startup_wait_s": round(secs(s.forward_startup_wait), 4),
    });
    let ops: Option<Value> = profile.map(|p| {
        let ops: Vec<Value> = p
            .ops
            .iter()
            .map(|o| json!({"name": o.name, "calls": o.calls, "seconds": o.seconds}))
            .collect();
        json!({"copy_s": p.copy_seconds, "ops": ops})
    });
    let mut r = json!({
        "engine": "crossrank",
        "engine_version": crate::VERSION,
        "model": engine.dir().display().to_string(),
        "device": device,
        "input": source,
        "n_pairs": s.pairs,
        "rejected": s.rejected,
        "seconds": round(wall, 4),
        "pairs_per_s": round(s.pairs as f64 / wall, 2),
        "tokens_per_s": round(s.tokens as f64 / wall, 1),
        "real_tokens": s.tokens,
        "mean_tokens_per_pair": round(s.tokens as f64 / s.pairs.max(1) as f64, 2),
        "truncated": s.truncated,
        // Pairs with a side cut at the tokenizer's work bound: ids may differ from Python.
        "precut": s.precut,
        // Tokenizer workers' busy time per token kept after truncation (special tokens included).
        "tokenize_us_per_kept_token": round(s.tokenize_busy.as_secs_f64() * 1e6 / s.tokens.max(1) as f64, 4),
        "model_flops": flops,
        // No model ran with --host-only: no rate to report.
        "tflops": (!host_only).then(|| round(tflops, 4)),
        "tflops_while_forward": (!host_only).then(|| round(flops / forward.max(1e-12) / 1e12, 4)),
        "peak_fp16_tflops": peak.map(|p| p.1),
        "peak_gpu": peak.map(|p| p.0),
        "pct_of_peak": peak.map(|p| round(100.0 * tflops / p.1, 2)),
    });
    let more = json!({
        "padding_efficiency": 1.0,
        "padding_efficiency_padded32": round(s.padding_efficiency_padded32(), 4),
        "padded32_tokens": s.padded32_tokens,
        "time_split": split,
        "batches": s.batches,
        "batch_tokens": engine.batch_tokens(),
        "max_batch_tokens": s.max_batch_tokens,
        "mean_batch_tokens": round(s.tokens as f64 / s.batches.max(1) as f64, 1),
        "oom_splits": s.oom_splits,
        "windows": s.windows,
        "max_window_pairs": s.max_window_pairs,
        "peak_pending_pairs": s.peak_pending_pairs,
        "workers": s.workers,
        "query_cache_hits": s.query_cache_hits,
        "query_cache_misses": s.query_cache_misses,
        "warmup_batches": warmup_batches,
        "max_length": engine.max_length(),
        "host_only": host_only,
        "backend_profile": ops,
    });
    if let (Some(r), Value::Object(more)) = (r.as_object_mut(), more) {
        r.extend(more);
    }
    r
}

pub fn print_table(r: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let t = &r["time_split"];
    let g = |k: &str| t[k].as_f64().unwrap_or(0.0);
    writeln!(out, "crossrank bench  {}", r["device"].as_str().unwrap_or(""))?;
    writeln!(out, "  model              {}", r["model"].as_str().unwrap_or(""))?;
    writeln!(
        out,
        "  input              {} ({} pairs, {:.1} tokens/pair, {} truncated, {} rejected)",
        r["input"].as_str().unwrap_or(""),
        r["n_pairs"],
        f("mean_tokens_per_pair"),
        r["truncated"],
        r["rejected"]
    )?;
    if r["precut"].as_u64().unwrap_or(0) > 0 {
        writeln!(
            out,
            "  pre-cut            {} pairs (ids may differ from Python tokenizers)",
            r["precut"]
        )?;
    }
    writeln!(
        out,
        "  tokenize           {:.3} us per kept token",
        f("tokenize_us_per_kept_token")
    )?;
    writeln!(out, "  wall               {:.3} s", f("seconds"))?;
    writeln!(out, "  pairs/s            {:.1}", f("pairs_per_s"))?;
    writeln!(out, "  tokens/s           {:.0}", f("tokens_per_s"))?;
    let peak = match r["pct_of_peak"].as_f64() {
        Some(p) => format!(
            " = {p:.1}% of {} dense fp16 peak ({} TF)",
            r["peak_gpu"].as_str().unwrap_or(""),
            r["peak_fp16_tflops"]
        ),
        None => String::new(),
    };
    if r["tflops"].is_number() {
        writeln!(
            out,
            "  model TFLOP/s      {:.4}{peak} ({:.4} while forwarding)",
            f("tflops"),
            f("tflops_while_forward")
        )?;
    }
    writeln!(
        out,
        "  padding efficiency 1.000 (packed, no padding); padded batches of 32 in input order: {:.3}",
        f("padding_efficiency_padded32")
    )?;
    writeln!(
        out,
        "  batches            {} (budget {} tokens, mean {:.0}, max {}), {} OOM splits",
        r["batches"],
        r["batch_tokens"],
        f("mean_batch_tokens"),
        r["max_batch_tokens"],
        r["oom_splits"]
    )?;
    writeln!(
        out,
        "  time split         tokenize {:.3} thread-s ({} workers, {:.0}% each) | pack {:.3} s | copy {:.3} s | compute {:.3} s | write {:.3} s",
        g("tokenize_thread_s"),
        r["workers"],
        100.0 * g("tokenize_per_worker_fraction"),
        g("pack_s"),
        g("copy_s"),
        g("compute_s"),
        g("write_s")
    )?;
    writeln!(
        out,
        "  forward thread     busy {:.1}% after its first batch (idle {:.3} s; first batch after {:.3} s)",
        100.0 * g("forward_busy_fraction"),
        g("forward_idle_s"),
        g("forward_startup_wait_s")
    )?;
    writeln!(
        out,
        "  query cache        {} hits, {} misses",
        r["query_cache_hits"], r["query_cache_misses"]
    )?;
    if let Some(ops) = r["backend_profile"]["ops"].as_array() {
        writeln!(out, "  backend profile")?;
        for op in ops {
            writeln!(
                out,
                "    {:<28} {:>8} calls {:>10.4} s",
                op["name"].as_str().unwrap_or(""),
                op["calls"],
                op["seconds"].as_f64().unwrap_or(0.0)
            )?;
        }
    }
    Ok(())
}

/// The synthetic pairs' random choices, on [`SplitMix64`].
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(SplitMix64(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// (English name, country, local city name or "", local institution templates, postcode pattern)
type City = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

const CITIES: &[City] = &[
    (
        "Tokyo",
        "Japan",
        "東京",
        &["{c}大学", "{c}工業大学", "{c}大学医学部附属病院"],
        "999-9999",
    ),
    (
        "Kyoto",
        "Japan",
        "京都",
        &["{c}大学", "{c}大学医学部附属病院"],
        "999-9999",
    ),
    (
        "Beijing",
        "China",
        "北京",
        &["{c}大学", "{c}理工大学", "中国科学院{c}分院"],
        "999999",
    ),
    ("Shanghai", "China", "上海", &["{c}大学", "{c}医院"], "999999"),
    ("Seoul", "South Korea", "서울", &["{c}대학교", "{c}대학교병원"], "99999"),
    ("Moscow", "Russia", "Москва", &["Университет {c}"], "999999"),
    (
        "Paris",
        "France",
        "Paris",
        &["Université de {c}", "Hôpital Universitaire de {c}"],
        "99999",
    ),
    (
        "Lyon",
        "France",
        "Lyon",
        &["Université de {c}", "Centre Hospitalier Universitaire de {c}"],
        "99999",
    ),
    (
        "Munich",
        "Germany",
        "München",
        &["Universität {c}", "Technische Universität {c}"],
        "99999",
    ),
    (
        "Berlin",
        "Germany",
        "Berlin",
        &["Universität {c}", "Universitätsklinikum {c}"],
        "99999",
    ),
    ("Zurich", "Switzerland", "Zürich", &["Universität {c}"], "9999"),
    (
        "Madrid",
        "Spain",
        "Madrid",
        &["Universidad de {c}", "Hospital Universitario de {c}"],
        "99999",
    ),
    (
        "Sao Paulo",
        "Brazil",
        "São Paulo",
        &["Universidade de {c}", "Hospital das Clínicas de {c}"],
        "99999-999",
    ),
    (
        "Rome",
        "Italy",
        "Roma",
        &["Università di {c}", "Università degli Studi di {c}"],
        "99999",
    ),
    (
        "Amsterdam",
        "Netherlands",
        "Amsterdam",
        &["Universiteit van {c}", "Vrije Universiteit {c}"],
        "9999 AA",
    ),
    (
        "Warsaw",
        "Poland",
        "Warszawa",
        &["Uniwersytet {c}", "Politechnika {c}"],
        "99-999",
    ),
    ("Athens", "Greece", "Αθήνα", &["Πανεπιστήμιο {c}"], "999 99"),
    (
        "Istanbul",
        "Turkey",
        "İstanbul",
        &["{c} Üniversitesi", "{c} Teknik Üniversitesi"],
        "99999",
    ),
    (
        "Tehran",
        "Iran",
        "تهران",
        &["دانشگاه {c}", "دانشگاه علوم پزشکی {c}"],
        "99999-99999",
    ),
    ("Cairo", "Egypt", "القاهرة", &["جامعة {c}"], "99999"),
    ("New Delhi", "India", "नई दिल्ली", &["{c} विश्वविद्यालय"], "999999"),
    ("Bangkok", "Thailand", "กรุงเทพมหานคร", &["มหาวิทยาลัย{c}"], "99999"),
    (
        "Hanoi",
        "Vietnam",
        "Hà Nội",
        &["Đại học {c}", "Bệnh viện {c}"],
        "999999",
    ),
    ("Boston", "USA", "", &[], "99999"),
    ("Stanford", "USA", "", &[], "99999"),
    ("Chicago", "USA", "", &[], "99999"),
    ("London", "UK", "", &[], "AA9 9AA"),
    ("Cambridge", "UK", "", &[], "AA9 9AA"),
    ("Toronto", "Canada", "", &[], "A9A 9A9"),
    ("Sydney", "Australia", "", &[], "9999"),
    ("Singapore", "Singapore", "", &[], "999999"),
    ("Nairobi", "Kenya", "", &[], "99999"),
];

const FIELDS: &[&str] = &[
    "Physics",
    "Chemistry",
    "Biology",
    "Mathematics",
    "Computer Science",
    "Electrical Engineering",
    "Mechanical Engineering",
    "Materials Science",
    "Medicine",
    "Internal Medicine",
    "Cardiology",
    "Oncology",
    "Neurology",
    "Pediatrics",
    "Radiology",
    "Surgery",
    "Public Health",
    "Epidemiology",
    "Economics",
    "Psychology",
    "Linguistics",
    "Earth Sciences",
    "Astronomy",
    "Molecular Biology",
    "Biochemistry",
    "Pharmacology",
    "Statistics",
    "Chemical Engineering",
];

const DEPT: &[&str] = &[
    "Department of {f}",
    "Dept. of {f}",
    "School of {f}",
    "Faculty of {f}",
    "Division of {f}",
    "Laboratory of {f}",
    "Institute of {f}",
    "Center for {f}",
    "{f} Department",
    "Graduate School of {f}",
    "{f} Research Group",
];

const INST: &[&str] = &[
    "University of {c}",
    "{c} University",
    "{c} Institute of Technology",
    "{c} Medical Center",
    "{c} General Hospital",
    "{c} University Hospital",
    "National University of {c}",
    "{c} State University",
    "{c} Cancer Center",
    "Technical University of {c}",
    "{c} College of Medicine",
    "{c} Research Institute",
];

const COMPANIES: &[&str] = &[
    "Siemens AG",
    "Google LLC",
    "Microsoft Research",
    "IBM Research",
    "Samsung Electronics Co., Ltd.",
    "Novartis Pharma AG",
    "Toyota Central R&D Labs., Inc.",
    "Huawei Technologies Co., Ltd.",
    "Nokia Bell Labs",
    "株式会社日立製作所",
];

const STREETS: &[&str] = &[
    "Main Street",
    "Hongo",
    "rue du Docteur Roux",
    "Hauptstraße",
    "Via Celoria",
    "Avenida Paulista",
    "Ленинский проспект",
    "Haidian District",
    "Gwanak-ro",
    "Campus Drive",
    "Science Park",
    "Oxford Road",
];

const ABBREV: &[(&str, &str)] = &[
    ("University", "Univ."),
    ("Department", "Dept."),
    ("Institute", "Inst."),
    ("Laboratory", "Lab."),
    ("Hospital", "Hosp."),
    ("National", "Natl."),
    ("Science", "Sci."),
    ("Technology", "Technol."),
    ("Medicine", "Med."),
    ("Center", "Ctr."),
    ("Engineering", "Eng."),
    ("Research", "Res."),
];

/// Synthetic (affiliation, institution) pairs in the spirit of tools/gen_pairs.py (not
/// the same strings): one affiliation per query mostly, 2–3 for ~13% of pairs, and long
/// author lists of 5–18 affiliations for ~1.2% (the tail towards 512 tokens); candidates are
/// the true institution (45%), another one in the same city (25%) or anywhere (30%).
pub struct PairGen {
    rng: Rng,
}

struct Truth {
    inst_en: String,
    inst_local: Option<String>,
    city: &'static City,
}

impl PairGen {
    pub fn new(seed: u64) -> Self {
        PairGen { rng: Rng::new(seed) }
    }

    fn postcode(&mut self, pattern: &str) -> String {
        pattern
            .chars()
            .map(|c| match c {
                '9' => char::from(b'0' + self.rng.below(10) as u8),
                'A' => char::from(b'A' + self.rng.below(26) as u8),
                other => other,
            })
            .collect()
    }

    fn institution(&mut self, city: &'static City) -> (String, Option<String>) {
        let en = self.rng.pick(INST).replace("{c}", city.0);
        let local = (!city.3.is_empty()).then(|| self.rng.pick(city.3).replace("{c}", city.2));
        (en, local)
    }

    fn affiliation(&mut self) -> (String, Truth) {
        let city = &CITIES[self.rng.below(CITIES.len())];
        let (mut inst_en, mut inst_local) = self.institution(city);
        let company = self.rng.chance(0.05);
        if company {
            inst_en = self.rng.pick(COMPANIES).to_string();
            inst_local = Some(inst_en.clone());
        }
        let use_local = inst_local.is_some() && self.rng.chance(0.35);
        let mut parts: Vec<String> = Vec::new();
        if self.rng.chance(0.85) && !company {
            parts.push(self.rng.pick(DEPT).replace("{f}", self.rng.pick(FIELDS)));
            if self.rng.chance(0.45) {
                parts.push(self.rng.pick(DEPT).replace("{f}", self.rng.pick(FIELDS)));
            }
        }
        parts.push(if use_local {
            inst_local.clone().unwrap()
        } else {
            inst_en.clone()
        });
        if self.rng.chance(0.5) {
            parts.push(format!("{} {}", 1 + self.rng.below(399), self.rng.pick(STREETS)));
        }
        let mut city_txt = if (use_local || self.rng.chance(0.2)) && !city.2.is_empty() {
            city.2.to_string()
        } else {
            city.0.to_string()
        };
        if self.rng.chance(0.6) {
            let code = self.postcode(city.4);
            city_txt = if self.rng.chance(0.5) {
                format!("{code} {city_txt}")
            } else {
                format!("{city_txt} {code}")
            };
        }
        parts.push(city_txt);
        if self.rng.chance(0.85) {
            parts.push(city.1.to_string());
        }
        let mut text = parts.join(self.rng.pick(&[", ", ", ", "; ", " , "]));
        if self.rng.chance(0.25) {
            for (full, short) in ABBREV {
                if text.contains(full) && self.rng.chance(0.5) {
                    text = text.replace(full, short);
                }
            }
        }
        if self.rng.chance(0.1) {
            text += &format!(
                ". Electronic address: {}.{}@{}.edu",
                self.rng.pick(&["j", "m", "a", "s", "k"]),
                self.rng.pick(&["smith", "tanaka", "wang", "kim", "muller", "garcia"]),
                city.0.to_lowercase().replace(' ', "")
            );
        }
        if self.rng.chance(0.04) {
            text = text.to_uppercase();
        }
        let truth = Truth {
            inst_en,
            inst_local,
            city,
        };
        (text, truth)
    }

    fn document(&mut self, truth: &Truth) -> String {
        let r = self.rng.uniform();
        let mut doc = if r < 0.45 {
            match &truth.inst_local {
                Some(l) if self.rng.chance(0.25) => l.clone(),
                _ => truth.inst_en.clone(),
            }
        } else if r < 0.70 {
            self.institution(truth.city).0
        } else {
            let city = &CITIES[self.rng.below(CITIES.len())];
            self.institution(city).0
        };
        if self.rng.chance(0.3) {
            doc = if self.rng.chance(0.5) {
                format!("{doc} ({})", truth.city.0)
            } else {
                format!("{doc}, {}", truth.city.1)
            };
        }
        doc
    }

    pub fn pair(&mut self) -> (String, String) {
        let r = self.rng.uniform();
        let (query, truth) = if r < 0.012 {
            let n = 5 + self.rng.below(14);
            let lines: Vec<(String, Truth)> = (0..n).map(|_| self.affiliation()).collect();
            let sep = self.rng.pick(&["; ", "; ", " | ", ". "]);
            let numbered = self.rng.chance(0.5);
            let query = lines
                .iter()
                .enumerate()
                .map(|(i, (t, _))| if numbered { format!("{} {t}", i + 1) } else { t.clone() })
                .collect::<Vec<_>>()
                .join(sep);
            let pick = self.rng.below(n);
            let truth = lines.into_iter().nth(pick).unwrap().1;
            (query, truth)
        } else if r < 0.14 {
            let n = 2 + self.rng.below(2);
            let lines: Vec<(String, Truth)> = (0..n).map(|_| self.affiliation()).collect();
            let query = lines.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join("; ");
            (query, lines.into_iter().next().unwrap().1)
        } else {
            self.affiliation()
        };
        let doc = self.document(&truth);
        (query, doc)
    }
}

/// `n` synthetic pairs as JSONL lines `{"id", "query", "document"}`.
pub fn synthetic_jsonl(n: usize, seed: u64) -> Vec<u8> {
    let mut gen = PairGen::new(seed);
    let mut out = Vec::with_capacity(n * 160);
    for i in 0..n {
        let (q, d) = gen.pair();
        serde_json::to_writer(
            &mut out,
            &json!({"id": format!("s{:07}", i + 1), "query": q, "document": d}),
        )
        .expect("writing to a Vec");
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_config() -> ModelConfig {
        let mut c = tiny_config();
        c.hidden_size = 768;
        c.num_heads = 12;
        c.head_dim = 64;
        c.intermediate_size = 3072;
        c.num_layers = 12;
        c
    }

    fn tiny_config() -> ModelConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/config.json");
        ModelConfig::from_file(&dir).unwrap()
    }

    /// FLOPs of one pair counted op by op, the slow way.
    fn brute_force(c: &ModelConfig, l: usize) -> f64 {
        let (h, i) = (c.hidden_size as f64, c.intermediate_size as f64);
        let gemm = |rows: f64, k: f64, n: f64| 2.0 * rows * k * n;
        let l = l as f64;
        let mut total = 0.0;
        for layer in 0..c.num_layers {
            let rows = if layer + 1 == c.num_layers { 1.0 } else { l };
            total += gemm(l, h, 3.0 * h); // K and V are needed for every token
            total += rows * l * h * 2.0; // QKᵀ over all heads
            total += rows * l * h * 2.0; // PV
            total += gemm(rows, h, h) + gemm(rows, h, 2.0 * i) + gemm(rows, i, h);
        }
        total + gemm(1.0, h, h) + gemm(1.0, h, 1.0)
    }

    #[test]
    fn flop_formula_matches_an_op_by_op_count() {
        for c in [tiny_config(), real_config()] {
            let m = FlopModel::new(&c);
            for l in [1, 7, 40, 513] {
                let (a, b) = (m.pair(l), brute_force(&c, l));
                assert!((a - b).abs() <= 1e-9 * b, "L={l}: {a} vs {b}");
            }
            let lens = [3usize, 40, 41, 200];
            let tokens: u64 = lens.iter().map(|&l| l as u64).sum();
            let sq: u64 = lens.iter().map(|&l| (l * l) as u64).sum();
            let sum: f64 = lens.iter().map(|&l| m.pair(l)).sum();
            assert!((m.total(lens.len() as u64, tokens, sq) - sum).abs() <= 1e-9 * sum);
        }
    }

    #[test]
    fn flops_of_the_real_model_match_the_performance_notes() {
        // docs: 226.5 MFLOP/token of GEMMs for 12 full layers, 36,864·L of attention per
        // token per layer, and the CLS-only last layer removes ~7% at L = 64.
        let m = FlopModel::new(&real_config());
        let full = |l: f64| 12.0 * (2.0 * 9_437_184.0 * l + 4.0 * 768.0 * l * l) + 2.0 * 768.0 * 768.0 + 2.0 * 768.0;
        assert!((full(64.0) / 64.0 / 1e6 - 228.9).abs() < 0.1);
        let saved = 1.0 - m.pair(64) / full(64.0);
        assert!((0.065..0.075).contains(&saved), "{saved}");
    }

    #[test]
    fn peak_table() {
        assert_eq!(
            dense_fp16_peak_tflops("cuda:0 NVIDIA H100 80GB HBM3 (sm_90)")
                .unwrap()
                .1,
            989.0
        );
        assert_eq!(
            dense_fp16_peak_tflops("cuda:0 NVIDIA H100 PCIe (sm_90)").unwrap().1,
            756.0
        );
        assert_eq!(dense_fp16_peak_tflops("cuda:0 NVIDIA H200 (sm_90)").unwrap().1, 989.0);
        assert_eq!(
            dense_fp16_peak_tflops("cuda:0 NVIDIA A100-SXM4-80GB").unwrap(),
            ("A100", 312.0)
        );
        assert_eq!(dense_fp16_peak_tflops("cpu (f32, 2 threads)"), None);
        assert_eq!(dense_fp16_peak_tflops("cuda:0 NVIDIA GeForce RTX 4090"), None);
    }

    #[test]
    fn synthetic_pairs_are_seeded_and_varied() {
        let a = synthetic_jsonl(500, 7);
        assert_eq!(a, synthetic_jsonl(500, 7));
        assert_ne!(a, synthetic_jsonl(500, 8));
        let lines: Vec<&[u8]> = a.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 500);
        let mut lens: Vec<usize> = lines
            .iter()
            .map(|l| parse_record(Format::Jsonl, 1, l).unwrap().query.chars().count())
            .collect();
        lens.sort();
        assert!(lens[250] > 20 && lens[250] < 200, "median {}", lens[250]);
        assert!(
            lens[499] > 3 * lens[250],
            "a long tail: max {} median {}",
            lens[499],
            lens[250]
        );
    }
}
