//! The C ABI (src/capi.rs, include/crossrank.h).
//!
//! - From C: examples/c/crossrank_example.c is compiled with the system C compiler against
//!   the header and libcrossrank.so only, run on the tiny fixture, and must print the CLI's
//!   logits and scores bit for bit and pass all of its error-path checks.
//! - The header's struct layouts equal the Rust ones (a C program prints sizeof/offsetof).
//! - From Rust: every error path of every extern function, called directly.

mod capi_support;

use std::ffi::{c_char, CStr, CString};
use std::mem::{offset_of, size_of};
use std::process::Command;
use std::ptr::{null, null_mut};

use capi_support::*;
use crossrank::capi::*;

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Compiles a C program against include/ and libcrossrank.so (rpath set).
fn compile_c(source: &std::path::Path, exe: &std::path::Path) {
    let lib = lib_dir();
    run(Command::new(cc())
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(repo().join("include"))
        .arg(source)
        .arg("-L")
        .arg(&lib)
        .arg("-lcrossrank")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(exe));
}

#[test]
fn c_example_matches_the_cli_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("crossrank_example");
    compile_c(&repo().join("examples/c/crossrank_example.c"), &exe);

    let pairs = pairs();
    let tsv = dir.path().join("pairs.tsv");
    write_tsv(&tsv, &pairs);
    let out = run(Command::new(&exe)
        .arg(fixture_dir())
        .args(["--device", "cpu", "--pairs"])
        .arg(&tsv));
    let got = parse_example_output(&String::from_utf8(out.stdout).unwrap());
    assert_matches_cli("C example", dir.path(), &pairs, &got);

    // The built-in pairs (no --pairs) run too, on the default (auto) device.
    let out = run(Command::new(&exe).arg(fixture_dir()));
    let builtin = parse_example_output(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(builtin.pairs.len(), 4);
    assert!(builtin.checks.iter().all(|c| c.1 == "ok"));
}

#[test]
fn c_example_rejects_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("crossrank_example");
    compile_c(&repo().join("examples/c/crossrank_example.c"), &exe);
    let out = Command::new(&exe).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(&exe)
        .arg("/nonexistent/model")
        .arg("--device")
        .arg("cpu")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CROSSRANK_ERR_MODEL"));
}

#[test]
fn header_layouts_match_rust() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("layout.c");
    std::fs::write(
        &source,
        r#"#include <crossrank.h>
#include <stddef.h>
#include <stdio.h>
int main(void) {
    printf("%u %u %u\n", (unsigned)sizeof(crossrank_status), (unsigned)sizeof(crossrank_device), (unsigned)CROSSRANK_ABI_VERSION);
    printf("%u %u %u %u %u\n", (unsigned)sizeof(crossrank_model_params),
           (unsigned)offsetof(crossrank_model_params, device), (unsigned)offsetof(crossrank_model_params, cuda_device_index),
           (unsigned)offsetof(crossrank_model_params, max_length), (unsigned)offsetof(crossrank_model_params, batch_tokens));
    printf("%u %u %u %u %u %u %u %u\n", (unsigned)sizeof(crossrank_model_info),
           (unsigned)offsetof(crossrank_model_info, device), (unsigned)offsetof(crossrank_model_info, cuda_device_index),
           (unsigned)offsetof(crossrank_model_info, max_length), (unsigned)offsetof(crossrank_model_info, batch_tokens),
           (unsigned)offsetof(crossrank_model_info, hidden_size), (unsigned)offsetof(crossrank_model_info, num_layers),
           (unsigned)offsetof(crossrank_model_info, vocab_size));
    printf("%d %d %d %d %d %d %d %d %d\n", CROSSRANK_OK, CROSSRANK_ERR_INVALID_ARGUMENT, CROSSRANK_ERR_IO,
           CROSSRANK_ERR_MODEL, CROSSRANK_ERR_DEVICE, CROSSRANK_ERR_INTERNAL,
           CROSSRANK_DEVICE_AUTO, CROSSRANK_DEVICE_CPU, CROSSRANK_DEVICE_CUDA);
    {
        crossrank_model_params p = crossrank_model_params_default();
        printf("%d %d %u %u %u\n", (int)p.device, (int)p.cuda_device_index, (unsigned)p.max_length,
               (unsigned)p.batch_tokens, (unsigned)crossrank_abi_version());
    }
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.path().join("layout");
    compile_c(&source, &exe);
    let out = String::from_utf8(run(&mut Command::new(&exe)).stdout).unwrap();
    type P = crossrank_model_params;
    type I = crossrank_model_info;
    let want = [
        format!(
            "{} {} {}",
            size_of::<crossrank_status>(),
            size_of::<crossrank_device>(),
            ABI_VERSION
        ),
        format!(
            "{} {} {} {} {}",
            size_of::<P>(),
            offset_of!(P, device),
            offset_of!(P, cuda_device_index),
            offset_of!(P, max_length),
            offset_of!(P, batch_tokens)
        ),
        format!(
            "{} {} {} {} {} {} {} {}",
            size_of::<I>(),
            offset_of!(I, device),
            offset_of!(I, cuda_device_index),
            offset_of!(I, max_length),
            offset_of!(I, batch_tokens),
            offset_of!(I, hidden_size),
            offset_of!(I, num_layers),
            offset_of!(I, vocab_size)
        ),
        [
            CROSSRANK_OK,
            CROSSRANK_ERR_INVALID_ARGUMENT,
            CROSSRANK_ERR_IO,
            CROSSRANK_ERR_MODEL,
            CROSSRANK_ERR_DEVICE,
            CROSSRANK_ERR_INTERNAL,
            CROSSRANK_DEVICE_AUTO,
            CROSSRANK_DEVICE_CPU,
            CROSSRANK_DEVICE_CUDA,
        ]
        .map(|v| v.to_string())
        .join(" "),
        {
            let p = crossrank_model_params_default();
            format!(
                "{} {} {} {} {}",
                p.device, p.cuda_device_index, p.max_length, p.batch_tokens, ABI_VERSION
            )
        },
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

// ---------------------------------------------------------------------------------------
// Rust-side: the extern functions called directly.

fn last_error() -> String {
    let p = crossrank_last_error();
    assert!(!p.is_null(), "no last error");
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn cpu_params() -> crossrank_model_params {
    crossrank_model_params {
        device: CROSSRANK_DEVICE_CPU,
        ..crossrank_model_params_default()
    }
}

fn load_cpu() -> *mut crossrank_model {
    let dir = cstr(fixture_dir().to_str().unwrap());
    let mut model = null_mut();
    let status = unsafe { crossrank_model_load(dir.as_ptr(), &cpu_params(), &mut model) };
    assert_eq!(status, CROSSRANK_OK, "{}", last_error());
    assert!(!model.is_null());
    model
}

/// Owned C strings and the pointer array over them.
struct CStrings {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

fn c_strings<S: AsRef<[u8]>>(items: &[S]) -> CStrings {
    let owned: Vec<CString> = items.iter().map(|s| CString::new(s.as_ref()).unwrap()).collect();
    let ptrs = owned.iter().map(|s| s.as_ptr()).collect();
    CStrings { _owned: owned, ptrs }
}

/// A sentinel-filled output buffer, and a check that it is still untouched.
const SENTINEL: f32 = -1234.5;

fn untouched(v: &[f32]) -> bool {
    v.iter().all(|x| *x == SENTINEL)
}

fn score(model: *mut crossrank_model, pairs: &[(&str, &str)]) -> (crossrank_status, Vec<f32>, Vec<f32>) {
    let q = c_strings(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let d = c_strings(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let mut logits = vec![SENTINEL; pairs.len()];
    let mut scores = vec![SENTINEL; pairs.len()];
    let status = unsafe {
        crossrank_score(
            model,
            pairs.len(),
            q.ptrs.as_ptr(),
            d.ptrs.as_ptr(),
            logits.as_mut_ptr(),
            scores.as_mut_ptr(),
        )
    };
    (status, logits, scores)
}

const PAIRS: [(&str, &str); 3] = [
    ("what is the capital of China?", "Beijing is the capital of China."),
    ("what is the capital of China?", "The giant panda lives in China."),
    ("how to sort in python?", "Use sorted(list) or list.sort()."),
];

#[test]
fn score_and_rank_equal_the_engine() {
    let engine = crossrank::Engine::load(
        &fixture_dir(),
        &crossrank::EngineOptions {
            device: crossrank::Device::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let want = engine.score_pairs(&PAIRS).unwrap();
    let model = load_cpu();
    let (status, logits, scores) = score(model, &PAIRS);
    assert_eq!(status, CROSSRANK_OK);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(logits[i].to_bits(), w.logit.to_bits(), "pair {i}");
        assert_eq!(scores[i].to_bits(), w.score.to_bits(), "pair {i}");
    }

    // Either output may be NULL.
    let q = c_strings(&PAIRS.map(|p| p.0));
    let d = c_strings(&PAIRS.map(|p| p.1));
    let mut only_scores = vec![SENTINEL; 3];
    let status = unsafe {
        crossrank_score(
            model,
            3,
            q.ptrs.as_ptr(),
            d.ptrs.as_ptr(),
            null_mut(),
            only_scores.as_mut_ptr(),
        )
    };
    assert_eq!(status, CROSSRANK_OK);
    assert_eq!(only_scores, scores);
    let status = unsafe { crossrank_score(model, 3, q.ptrs.as_ptr(), d.ptrs.as_ptr(), null_mut(), null_mut()) };
    assert_eq!(status, CROSSRANK_OK);

    let docs = c_strings(&PAIRS.map(|p| p.1));
    let query = cstr(PAIRS[0].0);
    let want = engine.rank(PAIRS[0].0, &PAIRS.map(|p| p.1)).unwrap();
    let mut order = vec![usize::MAX; 3];
    let mut rank_scores = vec![SENTINEL; 3];
    let status = unsafe {
        crossrank_rank(
            model,
            query.as_ptr(),
            3,
            docs.ptrs.as_ptr(),
            order.as_mut_ptr(),
            rank_scores.as_mut_ptr(),
        )
    };
    assert_eq!(status, CROSSRANK_OK);
    assert_eq!(order, want.iter().map(|r| r.index).collect::<Vec<_>>());
    assert_eq!(
        rank_scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|r| r.score.to_bits()).collect::<Vec<_>>()
    );
    let mut order_only = vec![usize::MAX; 3];
    let status = unsafe {
        crossrank_rank(
            model,
            query.as_ptr(),
            3,
            docs.ptrs.as_ptr(),
            order_only.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(status, CROSSRANK_OK);
    assert_eq!(order_only, order);

    let mut info = crossrank_model_info::default();
    assert_eq!(unsafe { crossrank_model_get_info(model, &mut info) }, CROSSRANK_OK);
    assert_eq!(
        info,
        crossrank_model_info {
            device: CROSSRANK_DEVICE_CPU,
            cuda_device_index: -1,
            max_length: engine.max_length() as u32,
            batch_tokens: engine.batch_tokens() as u32,
            hidden_size: engine.config().hidden_size as u32,
            num_layers: engine.config().num_layers as u32,
            vocab_size: engine.config().vocab_size as u32,
        }
    );
    crossrank_model_free(model);
}

#[test]
fn load_errors() {
    let dir = cstr(fixture_dir().to_str().unwrap());
    let sentinel = std::ptr::without_provenance_mut::<crossrank_model>(0x5eed0);
    let mut out = sentinel;
    let load = |path: *const c_char, params: *const crossrank_model_params, out: *mut *mut crossrank_model| unsafe {
        crossrank_model_load(path, params, out)
    };

    let missing = cstr("/nonexistent/crossrank-model");
    assert_eq!(load(missing.as_ptr(), null(), &mut out), CROSSRANK_ERR_MODEL);
    assert!(
        last_error().contains("/nonexistent/crossrank-model"),
        "{}",
        last_error()
    );
    assert_eq!(load(null(), null(), &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert_eq!(last_error(), "model_dir is NULL");
    assert_eq!(load(dir.as_ptr(), null(), null_mut()), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert_eq!(last_error(), "out_model is NULL");
    let bad = CString::new(b"/tmp/\xff".to_vec()).unwrap();
    assert_eq!(load(bad.as_ptr(), null(), &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("not valid UTF-8"));

    let with = |edit: &dyn Fn(&mut crossrank_model_params)| {
        let mut p = cpu_params();
        edit(&mut p);
        p
    };
    let p = with(&|p| p.device = 42);
    assert_eq!(load(dir.as_ptr(), &p, &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("unknown device 42"));
    let p = with(&|p| p.device = -1);
    assert_eq!(load(dir.as_ptr(), &p, &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    let p = with(&|p| {
        p.device = CROSSRANK_DEVICE_CUDA;
        p.cuda_device_index = -1
    });
    assert_eq!(load(dir.as_ptr(), &p, &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("cuda_device_index must be >= 0"));
    let p = with(&|p| p.max_length = 1 << 30);
    assert_eq!(load(dir.as_ptr(), &p, &mut out), CROSSRANK_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("max_position_embeddings"));
    // A directory without a model in it: config.json cannot be read.
    let empty = tempfile::tempdir().unwrap();
    let empty_path = cstr(empty.path().to_str().unwrap());
    assert_eq!(load(empty_path.as_ptr(), &cpu_params(), &mut out), CROSSRANK_ERR_IO);
    assert!(last_error().contains("config.json"), "{}", last_error());
    // A file where the checkpoint should be: a model error, not a crash.
    let broken = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture_dir().join(f), broken.path().join(f)).unwrap();
    }
    std::fs::write(broken.path().join("model.safetensors"), b"not a checkpoint").unwrap();
    let broken_path = cstr(broken.path().to_str().unwrap());
    assert_eq!(load(broken_path.as_ptr(), &cpu_params(), &mut out), CROSSRANK_ERR_MODEL);
    assert!(last_error().contains("model.safetensors"), "{}", last_error());
    assert_eq!(out, sentinel, "a failed load must leave *out_model untouched");

    // CUDA: a device error where there is no usable GPU (or a working model where there is).
    let p = with(&|p| p.device = CROSSRANK_DEVICE_CUDA);
    let mut gpu = null_mut();
    match load(dir.as_ptr(), &p, &mut gpu) {
        CROSSRANK_OK => {
            let mut info = crossrank_model_info::default();
            assert_eq!(unsafe { crossrank_model_get_info(gpu, &mut info) }, CROSSRANK_OK);
            assert_eq!((info.device, info.cuda_device_index), (CROSSRANK_DEVICE_CUDA, 0));
            crossrank_model_free(gpu);
        }
        status => {
            assert_eq!(status, CROSSRANK_ERR_DEVICE, "{}", last_error());
            assert!(gpu.is_null());
        }
    }
    // AUTO always loads: on the GPU when usable, else on the CPU.
    let mut auto = null_mut();
    assert_eq!(load(dir.as_ptr(), null(), &mut auto), CROSSRANK_OK, "{}", last_error());
    let mut info = crossrank_model_info::default();
    assert_eq!(unsafe { crossrank_model_get_info(auto, &mut info) }, CROSSRANK_OK);
    assert!(
        (info.device, info.cuda_device_index) == (CROSSRANK_DEVICE_CPU, -1)
            || (info.device, info.cuda_device_index) == (CROSSRANK_DEVICE_CUDA, 0)
    );
    crossrank_model_free(auto);
}

#[test]
fn score_errors_leave_outputs_untouched() {
    let model = load_cpu();
    let q = c_strings(&["q", "q"]);
    let d = c_strings(&["a document", "another one"]);
    let bad = c_strings(&[b"a document".as_slice(), b"\xe2\x82 truncated euro sign".as_slice()]);
    let mut with_null = c_strings(&["a document", "x"]);
    with_null.ptrs[1] = null();
    let check = |status: crossrank_status, message: &str| {
        assert_eq!(
            status, CROSSRANK_ERR_INVALID_ARGUMENT,
            "expected an error containing `{message}`"
        );
        assert!(
            last_error().contains(message),
            "`{}` does not contain `{message}`",
            last_error()
        );
    };
    let foreign = std::ptr::without_provenance_mut(0x7fff_0000_1230);
    let mut logits = [SENTINEL; 2];
    let mut scores = [SENTINEL; 2];
    unsafe {
        let mut call = |model: *mut crossrank_model, n: usize, q: *const *const c_char, d: *const *const c_char| {
            crossrank_score(model, n, q, d, logits.as_mut_ptr(), scores.as_mut_ptr())
        };
        check(call(null_mut(), 2, q.ptrs.as_ptr(), d.ptrs.as_ptr()), "model is NULL");
        check(
            call(foreign, 2, q.ptrs.as_ptr(), d.ptrs.as_ptr()),
            "is not a live crossrank_model handle",
        );
        check(
            call(model, 2, null(), d.ptrs.as_ptr()),
            "queries is NULL but 2 elements were given",
        );
        check(
            call(model, 2, q.ptrs.as_ptr(), null()),
            "documents is NULL but 2 elements were given",
        );
        check(
            call(model, 2, q.ptrs.as_ptr(), with_null.ptrs.as_ptr()),
            "documents[1] is NULL",
        );
        check(
            call(model, 2, with_null.ptrs.as_ptr(), d.ptrs.as_ptr()),
            "queries[1] is NULL",
        );
        check(
            call(model, 2, q.ptrs.as_ptr(), bad.ptrs.as_ptr()),
            "documents[1] is not valid UTF-8 (invalid byte at offset 0)",
        );
        // An absurd count is refused, not turned into a slice.
        check(
            call(model, usize::MAX, q.ptrs.as_ptr(), d.ptrs.as_ptr()),
            "more than the address space holds",
        );
        // A misaligned output array is refused before anything is computed.
        let mut raw = [0u8; 16];
        let misaligned = raw.as_mut_ptr().add(1).cast::<f32>();
        check(
            crossrank_score(
                model,
                2,
                q.ptrs.as_ptr(),
                d.ptrs.as_ptr(),
                misaligned,
                scores.as_mut_ptr(),
            ),
            "out_logits",
        );
        assert_eq!(raw, [0u8; 16]);
    }
    assert!(untouched(&logits) && untouched(&scores));

    // Rank: the same checks, plus the query.
    let query = cstr("q");
    let mut order = [usize::MAX; 2];
    let mut rank_scores = [SENTINEL; 2];
    unsafe {
        check(
            crossrank_rank(
                model,
                null(),
                2,
                d.ptrs.as_ptr(),
                order.as_mut_ptr(),
                rank_scores.as_mut_ptr(),
            ),
            "query is NULL",
        );
        let bad_query = CString::new(b"\xc3".to_vec()).unwrap();
        check(
            crossrank_rank(
                model,
                bad_query.as_ptr(),
                2,
                d.ptrs.as_ptr(),
                order.as_mut_ptr(),
                rank_scores.as_mut_ptr(),
            ),
            "query is not valid UTF-8",
        );
        check(
            crossrank_rank(
                model,
                query.as_ptr(),
                2,
                bad.ptrs.as_ptr(),
                order.as_mut_ptr(),
                rank_scores.as_mut_ptr(),
            ),
            "documents[1] is not valid UTF-8",
        );
        check(
            crossrank_rank(
                model,
                query.as_ptr(),
                2,
                null(),
                order.as_mut_ptr(),
                rank_scores.as_mut_ptr(),
            ),
            "documents is NULL",
        );
        check(
            crossrank_rank(
                null_mut(),
                query.as_ptr(),
                2,
                d.ptrs.as_ptr(),
                order.as_mut_ptr(),
                rank_scores.as_mut_ptr(),
            ),
            "model is NULL",
        );
    }
    assert_eq!(order, [usize::MAX; 2]);
    assert!(untouched(&rank_scores));

    let mut info = crossrank_model_info::default();
    unsafe {
        check(crossrank_model_get_info(model, null_mut()), "out_info is NULL");
        check(crossrank_model_get_info(null(), &mut info), "model is NULL");
    }
    assert_eq!(info, crossrank_model_info::default());
    crossrank_model_free(model);
}

#[test]
fn zero_pairs_is_ok_and_writes_nothing() {
    let model = load_cpu();
    let mut logits = [SENTINEL; 1];
    let mut scores = [SENTINEL; 1];
    let mut order = [usize::MAX; 1];
    unsafe {
        assert_eq!(
            crossrank_score(model, 0, null(), null(), logits.as_mut_ptr(), scores.as_mut_ptr()),
            CROSSRANK_OK
        );
        assert_eq!(
            crossrank_score(model, 0, null(), null(), null_mut(), null_mut()),
            CROSSRANK_OK
        );
        let query = cstr("q");
        assert_eq!(
            crossrank_rank(
                model,
                query.as_ptr(),
                0,
                null(),
                order.as_mut_ptr(),
                scores.as_mut_ptr()
            ),
            CROSSRANK_OK
        );
        // The handle and the query are still checked.
        assert_eq!(
            crossrank_score(null_mut(), 0, null(), null(), null_mut(), null_mut()),
            CROSSRANK_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            crossrank_rank(model, null(), 0, null(), null_mut(), null_mut()),
            CROSSRANK_ERR_INVALID_ARGUMENT
        );
    }
    assert!(untouched(&logits) && untouched(&scores) && order == [usize::MAX]);
    crossrank_model_free(model);
}

#[test]
fn freed_handles_are_rejected_and_never_reused() {
    let a = load_cpu();
    crossrank_model_free(a);
    let b = load_cpu();
    assert_ne!(a, b, "a handle value was reused");
    let (status, logits, scores) = score(a, &PAIRS);
    assert_eq!(status, CROSSRANK_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("not a live crossrank_model handle"));
    assert!(untouched(&logits) && untouched(&scores));
    let query = cstr("q");
    let mut info = crossrank_model_info::default();
    unsafe {
        assert_eq!(
            crossrank_rank(a, query.as_ptr(), 0, null(), null_mut(), null_mut()),
            CROSSRANK_ERR_INVALID_ARGUMENT
        );
        assert_eq!(crossrank_model_get_info(a, &mut info), CROSSRANK_ERR_INVALID_ARGUMENT);
    }
    // Free: NULL, stale and foreign pointers are no-ops; `b` is unaffected.
    crossrank_model_free(null_mut());
    crossrank_model_free(a);
    let mut local = 0u64;
    crossrank_model_free((&raw mut local).cast());
    assert_eq!(local, 0);
    assert_eq!(score(b, &PAIRS).0, CROSSRANK_OK);
    crossrank_model_free(b);
    assert_eq!(score(b, &PAIRS).0, CROSSRANK_ERR_INVALID_ARGUMENT);
}

/// Handles are sendable between threads in C; this wrapper says so to Rust.
#[derive(Clone, Copy)]
struct Handle(*mut crossrank_model);
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

#[test]
fn concurrent_calls_on_one_model() {
    let model = Handle(load_cpu());
    let (status, want, _) = score(model.0, &PAIRS);
    assert_eq!(status, CROSSRANK_OK);
    std::thread::scope(|s| {
        for t in 0..4 {
            let want = &want;
            s.spawn(move || {
                let model = model;
                for _ in 0..5 {
                    let (status, logits, _) = score(model.0, &PAIRS);
                    assert_eq!(status, CROSSRANK_OK, "thread {t}: {}", last_error());
                    assert_eq!(
                        logits.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    );
                }
            });
        }
    });

    // Freeing while other threads score: every call either completes with the right
    // result or is rejected; nothing crashes.
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let want = &want;
                s.spawn(move || {
                    let model = model;
                    let mut completed = 0;
                    loop {
                        let (status, logits, _) = score(model.0, &PAIRS);
                        if status != CROSSRANK_OK {
                            assert_eq!(status, CROSSRANK_ERR_INVALID_ARGUMENT);
                            return completed;
                        }
                        assert_eq!(&logits, want);
                        completed += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        crossrank_model_free(model.0);
        for w in workers {
            w.join().unwrap();
        }
    });
}

#[test]
fn version_strings() {
    let version = unsafe { CStr::from_ptr(crossrank_version()) }.to_str().unwrap();
    assert_eq!(version, crossrank::VERSION);
    assert_eq!(crossrank_abi_version(), ABI_VERSION);
    let header = std::fs::read_to_string(repo().join("include/crossrank.h")).unwrap();
    assert!(header.contains(&format!("#define CROSSRANK_ABI_VERSION {ABI_VERSION}\n")));
}
