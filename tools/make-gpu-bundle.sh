#!/usr/bin/env bash
# tools/make-gpu-bundle.sh: build here everything the GPU machine needs to check the CUDA
# backend (it has no Rust toolchain and no network), into gpu-bundle/ (git-ignored):
#
#   gpu-bundle/bin/crossrank             release binary, stripped (embedded PTX: KERNEL_PTX)
#   gpu-bundle/tests/gpu_kernels         release test binaries, stripped
#   gpu-bundle/tests/gpu_model
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

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/fixtures" "$BUNDLE/assets" "$BUNDLE/tools"

step "stripping binaries"
strip -o "$BUNDLE/bin/crossrank" target/release/crossrank
while read -r name exe; do
    strip -o "$BUNDLE/tests/$name" "$exe"
done <<<"$executables"

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
for f in tools/gpu-run.sh tools/make_fixture.py tools/gte_reference.py tools/gen_pairs.py; do
    [[ -f $f ]] && cp "$f" "$BUNDLE/tools/"
done

{
    echo "built: $(date -u +%FT%TZ) on $(hostname)"
    echo "crossrank: $("$BUNDLE/bin/crossrank" --version)"
    echo "rustc: $(rustc -V)"
    echo "tiny fixture: $([[ -d $BUNDLE/fixtures/tiny ]] && echo yes || echo MISSING)"
    echo "tokenizer: ${tokenizer:-MISSING}"
    echo "sha256:"
    (cd "$BUNDLE" && sha256sum bin/* tests/* | sed 's/^/  /')
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
