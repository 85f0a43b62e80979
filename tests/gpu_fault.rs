//! First-contact failure modes on a GPU, in their own test binary (a sticky fault poisons the
//! device's primary context for the rest of the process; tools/gpu-test-runner.sh runs every
//! GPU test in its own process, plain `cargo test -- --ignored` runs this binary separately):
//! - a PTX module the driver's JIT refuses is reported with the JIT's error log;
//! - after a sticky device fault the first error is what the caller sees, and dropping the
//!   device (cuBLAS handle included) does not panic.
//!
//! `cargo test --release --test gpu_fault -- --ignored --test-threads=1 --nocapture`

use std::panic::{catch_unwind, AssertUnwindSafe};

use crossrank::cuda::runtime::load_module;
use crossrank::cuda::{Gpu, KernelOrigin};
use crossrank::Error;
use cudarc::driver::LaunchConfig;
use cudarc::nvrtc::Ptx;

const PTX_HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n";

fn open() -> std::sync::Arc<Gpu> {
    Gpu::new(0, KernelOrigin::Auto).unwrap_or_else(|e| panic!("cannot open cuda:0: {e}"))
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn malformed_ptx_is_reported_with_the_jit_log() {
    let gpu = open();
    let ptx = format!("{PTX_HEADER}.visible .entry broken()\n{{\n    not_an_instruction.u32 %r1;\n    ret;\n}}\n");
    match load_module(gpu.context(), Ptx::from_src(ptx), || {
        "loading a deliberately broken module".into()
    }) {
        Ok(_) => panic!("the driver accepted malformed PTX"),
        Err(Error::Device(msg)) => {
            eprintln!("{msg}");
            assert!(
                msg.starts_with("loading a deliberately broken module: CUDA_ERROR_"),
                "{msg}"
            );
            assert!(msg.contains("JIT log: "), "no JIT log in: {msg}");
        }
        Err(other) => panic!("expected a device error, got {other:?}"),
    }
    // The context is still usable: a refused module is not a sticky error.
    gpu.synchronize().expect("the device works after a refused module");
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn a_sticky_fault_reports_the_first_error_and_drops_cleanly() {
    let gpu = open();
    let ptx = format!("{PTX_HEADER}.visible .entry always_traps()\n{{\n    trap;\n    ret;\n}}\n");
    let module = load_module(gpu.context(), Ptx::from_src(ptx), || "loading the trap module".into()).unwrap();
    let trap = module.load_function("always_traps").unwrap();
    let stream = gpu.stream().clone();
    // No arguments: the kernel takes none.
    let mut launch = stream.launch_builder(&trap);
    // SAFETY: a kernel without parameters; it faults on purpose.
    let launched = unsafe { launch.launch(LaunchConfig::for_num_elems(1)) };
    let first = match launched {
        Err(e) => format!("{e:?}"),
        Ok(_) => match gpu.synchronize() {
            Err(Error::Device(msg)) => msg,
            other => panic!("a trapping kernel synchronized as {other:?}"),
        },
    };
    eprintln!("first error: {first}");
    assert!(
        first.contains("ILLEGAL_INSTRUCTION") || first.contains("LAUNCH_FAILED") || first.contains("ASSERT"),
        "{first}"
    );
    // Later calls fail too (sticky), with a device error rather than a panic.
    assert!(matches!(gpu.synchronize(), Err(Error::Device(_))));
    drop(module);
    drop(trap);
    drop(stream);
    // The drop chain (cuBLAS handle, stream, context) must not panic after the fault.
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(gpu)));
    assert!(dropped.is_ok(), "dropping the GPU after a sticky fault panicked");
}
