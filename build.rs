// build.rs: turns kernels/*.cu into PTX with nvcc when one is available, and always generates
// $OUT_DIR/kernels.rs, which the crate pulls in with
//     include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
// and which defines KERNEL_BUILD_INFO, KERNEL_ARCH, KERNEL_PTX and KERNEL_SOURCES.
//
// Rules (see also kernels/common.cuh):
// - This script never fails because nvcc is missing: then KERNEL_PTX is empty, one
//   cargo:warning says the kernels will be compiled by NVRTC at run time, and
//   KERNEL_SOURCES (always generated) carries each kernel with its local "*.cuh" includes
//   inlined, so NVRTC needs no include path besides its built-in cuda_fp16.h.
// - When nvcc IS found, a kernel that fails to compile fails the build with nvcc's output:
//   a broken kernel must be loud, not silently deferred to run time.
// - No --use_fast_math: the kernels need accurate erff / sincosf / expf and opt into fast
//   intrinsics explicitly where safe.
// - std only (no build-dependencies).
//
// nvcc discovery, first hit wins:
//   1. $NVCC                       (path to the nvcc binary)
//   2. $CUDA_HOME/bin/nvcc
//   3. $CUDA_PATH/bin/nvcc
//   4. <crate>/.nvcc/bin/nvcc      (tools/install-nvcc.sh; skipped if CROSSRANK_NO_LOCAL_NVCC=1)
//   5. nvcc on $PATH
// CROSSRANK_NO_NVCC=1 skips all of them (forces the NVRTC path, for testing it).
// An nvcc newer than 13.0 is skipped with a warning (the GPU machine's driver cannot load its
// PTX) unless CROSSRANK_ALLOW_NEWER_NVCC=1.
//
// Target: $CROSSRANK_CUDA_ARCH, default compute_80 (PTX the driver JITs on A100 and H100).
// Accepted spellings: compute_80, sm_80, 80, sm_90a, compute_90a, 90a. It is normalized to
// the virtual architecture (compute_XX[a]) because PTX is what we embed.
// $NVCC_CCBIN, if set, is passed to nvcc as -ccbin (host compiler).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_ARCH: &str = "compute_80";
/// Newest nvcc (major, minor) whose PTX the target driver is known to load.
const MAX_NVCC_VERSION: (u32, u32) = (13, 0);

const WATCHED_ENV: &[&str] = &[
    "NVCC",
    "CUDA_HOME",
    "CUDA_PATH",
    "CROSSRANK_CUDA_ARCH",
    "PATH",
    "NVCC_CCBIN",
    "CROSSRANK_NO_LOCAL_NVCC",
    "CROSSRANK_NO_NVCC",
    "CROSSRANK_ALLOW_NEWER_NVCC",
];

struct Nvcc {
    path: PathBuf,
    /// e.g. "13.0.88"
    version: String,
}

fn main() {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let out_dir = match env::var_os("OUT_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // Only possible when run outside cargo; nothing sensible to generate.
            println!("cargo:warning=OUT_DIR is not set; not generating kernels.rs");
            return;
        }
    };
    let kernels_dir = manifest_dir.join("kernels");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    for var in WATCHED_ENV {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let (cu_files, cuh_files) = list_kernel_files(&kernels_dir);
    for f in cu_files.iter().chain(cuh_files.iter()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let arch = target_arch();

    // NVRTC sources: always generated, so the run-time fallback is there whatever happens.
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    for cu in &cu_files {
        let stem = file_stem(cu);
        let text = match inline_local_includes(cu, &kernels_dir) {
            Ok(t) => t,
            Err(e) => fail(&format!("cannot prepare NVRTC source for {}: {e}", cu.display())),
        };
        let dst = out_dir.join(format!("{stem}.nvrtc.cu"));
        write_if_changed(&dst, &text);
        sources.push((stem, dst));
    }

    let mut ptx: Vec<(String, PathBuf)> = Vec::new();
    let build_info = match find_nvcc(&manifest_dir) {
        Some(nvcc) => {
            println!("cargo:rerun-if-changed={}", nvcc.path.display());
            compile_all(&nvcc, &arch, &cu_files, &kernels_dir, &out_dir, &mut ptx);
            format!("nvcc {} ({} PTX)", nvcc.version, arch)
        }
        None => {
            println!(
                "cargo:warning=nvcc not found: the CUDA kernels will be compiled by NVRTC at run \
                 time (tools/install-nvcc.sh installs a local nvcc to build PTX instead)"
            );
            "no nvcc at build time: NVRTC at run time".to_string()
        }
    };
    // A local toolkit installed later should trigger a rebuild. Only watch it if it exists:
    // cargo re-runs the script on every build for a watched path that is missing.
    let stamp = manifest_dir.join(".nvcc").join(".crossrank-nvcc-stamp");
    if stamp.is_file() {
        println!("cargo:rerun-if-changed={}", stamp.display());
    }

    let generated = render_kernels_rs(&build_info, &arch, &ptx, &sources);
    write_if_changed(&out_dir.join("kernels.rs"), &generated);
}

/// Print a message and stop the build (used only for real errors, never for a missing nvcc).
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Sorted (*.cu, *.cuh) lists of kernels/ (not recursive). Missing dir: both empty.
fn list_kernel_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut cu = Vec::new();
    let mut cuh = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.flatten() {
            let p = entry.path();
            if !p.is_file() {
                continue;
            }
            match p.extension().and_then(|e| e.to_str()) {
                Some("cu") => {
                    let stem = file_stem(&p);
                    let valid = !stem.is_empty()
                        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !stem.starts_with(|c: char| c.is_ascii_digit());
                    if valid {
                        cu.push(p);
                    } else {
                        println!(
                            "cargo:warning=skipping {}: kernel file stems must be identifiers",
                            p.display()
                        );
                    }
                }
                Some("cuh") => cuh.push(p),
                _ => {}
            }
        }
    }
    cu.sort();
    cuh.sort();
    (cu, cuh)
}

fn env_flag(name: &str) -> bool {
    matches!(env::var(name).as_deref(), Ok("1") | Ok("true") | Ok("yes"))
}

/// CROSSRANK_CUDA_ARCH normalized to a virtual architecture, e.g. "compute_80", "compute_90a".
fn target_arch() -> String {
    let raw = match env::var("CROSSRANK_CUDA_ARCH") {
        Ok(s) if !s.trim().is_empty() => s.trim().to_ascii_lowercase(),
        _ => return DEFAULT_ARCH.to_string(),
    };
    let num = raw
        .strip_prefix("compute_")
        .or_else(|| raw.strip_prefix("sm_"))
        .unwrap_or(&raw);
    let digits: String = num.chars().take_while(|c| c.is_ascii_digit()).collect();
    let suffix = &num[digits.len()..];
    let ok = digits.len() >= 2 && (suffix.is_empty() || suffix == "a" || suffix == "f");
    if !ok {
        println!(
            "cargo:warning=CROSSRANK_CUDA_ARCH={raw:?} not understood (want e.g. compute_80, \
             sm_90a, 80); using {DEFAULT_ARCH}"
        );
        return DEFAULT_ARCH.to_string();
    }
    if digits.parse::<u32>().map_or(true, |v| v < 80) {
        println!(
            "cargo:warning=CROSSRANK_CUDA_ARCH={raw:?}: the attention kernel needs sm_80+ \
             (cp.async, ldmatrix, mma.sync m16n8k16)"
        );
    }
    format!("compute_{digits}{suffix}")
}

/// Candidate nvcc paths in priority order, each with where it came from.
fn nvcc_candidates(manifest_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut c = Vec::new();
    if let Some(p) = env::var_os("NVCC").filter(|p| !p.is_empty()) {
        c.push((PathBuf::from(p), "$NVCC".to_string()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env::var_os(var).filter(|p| !p.is_empty()) {
            c.push((PathBuf::from(root).join("bin").join("nvcc"), format!("${var}/bin/nvcc")));
        }
    }
    if !env_flag("CROSSRANK_NO_LOCAL_NVCC") {
        c.push((
            manifest_dir.join(".nvcc").join("bin").join("nvcc"),
            ".nvcc/bin/nvcc".to_string(),
        ));
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            c.push((dir.join("nvcc"), "nvcc on PATH".to_string()));
        }
    }
    c
}

fn find_nvcc(manifest_dir: &Path) -> Option<Nvcc> {
    if env_flag("CROSSRANK_NO_NVCC") {
        return None;
    }
    for (path, origin) in nvcc_candidates(manifest_dir) {
        if !path.is_file() {
            if origin == "$NVCC" {
                println!("cargo:warning=NVCC={} is not a file; ignoring it", path.display());
            }
            continue;
        }
        let out = match Command::new(&path).arg("--version").output() {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                println!(
                    "cargo:warning={} ({origin}) failed `--version` ({}); ignoring it",
                    path.display(),
                    o.status
                );
                continue;
            }
            Err(e) => {
                println!(
                    "cargo:warning=cannot run {} ({origin}): {e}; ignoring it",
                    path.display()
                );
                continue;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_nvcc_version(&text).unwrap_or_else(|| "unknown".to_string());
        if let Some((maj, min)) = major_minor(&version) {
            if (maj, min) > MAX_NVCC_VERSION && !env_flag("CROSSRANK_ALLOW_NEWER_NVCC") {
                println!(
                    "cargo:warning=skipping nvcc {version} at {} ({origin}): newer than {}.{}, \
                     its PTX may not load on the target driver (CROSSRANK_ALLOW_NEWER_NVCC=1 \
                     to use it anyway)",
                    path.display(),
                    MAX_NVCC_VERSION.0,
                    MAX_NVCC_VERSION.1
                );
                continue;
            }
        }
        return Some(Nvcc { path, version });
    }
    None
}

/// "Cuda compilation tools, release 13.0, V13.0.88" -> "13.0.88" (falls back to "13.0").
fn parse_nvcc_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("release"))?;
    if let Some(v) = line.split_whitespace().last().and_then(|w| w.strip_prefix('V')) {
        if v.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Some(v.to_string());
        }
    }
    let after = line.split("release").nth(1)?;
    let v: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split('.');
    let maj = it.next()?.parse().ok()?;
    let min = it.next()?.parse().ok()?;
    Some((maj, min))
}

/// Compile every kernel to PTX (in parallel). Any failure stops the build with nvcc's output.
fn compile_all(
    nvcc: &Nvcc,
    arch: &str,
    cu_files: &[PathBuf],
    kernels_dir: &Path,
    out_dir: &Path,
    ptx: &mut Vec<(String, PathBuf)>,
) {
    let ccbin = env::var_os("NVCC_CCBIN").filter(|s| !s.is_empty());
    let results: Vec<(String, PathBuf, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cu_files
            .iter()
            .map(|cu| {
                let ccbin = ccbin.clone();
                scope.spawn(move || {
                    let stem = file_stem(cu);
                    let dst = out_dir.join(format!("{stem}.ptx"));
                    let mut cmd = Command::new(&nvcc.path);
                    cmd.arg("-O3")
                        .arg("--ptx")
                        .arg(format!("-arch={arch}"))
                        .arg("-lineinfo")
                        .arg("-std=c++17")
                        .arg("-I")
                        .arg(kernels_dir);
                    if let Some(cc) = &ccbin {
                        cmd.arg("-ccbin").arg(cc);
                    }
                    cmd.arg("-o").arg(&dst).arg(cu);
                    let res = match cmd.output() {
                        Ok(o) if o.status.success() => {
                            if fs::metadata(&dst).map_or(0, |m| m.len()) == 0 {
                                Err(format!("{cmd:?}\nnvcc succeeded but wrote no PTX"))
                            } else {
                                // Surface nvcc warnings without failing.
                                let err = String::from_utf8_lossy(&o.stderr);
                                for line in err.lines().filter(|l| !l.trim().is_empty()) {
                                    println!("cargo:warning={stem}.cu: {line}");
                                }
                                Ok(())
                            }
                        }
                        Ok(o) => Err(format!(
                            "{cmd:?}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                            o.status,
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        )),
                        Err(e) => Err(format!("{cmd:?}\ncannot run nvcc: {e}")),
                    };
                    (stem, dst, res)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(_) => (String::new(), PathBuf::new(), Err("nvcc worker thread panicked".into())),
            })
            .collect()
    });

    let mut failed = Vec::new();
    for (stem, dst, res) in results {
        match res {
            Ok(()) => ptx.push((stem, dst)),
            Err(msg) => failed.push((stem, msg)),
        }
    }
    if !failed.is_empty() {
        for (stem, msg) in &failed {
            eprintln!("==== nvcc failed for kernels/{stem}.cu ====\n{msg}");
        }
        let names: Vec<&str> = failed.iter().map(|(s, _)| s.as_str()).collect();
        fail(&format!(
            "CUDA kernel compilation failed ({}); nvcc {} at {}",
            names.join(", "),
            nvcc.version,
            nvcc.path.display()
        ));
    }
}

/// The kernel source with every `#include "local.cuh"` replaced by that file's contents
/// (recursively, each file at most once, `#pragma once` dropped) and `#line` markers so
/// NVRTC diagnostics still name the original file and line. <system> includes stay.
fn inline_local_includes(path: &Path, kernels_dir: &Path) -> Result<String, String> {
    let mut out = String::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    inline_rec(path, kernels_dir, &mut seen, &mut out, 0)?;
    Ok(out)
}

fn inline_rec(
    path: &Path,
    kernels_dir: &Path,
    seen: &mut Vec<PathBuf>,
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err("include nesting deeper than 32".into());
    }
    let canon = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    seen.push(canon);
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(out, "#line 1 \"{name}\"");
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#pragma") && t.split_whitespace().nth(1) == Some("once") {
            out.push('\n'); // keep line numbers aligned
            continue;
        }
        if let Some(inc) = local_include_target(t) {
            let base = path.parent().unwrap_or(kernels_dir);
            let candidates = [base.join(&inc), kernels_dir.join(&inc)];
            let found = candidates.iter().find(|p| p.is_file()).cloned();
            let Some(inc_path) = found else {
                return Err(format!("{}:{}: include \"{inc}\" not found", path.display(), i + 1));
            };
            let inc_canon = fs::canonicalize(&inc_path).unwrap_or_else(|_| inc_path.clone());
            if seen.contains(&inc_canon) {
                let _ = writeln!(out, "// (inlined above: {inc})");
            } else {
                let _ = writeln!(out, "// ---- begin inlined {inc} ----");
                inline_rec(&inc_path, kernels_dir, seen, out, depth + 1)?;
                let _ = writeln!(out, "// ---- end inlined {inc} ----");
                let _ = writeln!(out, "#line {} \"{name}\"", i + 2);
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(())
}

/// `#include "x.cuh"` -> Some("x.cuh"); `#include <...>` and anything else -> None.
fn local_include_target(trimmed: &str) -> Option<String> {
    let rest = trimmed.strip_prefix('#')?.trim_start();
    let rest = rest.strip_prefix("include")?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

fn render_kernels_rs(build_info: &str, arch: &str, ptx: &[(String, PathBuf)], sources: &[(String, PathBuf)]) -> String {
    let mut s = String::new();
    s.push_str("// @generated by build.rs from kernels/*.cu. Do not edit.\n\n");
    s.push_str(
        "/// How the kernels were built, e.g. \"nvcc 13.0.88 (compute_80 PTX)\" or \"no nvcc at \
         build time: NVRTC at run time\".\n",
    );
    let _ = writeln!(s, "pub const KERNEL_BUILD_INFO: &str = {build_info:?};\n");
    s.push_str(
        "/// Target (virtual) architecture the PTX was built for and the NVRTC fallback should \
         use, e.g. \"compute_80\".\n",
    );
    let _ = writeln!(s, "pub const KERNEL_ARCH: &str = {arch:?};\n");
    s.push_str(
        "/// (module name = kernels/*.cu file stem, PTX text) for every kernel file; empty when \
         nvcc was not found at build time.\n",
    );
    s.push_str("pub const KERNEL_PTX: &[(&str, &str)] = &[\n");
    for (stem, path) in ptx {
        let file = format!("/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let _ = writeln!(s, "    ({stem:?}, include_str!(concat!(env!(\"OUT_DIR\"), {file:?}))),");
    }
    s.push_str("];\n\n");
    s.push_str(
        "/// (module name, self-contained CUDA source with local #includes inlined) for every \
         kernel file: input for the NVRTC fallback (only <cuda_fp16.h> remains to resolve).\n",
    );
    s.push_str("pub const KERNEL_SOURCES: &[(&str, &str)] = &[\n");
    for (stem, path) in sources {
        let file = format!("/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let _ = writeln!(s, "    ({stem:?}, include_str!(concat!(env!(\"OUT_DIR\"), {file:?}))),");
    }
    s.push_str("];\n");
    s
}

/// Write only when the content differs, so unchanged outputs keep their mtime.
fn write_if_changed(path: &Path, content: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return;
    }
    if let Err(e) = fs::write(path, content) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}
