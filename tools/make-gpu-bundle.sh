#!/usr/bin/env bash
# tools/make-gpu-bundle.sh: build here everything the GPU machine needs to check the CUDA
# backend (it has no Rust toolchain and no network), into gpu-bundle/ (git-ignored):
#
#   gpu-bundle/bin/crossrank             release binary, stripped (embedded PTX: KERNEL_PTX)
#   gpu-bundle/tests/gpu_kernels         release test binaries, stripped
#   gpu-bundle/tests/gpu_model
#   gpu-bundle/bench/gpu_ops             the criterion GPU benchmarks (benches/gpu_ops.rs), stripped
#   gpu-bundle/wheels/                   transformers 5.24.0 (native GTE) and regex wheels for the
#                                        PyTorch peer (the GPU machine has transformers 5.17);
#                                        cached in .whl/ (git-ignored), fetched with pip once
#   gpu-bundle/fixtures/tiny/            copy of tests/fixtures/tiny (if it exists)
#   gpu-bundle/assets/xlmr-tokenizer.json.gz   the full XLM-R tokenizer (real-size checkpoint)
#   gpu-bundle/tools/                    gpu-run.sh and the Python tools
#   gpu-bundle/gpu-run.sh                the run script (same as tools/gpu-run.sh)
#   gpu-bundle/BUILD-INFO.txt            versions, checksums, sizes
#
# Then, on the GPU machine (from the repo root, the bundle carried):
#   run(command="bash tools/gpu-run.sh", carry=["gpu-bundle"], timeout_s=540)
#
# The bundle plus the working tree must stay under the 64 MiB a device call carries; this
# script fails above 48 MiB for the bundle alone.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUNDLE="$ROOT/gpu-bundle"
LIMIT_MIB=48
GPU_TESTS=(gpu_kernels gpu_model)
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

step "cargo build --release --bin crossrank"
cargo build --release --bin crossrank

step "cargo test --release --no-run (${GPU_TESTS[*]})"
test_args=()
for t in "${GPU_TESTS[@]}"; do test_args+=(--test "$t"); done
json=$(cargo test --release --no-run "${test_args[@]}" --message-format=json)
# One line per test target: "<name> <executable>".
executables=$(python3 -c '
import json, sys
wanted = set(sys.argv[1:])
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in wanted \
            and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
' "${GPU_TESTS[@]}" <<<"$json")
if [[ $(wc -l <<<"$executables") -ne ${#GPU_TESTS[@]} ]]; then
    echo "error: expected ${#GPU_TESTS[@]} test executables, cargo reported:" >&2
    echo "$executables" >&2
    exit 1
fi

step "cargo bench --no-run --bench $GPU_BENCH"
json=$(cargo bench --no-run --bench "$GPU_BENCH" --message-format=json)
bench_exe=$(python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1] \
            and "bench" in m["target"]["kind"]:
        print(m["executable"])
' "$GPU_BENCH" <<<"$json")
if [[ -z $bench_exe || ! -x $bench_exe ]]; then
    echo "error: cargo did not report the $GPU_BENCH bench executable" >&2
    exit 1
fi

# Wheels: from the cache, else downloaded once (pip download, no dependencies).
mkdir -p "$WHEEL_CACHE"
wheel_files=()
for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}
    version=${spec##*==}
    found=$(find "$WHEEL_CACHE" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" | head -n 1)
    if [[ -z $found ]]; then
        step "pip download $spec"
        if [[ $name == regex ]]; then
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
                -d "$WHEEL_CACHE" "$spec" || true
        else
            python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEEL_CACHE" "$spec" || true
        fi
        found=$(find "$WHEEL_CACHE" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" | head -n 1)
    fi
    if [[ -n $found ]]; then
        wheel_files+=("$found")
    else
        step "WARNING: no wheel for $spec: the PyTorch peer step will fail on the GPU"
    fi
done

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/bench" "$BUNDLE/wheels" "$BUNDLE/fixtures" "$BUNDLE/assets" \
    "$BUNDLE/tools"

step "stripping binaries"
strip -o "$BUNDLE/bin/crossrank" target/release/crossrank
while read -r name exe; do
    strip -o "$BUNDLE/tests/$name" "$exe"
done <<<"$executables"
strip -o "$BUNDLE/bench/$GPU_BENCH" "$bench_exe"
(( ${#wheel_files[@]} )) && cp "${wheel_files[@]}" "$BUNDLE/wheels/"

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

cp tools/gpu-run.sh "$BUNDLE/gpu-run.sh"
for f in tools/gpu-run.sh tools/make_fixture.py tools/gte_reference.py tools/gen_pairs.py tools/bench_pytorch.py; do
    [[ -f $f ]] && cp "$f" "$BUNDLE/tools/"
done

{
    echo "built: $(date -u +%FT%TZ) on $(hostname)"
    echo "crossrank: $("$BUNDLE/bin/crossrank" --version)"
    echo "rustc: $(rustc -V)"
    echo "tiny fixture: $([[ -d $BUNDLE/fixtures/tiny ]] && echo yes || echo MISSING)"
    echo "tokenizer: ${tokenizer:-MISSING}"
    echo "wheels: $(cd "$BUNDLE/wheels" && ls ./*.whl 2>/dev/null | tr '\n' ' ')"
    echo "sha256:"
    (cd "$BUNDLE" && sha256sum bin/* tests/* bench/* | sed 's/^/  /')
} >"$BUNDLE/BUILD-INFO.txt"

bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(( (bytes + (1 << 20) - 1) >> 20 ))
step "contents:"
(cd "$BUNDLE" && du -ah . | sort -k2 | sed 's/^/    /')
step "bundle size: $bytes bytes (${mib} MiB; limit ${LIMIT_MIB} MiB)"
if (( mib > LIMIT_MIB )); then
    echo "error: gpu-bundle is ${mib} MiB, over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
step "done: run(command=\"bash tools/gpu-run.sh\", carry=[\"gpu-bundle\"], timeout_s=540)"
