//! Criterion benchmarks of the CPU reference ops at the real model's shapes
//! (hidden 768, 12 heads × 64, intermediate 3072) for a 2,048-token batch of 40-token pairs.
//!
//! `cargo bench --bench cpu_ops`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossrank::model::cpu::{ops, RopeTable};

const H: usize = 768;
const HEADS: usize = 12;
const D: usize = 64;
const I: usize = 3072;

/// Deterministic pseudo-random values in [-0.5, 0.5).
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

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn gemms(c: &mut Criterion) {
    let n = 2048;
    let mut group = c.benchmark_group("cpu_gemm");
    group.sample_size(10);
    for (name, inp, out) in [
        ("qkv", H, 3 * H),
        ("o_proj", H, H),
        ("up_gate", H, 2 * I),
        ("down", I, H),
    ] {
        let x = values(n * inp, 1);
        let w = values(out * inp, 2);
        let mut y = vec![0.0; n * out];
        group.throughput(Throughput::Elements((2 * n * inp * out) as u64));
        group.bench_function(BenchmarkId::new(name, format!("{n}x{inp}x{out}")), |b| {
            b.iter(|| ops::matmul_wt(&x, &w, inp, &mut y, threads()))
        });
    }
    group.finish();
}

fn elementwise(c: &mut Criterion) {
    let seq = 40;
    let n_seqs = 2048 / seq;
    let n = seq * n_seqs;
    let cu: Vec<u32> = (0..=n_seqs as u32).map(|s| s * seq as u32).collect();
    let positions: Vec<u32> = (0..n).map(|t| (t % seq) as u32).collect();
    let inv_freq: Vec<f64> = (0..D / 2).map(|j| 160000f64.powf(-2.0 * j as f64 / D as f64)).collect();
    let rope = RopeTable::new(&inv_freq, 8192);
    let gamma = vec![1.0; H];
    let beta = vec![0.0; H];
    let mut group = c.benchmark_group("cpu_ops");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));

    let mut qkv = values(n * 3 * H, 3);
    let bias = values(3 * H, 4);
    group.bench_function("qkv_bias_rope", |b| {
        b.iter(|| ops::qkv_bias_rope(&mut qkv, &bias, &positions, &rope, HEADS, D))
    });
    let mut ctx = vec![0.0; n * H];
    group.bench_function(format!("attention_seq{seq}"), |b| {
        b.iter(|| ops::attention(&qkv, &cu, HEADS, D, &mut ctx))
    });
    let mut cls = vec![0.0; n_seqs * H];
    group.bench_function(format!("attention_cls_seq{seq}"), |b| {
        b.iter(|| ops::attention_cls(&qkv, &cu, HEADS, D, &mut cls))
    });
    let mut x = values(n * H, 5);
    let y = values(n * H, 6);
    group.bench_function("bias_residual_layernorm", |b| {
        b.iter(|| ops::bias_residual_layernorm(&mut x, &y, &bias[..H], &gamma, &beta, 1e-12))
    });
    let ug = values(n * 2 * I, 7);
    let mut act = vec![0.0; n * I];
    group.bench_function("gated_gelu", |b| b.iter(|| ops::gated_gelu(&ug, I, &mut act)));
    group.finish();
}

criterion_group!(benches, gemms, elementwise);
criterion_main!(benches);
