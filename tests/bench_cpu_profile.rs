//! Where the CPU backend's time goes, op by op, at the real model's shapes (hidden 768,
//! 12 heads × 64, intermediate 3072) for one 4,096-token batch of 40-token pairs, next to an
//! end-to-end forward of a real-size checkpoint when one is given. Ignored by default (it
//! takes ~a minute); run it in release:
//!
//! ```text
//! CROSSRANK_REAL_FIXTURE=/tmp/real-fixture cargo test --release --test bench_cpu_profile -- --ignored --nocapture
//! ```

use std::time::Instant;

use crossrank::batch::PackedBatch;
use crossrank::model::cpu::{ops, RopeTable};

const H: usize = 768;
const HEADS: usize = 12;
const D: usize = 64;
const I: usize = 3072;
const LAYERS: usize = 12;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Best of `reps` runs, in seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "a measurement, not a check: run in release with --ignored --nocapture"]
fn cpu_forward_op_profile() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seq = 40;
    let n_seqs = 4096 / seq;
    let n = seq * n_seqs;
    let cu: Vec<u32> = (0..=n_seqs as u32).map(|s| s * seq as u32).collect();
    let positions: Vec<u32> = (0..n).map(|t| (t % seq) as u32).collect();
    let inv_freq: Vec<f64> = (0..D / 2).map(|j| 160000f64.powf(-2.0 * j as f64 / D as f64)).collect();
    let rope = RopeTable::new(&inv_freq, 8192);

    let mut rows: Vec<(String, f64, f64)> = Vec::new(); // (op, seconds per layer, flops per layer)
    for (name, inp, out) in [
        ("gemm qkv", H, 3 * H),
        ("gemm o_proj", H, H),
        ("gemm up_gate", H, 2 * I),
        ("gemm down", I, H),
    ] {
        let x = values(n * inp, 1);
        let w = values(out * inp, 2);
        let mut y = vec![0.0; n * out];
        let s = time(3, || ops::matmul_wt(&x, &w, inp, &mut y, threads));
        rows.push((format!("{name} {n}x{inp}x{out}"), s, (2 * n * inp * out) as f64));
    }
    let mut qkv = values(n * 3 * H, 3);
    let bias = values(3 * H, 4);
    let s = time(3, || ops::qkv_bias_rope(&mut qkv, &bias, &positions, &rope, HEADS, D));
    rows.push(("qkv_bias_rope".into(), s, 0.0));
    let mut ctx = vec![0.0; n * H];
    let s = time(3, || ops::attention(&qkv, &cu, HEADS, D, &mut ctx));
    rows.push((format!("attention (L={seq})"), s, (4 * n * seq * H) as f64));
    let gamma = vec![1.0; H];
    let beta = vec![0.0; H];
    let mut x = values(n * H, 5);
    let y = values(n * H, 6);
    let s = time(3, || {
        ops::bias_residual_layernorm(&mut x, &y, &bias[..H], &gamma, &beta, 1e-12)
    });
    rows.push(("bias_residual_layernorm x2".into(), 2.0 * s, 0.0));
    let ug = values(n * 2 * I, 7);
    let mut act = vec![0.0; n * I];
    let s = time(3, || ops::gated_gelu(&ug, I, &mut act));
    rows.push(("gated_gelu".into(), s, 0.0));

    let layer: f64 = rows.iter().map(|r| r.1).sum();
    let flops: f64 = rows.iter().map(|r| r.2).sum();
    eprintln!("CPU ops at the real shapes, {n} tokens ({n_seqs} pairs of {seq}), {threads} threads:");
    eprintln!("{:<36} {:>10} {:>8} {:>10}", "op", "ms/layer", "share", "GFLOP/s");
    for (name, s, f) in &rows {
        let gf = if *f > 0.0 {
            format!("{:.1}", f / s / 1e9)
        } else {
            "-".into()
        };
        eprintln!("{name:<36} {:>10.2} {:>7.1}% {gf:>10}", s * 1e3, 100.0 * s / layer);
    }
    eprintln!(
        "one full layer {:.1} ms ({:.1} GFLOP/s); x{LAYERS} layers ≈ {:.0} ms per batch ≈ {:.0} tokens/s",
        layer * 1e3,
        flops / layer / 1e9,
        LAYERS as f64 * layer * 1e3,
        n as f64 / (LAYERS as f64 * layer)
    );

    if let Ok(dir) = std::env::var("CROSSRANK_REAL_FIXTURE") {
        let engine = crossrank::Engine::load(
            std::path::Path::new(&dir),
            &crossrank::EngineOptions {
                device: crossrank::Device::Cpu,
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        let ids: Vec<u32> = (0..seq as u32).map(|i| 5 + i * 7).collect();
        let batch = PackedBatch::from_sequences((0..n_seqs).map(|_| &ids[..]));
        let s = time(1, || {
            engine.forward(&batch).unwrap();
        });
        eprintln!(
            "end-to-end forward of {dir} on the same batch: {:.0} ms ≈ {:.0} tokens/s ({:.0}% of it explained by the ops above)",
            s * 1e3,
            n as f64 / s,
            100.0 * LAYERS as f64 * layer / s
        );
    }
}
