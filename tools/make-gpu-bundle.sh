#!/usr/bin/env bash
# tools/make-gpu-bundle.sh: build here everything the GPU machine needs to check the CUDA
# backend (it has no Rust toolchain and no network), into gpu-bundle/ (git-ignored):
#
#   gpu-bundle/bin/crossrank             release binary, stripped (embedded nvcc PTX: required)
#   gpu-bundle/tests/gpu_kernels         release test binaries, stripped
#   gpu-bundle/tests/gpu_model
#   gpu-bundle/tests/gpu_fault
#   gpu-bundle/bench/gpu_ops             the criterion GPU benchmarks (benches/gpu_ops.rs), stripped
#   gpu-bundle/wheels/                   transformers 5.24.0 (native GTE) and regex wheels for the
#                                        PyTorch peer (the GPU machine has transformers 5.17);
#                                        cached in .whl/ (git-ignored), fetched with pip once
#   gpu-bundle/fixtures/tiny/            copy of tests/fixtures/tiny (if it exists)
#   gpu-bundle/assets/xlmr-tokenizer.json.gz   the full XLM-R tokenizer (real-size checkpoint)
#   gpu-bundle/tools/                    the GPU scripts and the Python tools they call
#   gpu-bundle/BUILD-INFO.txt            commit, versions, kernel origin, checksums, sizes
#
# Then, on the GPU machine (from the repo root, the bundle carried):
#   run(command="bash tools/gpu-check.sh", carry=["gpu-bundle"], timeout_s=480)   # correctness
#   run(command="bash tools/gpu-perf.sh", carry=["gpu-bundle"], timeout_s=420)    # performance
#
# The bundle refuses to build when the binary does not embed nvcc PTX (`crossrank --version`
# then says NVRTC): the GPU run would silently test NVRTC-compiled kernels instead.
#
#   tools/make-gpu-bundle.sh                  the release bundle, into gpu-bundle/
#   tools/make-gpu-bundle.sh --debug DIR      a dry-run bundle of the debug artifacts (symlinks,
#                                             no wheels, no strip, no size limit, NVRTC allowed):
#                                             what tools/gpu-dry-run.sh (CI) runs the scripts on
#   tools/make-gpu-bundle.sh --check-ptx EXE  only the embedded-PTX check of a crossrank binary
#
# The bundle plus the working tree must stay under the 64 MiB a device call carries; this
# script fails above 48 MiB for the bundle alone.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUNDLE="$ROOT/gpu-bundle"
DEBUG=0

# check_ptx EXE: the binary must say its kernels are nvcc PTX ("CUDA kernels: nvcc 13.0.88
# (compute_80 PTX)"), not NVRTC at run time.
check_ptx() {
    local version
    version=$("$1" --version 2>&1) || { echo "error: $1 --version failed: $version" >&2; return 1; }
    if [[ $version =~ CUDA\ kernels:\ nvcc\ [0-9.]+\ \((compute|sm)_[0-9]+a?\ PTX\) ]]; then
        version=${version#*CUDA kernels: }
        echo "[make-gpu-bundle] embedded PTX: ${version%)}"
        return 0
    fi
    echo "error: $1 embeds no nvcc PTX (\`$version\`): the GPU run would test NVRTC-compiled kernels." >&2
    echo "       install nvcc (tools/install-nvcc.sh, or NVCC=/path/to/nvcc) and rebuild: touch build.rs" >&2
    return 1
}

case "${1:-}" in
    --check-ptx) check_ptx "$2"; exit $? ;;
    --debug) DEBUG=1; BUNDLE=$(mkdir -p "$2" && cd "$2" && pwd) ;;
    "") ;;
    *) echo "usage: $0 [--debug DIR | --check-ptx EXE]" >&2; exit 2 ;;
esac
LIMIT_MIB=48
GPU_TESTS=(gpu_kernels gpu_model gpu_fault)
GPU_BENCH=gpu_ops
# What tools/bench_pytorch.py needs beyond the GPU machine's packages (KINDS.md lists torch
# 2.11, tokenizers 0.23.2, huggingface_hub 1.33, safetensors 0.8, typer, tqdm, pyyaml, numpy:
# all within transformers 5.24.0's requirements; regex's version there is not listed, and
# transformers checks it at import, so a recent one travels too). Pure-Python transformers;
# regex is a CPython 3.12 manylinux wheel (the GPU machine's python3 is 3.12).
WHEELS=(transformers==5.24.0 regex==2026.11.19)
WHEEL_CACHE="$ROOT/.whl"

step() { echo "[make-gpu-bundle] $*"; }

if [[ $(uname -m) != x86_64 ]]; then
    echo "error: the GPU machine is x86-64; build the bundle on an x86-64 host" >&2
    exit 1
fi

# artifact KIND NAME: the executable cargo reported for target NAME of KIND (bin, test, bench)
# in $json (cargo --message-format=json; fresh artifacts are reported too).
artifact() {
    python3 -c '
import json, sys
kind, name = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name \
            and kind in m["target"]["kind"]:
        print(m["executable"])
' "$1" "$2" <<<"$json" | tail -n 1
}

test_args=()
for t in "${GPU_TESTS[@]}"; do test_args+=(--test "$t"); done
if (( DEBUG )); then
    # One `cargo test --no-run` (the test profile and features `cargo test` already built: a
    # plain `cargo build` would resolve other features and recompile the dependencies); the
    # integration tests build the crossrank binary, the bench target builds as a test.
    step "cargo test --no-run ${test_args[*]} --bench $GPU_BENCH"
    json=$(cargo test --no-run "${test_args[@]}" --bench "$GPU_BENCH" --message-format=json)
    crossrank_exe=$(artifact bin crossrank)
    bench_exe=$(artifact bench "$GPU_BENCH")
else
    step "cargo build --release --bin crossrank"
    json=$(cargo build --release --bin crossrank --message-format=json)
    crossrank_exe=$(artifact bin crossrank)
    step "cargo bench --no-run --bench $GPU_BENCH"
    json=$(cargo bench --no-run --bench "$GPU_BENCH" --message-format=json)
    bench_exe=$(artifact bench "$GPU_BENCH")
    step "cargo test --release --no-run (${GPU_TESTS[*]})"
    json=$(cargo test --release --no-run "${test_args[@]}" --message-format=json)
fi
[[ -n $crossrank_exe && -x $crossrank_exe ]] || { echo "error: cargo did not report the crossrank binary" >&2; exit 1; }
if ! check_ptx "$crossrank_exe"; then
    (( DEBUG )) || exit 1
    step "WARNING: dry-run bundle without embedded PTX"
fi
# One line per test target: "<name> <executable>".
executables=$(for t in "${GPU_TESTS[@]}"; do echo "$t $(artifact test "$t")"; done)
while read -r name exe; do
    [[ -n $exe && -x $exe ]] || { echo "error: cargo did not report the $name test executable" >&2; exit 1; }
done <<<"$executables"
if [[ -z $bench_exe || ! -x $bench_exe ]]; then
    echo "error: cargo did not report the $GPU_BENCH bench executable" >&2
    exit 1
fi

# Wheels: from the cache, else downloaded once (pip download, no dependencies).
wheel_files=()
(( DEBUG )) && WHEELS=()
(( DEBUG )) || mkdir -p "$WHEEL_CACHE"
for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}
    version=${spec##*==}
    found=$(find "$WHEEL_CACHE" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" -print -quit)
    if [[ -z $found ]]; then
        step "pip download $spec"
        if [[ $name == regex ]]; then
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
                -d "$WHEEL_CACHE" "$spec" || true
        else
            python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEEL_CACHE" "$spec" || true
        fi
        found=$(find "$WHEEL_CACHE" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" -print -quit)
    fi
    if [[ -n $found ]]; then
        wheel_files+=("$found")
    else
        step "WARNING: no wheel for $spec: the PyTorch peer step will fail on the GPU"
    fi
done

[[ $BUNDLE != "$ROOT" && $BUNDLE != / ]] || { echo "error: refusing to replace $BUNDLE" >&2; exit 1; }
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/bench" "$BUNDLE/wheels" "$BUNDLE/fixtures" "$BUNDLE/assets" \
    "$BUNDLE/tools"

if (( DEBUG )); then
    step "linking the debug binaries"
    ln -s "$crossrank_exe" "$BUNDLE/bin/crossrank"
    while read -r name exe; do ln -s "$exe" "$BUNDLE/tests/$name"; done <<<"$executables"
    ln -s "$bench_exe" "$BUNDLE/bench/$GPU_BENCH"
else
    step "stripping binaries"
    strip -o "$BUNDLE/bin/crossrank" "$crossrank_exe"
    while read -r name exe; do
        strip -o "$BUNDLE/tests/$name" "$exe"
    done <<<"$executables"
    strip -o "$BUNDLE/bench/$GPU_BENCH" "$bench_exe"
fi
if (( ${#wheel_files[@]} )); then cp "${wheel_files[@]}" "$BUNDLE/wheels/"; fi

if [[ -f tests/fixtures/tiny/config.json ]]; then
    cp -r tests/fixtures/tiny "$BUNDLE/fixtures/tiny"
else
    step "WARNING: tests/fixtures/tiny does not exist yet: the tiny-fixture tests and verify will fail on the GPU"
fi

tokenizer=""
for cand in "${CROSSRANK_XLMR_TOKENIZER:-}" shared/assets/xlmr-tokenizer.json ../shared/assets/xlmr-tokenizer.json; do
    if [[ -n $cand && -f $cand ]]; then tokenizer=$cand; break; fi
done
if [[ -n $tokenizer ]]; then
    gzip -9 -c "$tokenizer" >"$BUNDLE/assets/xlmr-tokenizer.json.gz"
else
    step "WARNING: no xlmr-tokenizer.json (set CROSSRANK_XLMR_TOKENIZER): no real-size checkpoint on the GPU"
fi

for f in tools/gpu-check.sh tools/gpu-perf.sh tools/gpu-lib.sh tools/gpu-test-runner.sh tools/gpu_gen.py \
    tools/torch_drift.py tools/gte_reference.py tools/gen_pairs.py tools/bench_pytorch.py; do
    cp "$f" "$BUNDLE/tools/"
done

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
{
    echo "commit: $commit"
    echo "built: $(date -u +%FT%TZ) on $(hostname)$( (( DEBUG )) && echo ' (debug dry-run bundle)')"
    echo "crossrank: $("$BUNDLE/bin/crossrank" --version)"
    echo "rustc: $(rustc -V)"
    echo "tiny fixture: $([[ -d $BUNDLE/fixtures/tiny ]] && echo yes || echo MISSING)"
    echo "tokenizer: ${tokenizer:-MISSING}"
    echo "wheels: $(cd "$BUNDLE/wheels" && ls ./*.whl 2>/dev/null | tr '\n' ' ')"
    echo "sha256:"
    (cd "$BUNDLE" && sha256sum bin/* tests/* bench/* | sed 's/^/  /')
} >"$BUNDLE/BUILD-INFO.txt"
if (( DEBUG )); then
    step "done: dry-run bundle in $BUNDLE"
    exit 0
fi

bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(( (bytes + (1 << 20) - 1) >> 20 ))
step "contents:"
(cd "$BUNDLE" && du -ah . | sort -k2 | sed 's/^/    /')
step "bundle size: $bytes bytes (${mib} MiB; limit ${LIMIT_MIB} MiB)"
if (( mib > LIMIT_MIB )); then
    echo "error: gpu-bundle is ${mib} MiB, over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
step "done. On the GPU machine:"
step "  run(command=\"bash tools/gpu-check.sh\", carry=[\"gpu-bundle\"], timeout_s=480)"
step "  run(command=\"bash tools/gpu-perf.sh\", carry=[\"gpu-bundle\"], timeout_s=420)"
