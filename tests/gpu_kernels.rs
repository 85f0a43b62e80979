//! Every CUDA kernel against its CPU twin in `crossrank::model::cpu::ops`, on seeded random
//! inputs over many shapes. Inputs are rounded to fp16 first so both sides see the same
//! values; outputs are compared with `|gpu - cpu| <= abs + rel·|cpu|` (see each test for the
//! budget and why), printing the first mismatches on failure and the margin on success.
//!
//! All tests need a GPU and are `#[ignore]`d: run them with
//! `cargo test --release --test gpu_kernels -- --ignored --test-threads=1 --nocapture`.

mod gpu_support;

use crossrank::cuda::{CudaSlice, Gpu, KernelOrigin};
use crossrank::model::cpu::{ops, RopeTable};
use gpu_support::{assert_close, from_f16, gpu, pack, to_f16, Rng};
use half::f16;

/// fp16 output rounding is 2^-11 relative (4.9e-4); LayerNorm statistics are fp32 on the GPU
/// and f64 on the CPU, a difference far below that.
const LN_ABS: f32 = 1e-3;
const LN_REL: f32 = 1e-3;
/// fp32 attention (reference / CLS kernels): only the final fp16 rounding differs.
const REF_ABS: f32 = 1e-3;
const REF_REL: f32 = 2e-3;
/// Flash attention rounds the probabilities to fp16 for the P·V MMA: up to 2^-11 of
/// sum(p·|v|) on top of the output rounding.
const FLASH_ABS: f32 = 2e-3;
const FLASH_REL: f32 = 4e-3;

fn up16(gpu: &Gpu, v: &[f32]) -> CudaSlice<f16> {
    gpu.upload(&to_f16(v)).unwrap()
}

fn down16(gpu: &Gpu, s: &CudaSlice<f16>) -> Vec<f32> {
    from_f16(&gpu.download(s).unwrap())
}

/// gte's RoPE frequencies for a head size: base 160000, divisor 8^(2/d) (spec §3.3).
fn gte_inv_freq(head_dim: usize) -> Vec<f64> {
    let d = head_dim as f64;
    (0..head_dim / 2)
        .map(|j| 160000f64.powf(-2.0 * j as f64 / d) / 8f64.powf(2.0 / d))
        .collect()
}

// ---------------------------------------------------------------------------------------
// embedding_layernorm

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn embedding_layernorm_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(1);
    for (hidden, vocab, with_type) in [(768, 1000, true), (64, 300, true), (1024, 50, false), (8, 20, true)] {
        let word = rng.normal_f16(vocab * hidden, 0.0, 1.0);
        let type_row = rng.normal_f16(hidden, 0.0, 0.3);
        let gamma = rng.normal_f32(hidden, 1.0, 0.1);
        let beta = rng.normal_f32(hidden, 0.0, 0.05);
        let (d_word, d_type) = (up16(&gpu, &word), up16(&gpu, &type_row));
        let (d_gamma, d_beta) = (gpu.upload(&gamma).unwrap(), gpu.upload(&beta).unwrap());
        for n in [1usize, 17, 130, 2048] {
            let ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u64) as u32).collect();
            let d_ids = gpu.upload(&ids).unwrap();
            let mut d_out = gpu.alloc_zeros::<f16>(n * hidden).unwrap();
            let mut flag = gpu.alloc_zeros::<i32>(1).unwrap();
            gpu.embedding_layernorm(
                &d_ids,
                &d_word,
                with_type.then(|| d_type.as_view()).as_ref(),
                &d_gamma,
                &d_beta,
                &mut d_out,
                n,
                hidden,
                vocab,
                1e-12,
                Some(&mut flag.as_view_mut()),
            )
            .unwrap();
            let got = down16(&gpu, &d_out);
            let mut want = vec![0.0f32; n * hidden];
            ops::embedding_layernorm(
                |id, dst| dst.copy_from_slice(&word[id * hidden..(id + 1) * hidden]),
                with_type.then_some(&type_row[..]),
                &ids,
                &gamma,
                &beta,
                1e-12,
                &mut want,
            );
            assert_close(
                &format!("embedding_layernorm h={hidden} n={n} type={with_type}"),
                &got,
                &want,
                LN_ABS,
                LN_REL,
            );
            assert_eq!(gpu.download(&flag).unwrap(), vec![0], "error flag set for valid ids");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn embedding_flags_out_of_range_ids() {
    let gpu = gpu();
    let mut rng = Rng::new(2);
    let (hidden, vocab) = (64, 100);
    let word = rng.normal_f16(vocab * hidden, 0.0, 1.0);
    let type_row = rng.normal_f16(hidden, 0.0, 0.3);
    let gamma = rng.normal_f32(hidden, 1.0, 0.1);
    let beta = rng.normal_f32(hidden, 0.0, 0.05);
    let ids = vec![5u32, 100, 99, u32::MAX, 0];
    let mut d_out = gpu.alloc_zeros::<f16>(ids.len() * hidden).unwrap();
    let mut flag = gpu.alloc_zeros::<i32>(1).unwrap();
    let d_type = up16(&gpu, &type_row);
    gpu.embedding_layernorm(
        &gpu.upload(&ids).unwrap(),
        &up16(&gpu, &word),
        Some(&d_type.as_view()),
        &gpu.upload(&gamma).unwrap(),
        &gpu.upload(&beta).unwrap(),
        &mut d_out,
        ids.len(),
        hidden,
        vocab,
        1e-12,
        Some(&mut flag.as_view_mut()),
    )
    .unwrap();
    assert_eq!(
        gpu.download(&flag).unwrap(),
        vec![1],
        "out-of-range ids must set the flag"
    );
    let got = down16(&gpu, &d_out);
    // Out-of-range rows use a zero word vector: LayerNorm(type row).
    let mut want = vec![0.0f32; ids.len() * hidden];
    ops::embedding_layernorm(
        |id, dst| {
            if id < vocab {
                dst.copy_from_slice(&word[id * hidden..(id + 1) * hidden])
            } else {
                dst.fill(0.0)
            }
        },
        Some(&type_row),
        &ids,
        &gamma,
        &beta,
        1e-12,
        &mut want,
    );
    assert_close("embedding_layernorm with out-of-range ids", &got, &want, LN_ABS, LN_REL);
}

// ---------------------------------------------------------------------------------------
// qkv_bias_rope

/// `tol` = (abs, rel).
fn check_rope(
    gpu: &Gpu,
    rng: &mut Rng,
    (heads, d): (usize, usize),
    positions: &[u32],
    with_bias: bool,
    tol: (f32, f32),
) {
    let (abs, rel) = tol;
    let h = heads * d;
    let n = positions.len();
    let qkv = rng.normal_f16(n * 3 * h, 0.0, 1.0);
    let bias = if with_bias {
        rng.normal_f32(3 * h, 0.0, 0.1)
    } else {
        vec![0.0; 3 * h]
    };
    let inv64 = gte_inv_freq(d);
    let inv32: Vec<f32> = inv64.iter().map(|&f| f as f32).collect();
    let mut d_qkv = up16(gpu, &qkv);
    let d_bias = gpu.upload(&bias).unwrap();
    gpu.qkv_bias_rope(
        &mut d_qkv,
        with_bias.then(|| d_bias.as_view()).as_ref(),
        &gpu.upload(positions).unwrap(),
        &gpu.upload(&inv32).unwrap(),
        n,
        h,
        d,
    )
    .unwrap();
    let got = down16(gpu, &d_qkv);
    let mut want = qkv.clone();
    let max_pos = *positions.iter().max().unwrap() as usize;
    let rope = RopeTable::new(&inv64, max_pos + 1);
    ops::qkv_bias_rope(&mut want, &bias, positions, &rope, heads, d);
    assert_close(
        &format!("qkv_bias_rope heads={heads} d={d} n={n} max_pos={max_pos} bias={with_bias}"),
        &got,
        &want,
        abs,
        rel,
    );
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn qkv_bias_rope_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(3);
    for (heads, d) in [(12, 64), (4, 16), (2, 32), (2, 128)] {
        for lengths in [&[1usize][..], &[17, 40], &[64, 65, 130, 200], &[2048]] {
            let (_, positions) = pack(lengths);
            check_rope(&gpu, &mut rng, (heads, d), &positions, true, (2e-3, 2e-3));
        }
    }
    let (_, positions) = pack(&[17, 5]);
    check_rope(&gpu, &mut rng, (12, 64), &positions, false, (2e-3, 2e-3));
}

/// Positions up to 8191: the GPU angle is one fp32 product (error up to ~7e-4 rad at p = 8191
/// from fp32 inv_freq and the product's rounding), the CPU's is exact, so the budget is wider
/// (7e-4 rad times |z| + |z'| of up to ~8 for extreme values); a wrong pairing or frequency
/// would be off by O(1).
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn qkv_bias_rope_large_positions() {
    let gpu = gpu();
    let mut rng = Rng::new(4);
    let positions: Vec<u32> = vec![
        0, 1, 2, 100, 1000, 2047, 2048, 4095, 5000, 7000, 8000, 8190, 8191, 3, 511, 6666, 8191,
    ];
    check_rope(&gpu, &mut rng, (12, 64), &positions, true, (1e-2, 2e-3));
}

// ---------------------------------------------------------------------------------------
// attention

/// Random post-RoPE qkv for packed sequences; q scaled by `q_scale` (large: peaky softmax).
fn random_qkv(rng: &mut Rng, n: usize, h: usize, q_scale: f32) -> Vec<f32> {
    let mut qkv = rng.normal_f16(n * 3 * h, 0.0, 1.0);
    if q_scale != 1.0 {
        for row in qkv.chunks_mut(3 * h) {
            for v in &mut row[..h] {
                *v = gpu_support::round_f16(*v * q_scale);
            }
        }
    }
    qkv
}

const ATTENTION_SHAPES: &[&[usize]] = &[
    &[1],
    &[17],
    &[40],
    &[64],
    &[65],
    &[130],
    &[200],
    &[1, 17, 40, 64, 65, 130, 200, 3],
    &[2048],
    &[2048, 1, 1000, 33],
];

fn run_flash(gpu: &Gpu, qkv: &CudaSlice<f16>, cu: &[u32], heads: usize, max_seqlen: usize) -> Vec<f32> {
    let n = *cu.last().unwrap() as usize;
    let h = heads * 64;
    let mut ctx = gpu.alloc_zeros::<f16>(n * h).unwrap();
    let d_cu = gpu.upload(cu).unwrap();
    gpu.attention_flash(
        &qkv.as_view(),
        &mut ctx.as_view_mut(),
        &d_cu.as_view(),
        cu.len() - 1,
        n,
        max_seqlen,
        heads,
    )
    .unwrap();
    down16(gpu, &ctx)
}

fn run_reference(gpu: &Gpu, qkv: &CudaSlice<f16>, cu: &[u32], heads: usize, d: usize) -> Vec<f32> {
    let n = *cu.last().unwrap() as usize;
    let mut ctx = gpu.alloc_zeros::<f16>(n * heads * d).unwrap();
    gpu.attention_reference(qkv, &mut ctx, &gpu.upload(cu).unwrap(), cu.len() - 1, n, heads, d)
        .unwrap();
    down16(gpu, &ctx)
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_flash_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(5);
    let heads = 12;
    for (k, &lengths) in ATTENTION_SHAPES.iter().enumerate() {
        for q_scale in [1.0f32, 3.0] {
            if q_scale != 1.0 && k % 3 != 0 {
                continue;
            }
            let (cu, _) = pack(lengths);
            let n = *cu.last().unwrap() as usize;
            let qkv = random_qkv(&mut rng, n, heads * 64, q_scale);
            let got = run_flash(&gpu, &up16(&gpu, &qkv), &cu, heads, *lengths.iter().max().unwrap());
            let mut want = vec![0.0f32; n * heads * 64];
            ops::attention(&qkv, &cu, heads, 64, &mut want);
            assert_close(
                &format!("flash attention lens={lengths:?} q_scale={q_scale}"),
                &got,
                &want,
                FLASH_ABS,
                FLASH_REL,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_reference_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(6);
    for (heads, d) in [(4, 16), (2, 32), (12, 64), (2, 128)] {
        for lengths in [&[1usize, 17, 65, 200][..], &[1000, 3]] {
            let (cu, _) = pack(lengths);
            let n = *cu.last().unwrap() as usize;
            let qkv = random_qkv(&mut rng, n, heads * d, 1.0);
            let got = run_reference(&gpu, &up16(&gpu, &qkv), &cu, heads, d);
            let mut want = vec![0.0f32; n * heads * d];
            ops::attention(&qkv, &cu, heads, d, &mut want);
            assert_close(
                &format!("reference attention heads={heads} d={d} lens={lengths:?}"),
                &got,
                &want,
                REF_ABS,
                REF_REL,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_flash_matches_reference_kernel() {
    let gpu = gpu();
    let mut rng = Rng::new(7);
    let heads = 12;
    for &lengths in ATTENTION_SHAPES {
        let (cu, _) = pack(lengths);
        let n = *cu.last().unwrap() as usize;
        let d_qkv = up16(&gpu, &random_qkv(&mut rng, n, heads * 64, 2.0));
        let flash = run_flash(&gpu, &d_qkv, &cu, heads, *lengths.iter().max().unwrap());
        let reference = run_reference(&gpu, &d_qkv, &cu, heads, 64);
        assert_close(
            &format!("flash vs reference kernel lens={lengths:?}"),
            &flash,
            &reference,
            FLASH_ABS,
            FLASH_REL,
        );
    }
}

/// An upper bound for `max_seqlen` is fine: CTAs past a sequence's end exit.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_flash_accepts_a_loose_max_seqlen() {
    let gpu = gpu();
    let mut rng = Rng::new(8);
    let heads = 2;
    let (cu, _) = pack(&[5, 70, 1]);
    let n = *cu.last().unwrap() as usize;
    let qkv = random_qkv(&mut rng, n, heads * 64, 1.0);
    let d_qkv = up16(&gpu, &qkv);
    let tight = run_flash(&gpu, &d_qkv, &cu, heads, 70);
    let loose = run_flash(&gpu, &d_qkv, &cu, heads, 1000);
    assert_eq!(tight, loose);
}

/// More sequences than gridDim.z allows (65,535): the wrapper splits the launch.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_flash_splits_beyond_65535_sequences() {
    let gpu = gpu();
    let mut rng = Rng::new(9);
    let heads = 1;
    let lengths: Vec<usize> = (0..70_000).map(|i| 1 + i % 3).collect();
    let (cu, _) = pack(&lengths);
    let n = *cu.last().unwrap() as usize;
    let qkv = random_qkv(&mut rng, n, 64, 1.0);
    let got = run_flash(&gpu, &up16(&gpu, &qkv), &cu, heads, 3);
    let mut want = vec![0.0f32; n * 64];
    ops::attention(&qkv, &cu, heads, 64, &mut want);
    assert_close("flash attention, 70000 sequences", &got, &want, FLASH_ABS, FLASH_REL);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_cls_matches_cpu_and_full_attention_row0() {
    let gpu = gpu();
    let mut rng = Rng::new(10);
    let heads = 12;
    let h = heads * 64;
    for lengths in [&[1usize][..], &[17, 64, 65, 200, 3], &[2048, 1, 130]] {
        let (cu, _) = pack(lengths);
        let n = *cu.last().unwrap() as usize;
        let s = lengths.len();
        let qkv = random_qkv(&mut rng, n, h, 2.0);
        let d_qkv = up16(&gpu, &qkv);
        let mut d_cls = gpu.alloc_zeros::<f16>(s * h).unwrap();
        gpu.attention_cls(&d_qkv, &mut d_cls, &gpu.upload(&cu).unwrap(), s, n, heads)
            .unwrap();
        let got = down16(&gpu, &d_cls);
        let mut want = vec![0.0f32; s * h];
        ops::attention_cls(&qkv, &cu, heads, 64, &mut want);
        assert_close(
            &format!("CLS attention vs cpu lens={lengths:?}"),
            &got,
            &want,
            REF_ABS,
            REF_REL,
        );
        // Row cu_seqlens[s] of the full reference kernel.
        let full = run_reference(&gpu, &d_qkv, &cu, heads, 64);
        let rows: Vec<f32> = cu[..s]
            .iter()
            .flat_map(|&r| full[r as usize * h..(r as usize + 1) * h].to_vec())
            .collect();
        assert_close(
            &format!("CLS attention vs full reference row 0 lens={lengths:?}"),
            &got,
            &rows,
            REF_ABS,
            REF_REL,
        );
    }
}

// ---------------------------------------------------------------------------------------
// residual LayerNorms

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn bias_residual_layernorm_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(11);
    for (k, hidden) in [768usize, 64, 1024, 8].into_iter().enumerate() {
        for rows in [1usize, 17, 130, 2048] {
            let with_bias = (k + rows) % 2 == 1 || hidden == 768;
            let x = rng.normal_f16(rows * hidden, 0.0, 1.0);
            let y = rng.normal_f16(rows * hidden, 0.0, 1.0);
            let bias = if with_bias {
                rng.normal_f32(hidden, 0.0, 0.05)
            } else {
                vec![0.0; hidden]
            };
            let gamma = rng.normal_f32(hidden, 1.0, 0.1);
            let beta = rng.normal_f32(hidden, 0.0, 0.05);
            let mut d_x = up16(&gpu, &x);
            let d_bias = gpu.upload(&bias).unwrap();
            gpu.bias_residual_layernorm(
                &mut d_x,
                &up16(&gpu, &y),
                with_bias.then(|| d_bias.as_view()).as_ref(),
                &gpu.upload(&gamma).unwrap(),
                &gpu.upload(&beta).unwrap(),
                rows,
                hidden,
                1e-12,
            )
            .unwrap();
            let got = down16(&gpu, &d_x);
            let mut want = x.clone();
            ops::bias_residual_layernorm(&mut want, &y, &bias, &gamma, &beta, 1e-12);
            assert_close(
                &format!("bias_residual_layernorm h={hidden} rows={rows} bias={with_bias}"),
                &got,
                &want,
                LN_ABS,
                LN_REL,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn bias_residual_layernorm_rows_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(12);
    for (hidden, lengths) in [
        (768usize, &[1usize, 17, 40, 130][..]),
        (64, &[3, 1, 200]),
        (768, &[2048]),
    ] {
        let (cu, _) = pack(lengths);
        let n = *cu.last().unwrap() as usize;
        let s = lengths.len();
        let x = rng.normal_f16(n * hidden, 0.0, 1.0);
        let y = rng.normal_f16(s * hidden, 0.0, 1.0);
        let bias = rng.normal_f32(hidden, 0.0, 0.05);
        let gamma = rng.normal_f32(hidden, 1.0, 0.1);
        let beta = rng.normal_f32(hidden, 0.0, 0.05);
        let d_x = up16(&gpu, &x);
        let mut d_out = gpu.alloc_zeros::<f16>(s * hidden).unwrap();
        gpu.bias_residual_layernorm_rows(
            &d_x,
            &gpu.upload(&cu).unwrap(),
            n - 1,
            &up16(&gpu, &y),
            Some(&gpu.upload(&bias).unwrap().as_view()),
            &gpu.upload(&gamma).unwrap(),
            &gpu.upload(&beta).unwrap(),
            &mut d_out,
            s,
            hidden,
            1e-12,
        )
        .unwrap();
        let got = down16(&gpu, &d_out);
        let mut want: Vec<f32> = cu[..s]
            .iter()
            .flat_map(|&r| x[r as usize * hidden..(r as usize + 1) * hidden].to_vec())
            .collect();
        ops::bias_residual_layernorm(&mut want, &y, &bias, &gamma, &beta, 1e-12);
        assert_close(
            &format!("bias_residual_layernorm_rows h={hidden} lens={lengths:?}"),
            &got,
            &want,
            LN_ABS,
            LN_REL,
        );
        // x itself is untouched.
        assert_eq!(down16(&gpu, &d_x), x);
    }
}

// ---------------------------------------------------------------------------------------
// gated_gelu

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn gated_gelu_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(13);
    for inter in [3072usize, 128, 8] {
        for rows in [1usize, 17, 130, 513] {
            let ug = rng.normal_f16(rows * 2 * inter, 0.0, 1.5);
            let mut d_out = gpu.alloc_zeros::<f16>(rows * inter).unwrap();
            gpu.gated_gelu(&up16(&gpu, &ug), &mut d_out, rows, inter).unwrap();
            let got = down16(&gpu, &d_out);
            let mut want = vec![0.0f32; rows * inter];
            ops::gated_gelu(&ug, inter, &mut want);
            assert_close(
                &format!("gated_gelu inter={inter} rows={rows}"),
                &got,
                &want,
                1e-3,
                2e-3,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// pooler + classifier

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn cls_pooler_classifier_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(14);
    for hidden in [768usize, 64] {
        let inv = 1.0 / (hidden as f32).sqrt();
        let w_pool = rng.normal_f32(hidden * hidden, 0.0, 1.5 * inv);
        let b_pool = rng.normal_f32(hidden, 0.0, 0.1);
        let w_cls = rng.normal_f32(hidden, 0.0, 2.0 * inv);
        let b_cls = rng.normal_f32(1, 0.0, 0.1);
        let (d_wp, d_bp) = (gpu.upload(&w_pool).unwrap(), gpu.upload(&b_pool).unwrap());
        let (d_wc, d_bc) = (gpu.upload(&w_cls).unwrap(), gpu.upload(&b_cls).unwrap());
        for n_seqs in [1usize, 7, 8, 9, 100] {
            let lengths: Vec<usize> = (0..n_seqs).map(|i| 1 + (i * 7) % 13).collect();
            let (cu, _) = pack(&lengths);
            let n = *cu.last().unwrap() as usize;
            let x = rng.normal_f16(n * hidden, 0.0, 1.0);
            let cls: Vec<f32> = cu[..n_seqs]
                .iter()
                .flat_map(|&r| x[r as usize * hidden..(r as usize + 1) * hidden].to_vec())
                .collect();
            let want = ops::cls_pooler_classifier(&cls, &w_pool, &b_pool, &w_cls, b_cls[0], 1);
            let want_scores: Vec<f32> = want.iter().map(|&l| crossrank::config::sigmoid(l)).collect();

            // Index mode: rows cu_seqlens[s] of the packed hidden states; sigmoid scores too.
            let d_x = up16(&gpu, &x);
            let d_cu = gpu.upload(&cu).unwrap();
            let mut logits = gpu.alloc_zeros::<f32>(n_seqs).unwrap();
            let mut scores = gpu.alloc_zeros::<f32>(n_seqs).unwrap();
            gpu.cls_pooler_classifier(
                &d_x,
                n,
                Some(&d_cu.as_view()),
                Some((&d_wp.as_view(), &d_bp.as_view())),
                &d_wc,
                Some(&d_bc.as_view()),
                1,
                Some(&mut logits.as_view_mut()),
                Some(&mut scores.as_view_mut()),
                n_seqs,
                hidden,
            )
            .unwrap();
            let what = format!("cls_pooler_classifier h={hidden} seqs={n_seqs}");
            assert_close(
                &format!("{what} (packed rows) logits"),
                &gpu.download(&logits).unwrap(),
                &want,
                1e-4,
                1e-4,
            );
            assert_close(
                &format!("{what} (packed rows) sigmoid"),
                &gpu.download(&scores).unwrap(),
                &want_scores,
                1e-5,
                1e-4,
            );

            // Compact mode: rows 0..n_seqs, logits only.
            let d_cls = up16(&gpu, &cls);
            let mut logits2 = gpu.alloc_zeros::<f32>(n_seqs).unwrap();
            gpu.cls_pooler_classifier(
                &d_cls,
                n_seqs,
                None,
                Some((&d_wp.as_view(), &d_bp.as_view())),
                &d_wc,
                Some(&d_bc.as_view()),
                0,
                Some(&mut logits2.as_view_mut()),
                None,
                n_seqs,
                hidden,
            )
            .unwrap();
            assert_close(
                &format!("{what} (compact rows)"),
                &gpu.download(&logits2).unwrap(),
                &want,
                1e-4,
                1e-4,
            );

            // No pooler: logit = w_cls · c + b_cls.
            let mut logits3 = gpu.alloc_zeros::<f32>(n_seqs).unwrap();
            gpu.cls_pooler_classifier(
                &d_cls,
                n_seqs,
                None,
                None,
                &d_wc,
                Some(&d_bc.as_view()),
                0,
                Some(&mut logits3.as_view_mut()),
                None,
                n_seqs,
                hidden,
            )
            .unwrap();
            let want3: Vec<f32> = cls
                .chunks(hidden)
                .map(|c| c.iter().zip(&w_cls).map(|(a, b)| (a * b) as f64).sum::<f64>() as f32 + b_cls[0])
                .collect();
            assert_close(
                &format!("{what} (no pooler)"),
                &gpu.download(&logits3).unwrap(),
                &want3,
                1e-4,
                1e-4,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// cuBLAS GEMM

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn gemm_matches_matmul_wt() {
    let gpu = gpu();
    let mut rng = Rng::new(15);
    let shapes = [
        (1usize, 768usize, 2304usize),
        (17, 768, 768),
        (130, 768, 6144),
        (513, 3072, 768),
        (2048, 768, 2304),
        (7, 64, 192),
        (33, 40, 24),
        (3, 8, 8),
    ];
    for (n, in_f, out_f) in shapes {
        let x = rng.normal_f16(n * in_f, 0.0, 1.0);
        let w = rng.normal_f16(out_f * in_f, 0.0, 1.0 / (in_f as f32).sqrt());
        // Write into the middle of a larger buffer through views: the rest must stay zero.
        let pad = 3 * out_f;
        let mut d_y = gpu.alloc_zeros::<f16>(n * out_f + 2 * pad).unwrap();
        gpu.linear(
            &up16(&gpu, &x).as_view(),
            &up16(&gpu, &w),
            &mut d_y.slice_mut(pad..pad + n * out_f),
            n,
            in_f,
            out_f,
        )
        .unwrap();
        let all = down16(&gpu, &d_y);
        assert!(
            all[..pad].iter().chain(&all[pad + n * out_f..]).all(|&v| v == 0.0),
            "GEMM wrote outside its view"
        );
        let mut want = vec![0.0f32; n * out_f];
        ops::matmul_wt(&x, &w, in_f, &mut want, 4);
        assert_close(
            &format!("cublasGemmEx n={n} in={in_f} out={out_f}"),
            &all[pad..pad + n * out_f],
            &want,
            2e-3,
            2e-3,
        );
    }
}

// ---------------------------------------------------------------------------------------
// NVRTC fallback

/// The run-time compilation path (used when the build had no nvcc): every module compiles
/// with NVRTC, loads, and a kernel from it agrees with the CPU.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn nvrtc_fallback_compiles_every_kernel() {
    let _shared = gpu(); // report the device first
    let t = std::time::Instant::now();
    let nvrtc = Gpu::new(0, KernelOrigin::Nvrtc).unwrap_or_else(|e| panic!("NVRTC path: {e}"));
    eprintln!(
        "[nvrtc] compiled and loaded every module in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut rng = Rng::new(16);
    let (rows, inter) = (9, 128);
    let ug = rng.normal_f16(rows * 2 * inter, 0.0, 1.5);
    let mut d_out = nvrtc.alloc_zeros::<f16>(rows * inter).unwrap();
    nvrtc.gated_gelu(&up16(&nvrtc, &ug), &mut d_out, rows, inter).unwrap();
    let mut want = vec![0.0f32; rows * inter];
    ops::gated_gelu(&ug, inter, &mut want);
    assert_close("gated_gelu (NVRTC build)", &down16(&nvrtc, &d_out), &want, 1e-3, 2e-3);
}

// ---------------------------------------------------------------------------------------
// Absolute-position encoders (BERT, XLM-RoBERTa): embedding with position + segment rows,
// QKV bias without RoPE, bias + plain GELU, and head_dim 32 attention (MiniLM)

/// Odd packed layouts from 1 to 300 tokens per sequence.
const ABS_LENGTHS: &[&[usize]] = &[&[1], &[17, 40], &[3, 300, 65, 1], &[129, 64, 63, 200]];

/// Segment ids as a BERT pair template gives them: the first part 0, the rest 1.
fn pair_type_ids(lengths: &[usize]) -> Vec<u32> {
    lengths
        .iter()
        .flat_map(|&l| (0..l).map(move |i| u32::from(i >= l.div_ceil(2))))
        .collect()
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn embedding_abs_layernorm_matches_cpu() {
    use crossrank::cuda::kernels::EmbeddingTableRows;
    let gpu = gpu();
    let mut rng = Rng::new(17);
    // (hidden, vocab, position rows, type rows, position offset): BERT-like (positions from
    // 0, two segments) and XLM-R-like (positions from padding_idx + 1 = 2, one segment).
    for (hidden, vocab, n_pos, n_types, offset) in [
        (96usize, 301usize, 512usize, 2usize, 0u32),
        (384, 1000, 512, 2, 0),
        (1024, 500, 514, 1, 2),
        (384, 77, 8194, 1, 2),
    ] {
        let word = rng.normal_f16(vocab * hidden, 0.0, 1.0);
        let pos_emb = rng.normal_f16(n_pos * hidden, 0.0, 0.5);
        let type_emb = rng.normal_f16(n_types * hidden, 0.0, 0.3);
        let gamma = rng.normal_f32(hidden, 1.0, 0.1);
        let beta = rng.normal_f32(hidden, 0.0, 0.05);
        let (d_word, d_pos_emb, d_type_emb) = (up16(&gpu, &word), up16(&gpu, &pos_emb), up16(&gpu, &type_emb));
        let (d_gamma, d_beta) = (gpu.upload(&gamma).unwrap(), gpu.upload(&beta).unwrap());
        let mut cases: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        for &lengths in ABS_LENGTHS {
            let (_, pos0) = pack(lengths);
            let types = if n_types > 1 {
                pair_type_ids(lengths)
            } else {
                vec![0; pos0.len()]
            };
            cases.push((pos0.iter().map(|p| p + offset).collect(), types));
        }
        // The last position row is reachable (8,192 tokens after XLM-R's offset of 2).
        let last = (n_pos as u32 - 3..n_pos as u32).collect::<Vec<u32>>();
        cases.push((last.clone(), vec![n_types as u32 - 1; last.len()]));
        for (positions, type_ids) in cases {
            let n = positions.len();
            let ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u64) as u32).collect();
            let mut d_out = gpu.alloc_zeros::<f16>(n * hidden).unwrap();
            let mut flag = gpu.alloc_zeros::<i32>(1).unwrap();
            gpu.embedding_abs_layernorm(
                &gpu.upload(&ids).unwrap(),
                &gpu.upload(&positions).unwrap(),
                &gpu.upload(&type_ids).unwrap(),
                &d_word,
                &d_pos_emb,
                &d_type_emb,
                &d_gamma,
                &d_beta,
                &mut d_out,
                n,
                hidden,
                EmbeddingTableRows {
                    vocab,
                    positions: n_pos,
                    types: n_types,
                },
                1e-12,
                Some(&mut flag.as_view_mut()),
            )
            .unwrap();
            let got = down16(&gpu, &d_out);
            let mut want = vec![0.0f32; n * hidden];
            ops::embedding_abs_layernorm(
                |id, dst| dst.copy_from_slice(&word[id * hidden..(id + 1) * hidden]),
                &pos_emb,
                &type_emb,
                &ids,
                &positions,
                &type_ids,
                &gamma,
                &beta,
                1e-12,
                &mut want,
            );
            assert_close(
                &format!(
                    "embedding_abs_layernorm h={hidden} n={n} positions {}..={} types<{n_types}",
                    positions[0],
                    positions.iter().max().unwrap()
                ),
                &got,
                &want,
                LN_ABS,
                LN_REL,
            );
            assert_eq!(gpu.download(&flag).unwrap(), vec![0], "error flag set for valid rows");
        }
    }
}

/// An id, position or type past its table reads a zero row (finite output) and sets bit 0,
/// 1 or 2 of the flag.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn embedding_abs_layernorm_flags_out_of_range_rows() {
    use crossrank::cuda::kernels::EmbeddingTableRows;
    let gpu = gpu();
    let mut rng = Rng::new(18);
    let (hidden, vocab, n_pos, n_types) = (96, 50, 40, 2);
    let word = rng.normal_f16(vocab * hidden, 0.0, 1.0);
    let pos_emb = rng.normal_f16(n_pos * hidden, 0.0, 0.5);
    let type_emb = rng.normal_f16(n_types * hidden, 0.0, 0.3);
    let gamma = rng.normal_f32(hidden, 1.0, 0.1);
    let beta = rng.normal_f32(hidden, 0.0, 0.05);
    let ids = vec![3u32, 50, 7, 9, u32::MAX];
    let positions = vec![0u32, 1, 40, 2, 3];
    let type_ids = vec![1u32, 0, 0, 2, 1];
    let n = ids.len();
    let mut d_out = gpu.alloc_zeros::<f16>(n * hidden).unwrap();
    let mut flag = gpu.alloc_zeros::<i32>(1).unwrap();
    gpu.embedding_abs_layernorm(
        &gpu.upload(&ids).unwrap(),
        &gpu.upload(&positions).unwrap(),
        &gpu.upload(&type_ids).unwrap(),
        &up16(&gpu, &word),
        &up16(&gpu, &pos_emb),
        &up16(&gpu, &type_emb),
        &gpu.upload(&gamma).unwrap(),
        &gpu.upload(&beta).unwrap(),
        &mut d_out,
        n,
        hidden,
        EmbeddingTableRows {
            vocab,
            positions: n_pos,
            types: n_types,
        },
        1e-12,
        Some(&mut flag.as_view_mut()),
    )
    .unwrap();
    assert_eq!(
        gpu.download(&flag).unwrap(),
        vec![1 | 2 | 4],
        "bits 0, 1 and 2 must be set"
    );
    // The twin on tables with one extra zero row, which every out-of-range index points at.
    let zero_row = |table: &[f32]| [table, &vec![0.0; hidden][..]].concat();
    let clamp = |v: &[u32], rows: usize| v.iter().map(|&x| x.min(rows as u32)).collect::<Vec<u32>>();
    let mut want = vec![0.0f32; n * hidden];
    ops::embedding_abs_layernorm(
        |id, dst| {
            if id < vocab {
                dst.copy_from_slice(&word[id * hidden..(id + 1) * hidden])
            } else {
                dst.fill(0.0)
            }
        },
        &zero_row(&pos_emb),
        &zero_row(&type_emb),
        &ids,
        &clamp(&positions, n_pos),
        &clamp(&type_ids, n_types),
        &gamma,
        &beta,
        1e-12,
        &mut want,
    );
    assert_close(
        "embedding_abs_layernorm with out-of-range rows",
        &down16(&gpu, &d_out),
        &want,
        LN_ABS,
        LN_REL,
    );
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn add_bias_rows_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(19);
    // QKV rows of hidden 96, 384 and 1024, and an odd multiple of 8.
    for width in [3 * 96usize, 3 * 384, 3 * 1024, 8 * 37] {
        for rows in [1usize, 17, 300, 513] {
            let x = rng.normal_f16(rows * width, 0.0, 2.0);
            let bias = rng.normal_f32(width, 0.0, 0.5);
            let mut d_x = up16(&gpu, &x);
            gpu.add_bias_rows(&mut d_x, &gpu.upload(&bias).unwrap(), rows, width)
                .unwrap();
            let mut want = x.clone();
            ops::add_bias_rows(&mut want, &bias);
            assert_close(
                &format!("add_bias_rows width={width} rows={rows}"),
                &down16(&gpu, &d_x),
                &want,
                1e-3,
                1e-3,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn bias_gelu_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(20);
    // MLP widths of MiniLM (1536), bge-base (3072), bge-large / v2-m3 (4096), and an odd one.
    for width in [1536usize, 3072, 4096, 8 * 37] {
        for rows in [1usize, 17, 300] {
            let x = rng.normal_f16(rows * width, 0.0, 2.0);
            let bias = rng.normal_f32(width, 0.0, 0.5);
            let mut d_x = up16(&gpu, &x);
            gpu.bias_gelu(&mut d_x, &gpu.upload(&bias).unwrap(), rows, width)
                .unwrap();
            let mut want = x.clone();
            ops::bias_gelu(&mut want, &bias);
            assert_close(
                &format!("bias_gelu width={width} rows={rows}"),
                &down16(&gpu, &d_x),
                &want,
                1e-3,
                2e-3,
            );
        }
    }
}

fn run_flash_d(gpu: &Gpu, qkv: &CudaSlice<f16>, cu: &[u32], heads: usize, d: usize, max_seqlen: usize) -> Vec<f32> {
    let n = *cu.last().unwrap() as usize;
    let mut ctx = gpu.alloc_zeros::<f16>(n * heads * d).unwrap();
    let d_cu = gpu.upload(cu).unwrap();
    gpu.attention_flash_with_head_dim(
        &qkv.as_view(),
        &mut ctx.as_view_mut(),
        &d_cu.as_view(),
        cu.len() - 1,
        n,
        max_seqlen,
        heads,
        d,
    )
    .unwrap();
    down16(gpu, &ctx)
}

/// Flash attention at head_dim 32 (MiniLM: 12 heads of 32) and through the head_dim-generic
/// wrapper at 64 (bge-large: 16 heads of 64), against the CPU and the fp32 reference kernel.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_flash_head_dim_32_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(21);
    for (heads, d) in [(12usize, 32usize), (3, 32), (16, 64)] {
        // 1..300 tokens, and one sequence of 16 key tiles (the online-softmax rescale).
        for (k, &lengths) in ABS_LENGTHS.iter().chain([&[1000usize, 3][..]].iter()).enumerate() {
            let q_scale = if k % 3 == 0 { 3.0 } else { 1.0 };
            let (cu, _) = pack(lengths);
            let n = *cu.last().unwrap() as usize;
            let qkv = random_qkv(&mut rng, n, heads * d, q_scale);
            let d_qkv = up16(&gpu, &qkv);
            let got = run_flash_d(&gpu, &d_qkv, &cu, heads, d, *lengths.iter().max().unwrap());
            let mut want = vec![0.0f32; n * heads * d];
            ops::attention(&qkv, &cu, heads, d, &mut want);
            let what = format!("flash attention heads={heads} d={d} lens={lengths:?} q_scale={q_scale}");
            assert_close(&what, &got, &want, FLASH_ABS, FLASH_REL);
            let reference = run_reference(&gpu, &d_qkv, &cu, heads, d);
            assert_close(
                &format!("{what} vs reference kernel"),
                &got,
                &reference,
                FLASH_ABS,
                FLASH_REL,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_cls_head_dim_32_matches_cpu_and_full_attention_row0() {
    let gpu = gpu();
    let mut rng = Rng::new(22);
    for (heads, d) in [(12usize, 32usize), (3, 32), (16, 64)] {
        for &lengths in ABS_LENGTHS.iter().chain([&[1000usize, 1, 130][..]].iter()) {
            let h = heads * d;
            let (cu, _) = pack(lengths);
            let n = *cu.last().unwrap() as usize;
            let s = lengths.len();
            let qkv = random_qkv(&mut rng, n, h, 2.0);
            let d_qkv = up16(&gpu, &qkv);
            let mut d_cls = gpu.alloc_zeros::<f16>(s * h).unwrap();
            gpu.attention_cls_with_head_dim(&d_qkv, &mut d_cls, &gpu.upload(&cu).unwrap(), s, n, heads, d)
                .unwrap();
            let got = down16(&gpu, &d_cls);
            let mut want = vec![0.0f32; s * h];
            ops::attention_cls(&qkv, &cu, heads, d, &mut want);
            let what = format!("CLS attention heads={heads} d={d} lens={lengths:?}");
            assert_close(&format!("{what} vs cpu"), &got, &want, REF_ABS, REF_REL);
            let full = run_reference(&gpu, &d_qkv, &cu, heads, d);
            let rows: Vec<f32> = cu[..s]
                .iter()
                .flat_map(|&r| full[r as usize * h..(r as usize + 1) * h].to_vec())
                .collect();
            assert_close(
                &format!("{what} vs full reference row 0"),
                &got,
                &rows,
                REF_ABS,
                REF_REL,
            );
        }
    }
}

/// The head_dim-generic wrappers refuse what no instantiation exists for, naming it.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn attention_with_head_dim_refuses_unsupported_head_dims() {
    let gpu = gpu();
    let (cu, _) = pack(&[5]);
    for d in [16usize, 48, 128] {
        let qkv = gpu.alloc_zeros::<f16>(5 * 3 * 2 * d).unwrap();
        let mut ctx = gpu.alloc_zeros::<f16>(5 * 2 * d).unwrap();
        let d_cu = gpu.upload(&cu).unwrap();
        let err = gpu
            .attention_flash_with_head_dim(&qkv.as_view(), &mut ctx.as_view_mut(), &d_cu.as_view(), 1, 5, 5, 2, d)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("head_dim {d}")), "{err}");
        let err = gpu
            .attention_cls_with_head_dim(&qkv, &mut ctx, &d_cu, 1, 5, 2, d)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("head_dim {d}")), "{err}");
    }
}
