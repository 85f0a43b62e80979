# shellcheck shell=bash
# tools/gpu-lib.sh: what tools/gpu-check.sh and tools/gpu-perf.sh share (sourced, not run):
# setup on the GPU machine, time-limited steps, the device facts, the summary table, and
# packing $OUT into at most 4 files.
#
# Knobs (environment):
#   CROSSRANK_BUNDLE   the carried bundle (tools/make-gpu-bundle.sh), default gpu-bundle
#   GPU_BUDGET         seconds for all steps of one script (each script sets its default)
#   GPU_STEPS          comma-separated step names to run (a targeted rerun); default: all
#   REAL_MODEL         an existing checkpoint directory instead of generating the real-size
#                      one (the dry run passes tests/fixtures/tiny)
#   REAL_LAYERS        layers of the generated checkpoint (default 12)
# The summary's last lines are a table `step status seconds exit note`; the script's exit
# status is non-zero when any step FAILed or timed out (SKIP alone does not fail a run).

set -u -o pipefail

gpu_setup() {
    SCRIPT_NAME=$1
    BUDGET=${GPU_BUDGET:-$2}
    BUNDLE="${CROSSRANK_BUNDLE:-gpu-bundle}"
    OUT="${OUT:-$PWD/gpu-out}"
    mkdir -p "$OUT"
    START=$(date +%s)
    NPROC=$(nproc 2>/dev/null || echo 4)
    BIN="$BUNDLE/bin/crossrank"
    WORK="${TMPDIR:-/tmp}/crossrank-$SCRIPT_NAME"
    LOGS="$WORK/logs"  # everything here goes into the one archive
    rm -rf "$LOGS"
    mkdir -p "$WORK" "$LOGS"
    SUMMARY=()
    HEADLINES=()
    INFO="$LOGS/info.txt"
    : >"$INFO"
    find_cuda_libraries
    export RUST_BACKTRACE=1 CROSSRANK_REQUIRE_GPU=1

    TINY="tests/fixtures/tiny"
    [[ -f $TINY/config.json ]] || TINY="$BUNDLE/fixtures/tiny"
    export CROSSRANK_TINY_FIXTURE="$PWD/$TINY"
    TOKENIZER="$WORK/xlmr-tokenizer.json"
    rm -f "$TOKENIZER"
    if [[ -f $BUNDLE/assets/xlmr-tokenizer.json.gz ]]; then
        gzip -dc "$BUNDLE/assets/xlmr-tokenizer.json.gz" >"$TOKENIZER"
    elif [[ -f $BUNDLE/assets/xlmr-tokenizer.json ]]; then
        cp "$BUNDLE/assets/xlmr-tokenizer.json" "$TOKENIZER"
    elif [[ -n ${REAL_MODEL:-} && -f $REAL_MODEL/tokenizer.json ]]; then
        cp "$REAL_MODEL/tokenizer.json" "$TOKENIZER"
    fi
    # Shared by both scripts: gpu-perf.sh run right after gpu-check.sh on the same (still
    # warm) machine reuses the checkpoint instead of generating it again.
    REAL="${REAL_MODEL:-${TMPDIR:-/tmp}/crossrank-real-model}"
    export BUNDLE OUT NPROC BIN WORK LOGS REAL TOKENIZER SCRIPT_NAME START
}

log() { echo "[$SCRIPT_NAME $(( $(date +%s) - START ))s] $*"; }

# A tool of the working tree, else the bundle's copy.
tool() { local t; for t in "tools/$1" "$BUNDLE/tools/$1"; do [[ -f $t ]] && { echo "$t"; return; }; done; }

# want STEP: whether GPU_STEPS selects this step (all when GPU_STEPS is empty).
want() { [[ -z ${GPU_STEPS:-} || ",$GPU_STEPS," == *",$1,"* ]]; }

# The CUDA libraries: libcuda from the driver, libcublas/libcublasLt (and libnvrtc for the
# NVRTC test) from the toolkit or the pip wheels; their directories go on LD_LIBRARY_PATH.
# Versioned names only: an unversioned libcublas.so may belong to another CUDA major.
find_cuda_libraries() {
    local libs=(libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13) lib hit d path name
    declare -A dir=()
    for lib in "${libs[@]}"; do
        hit=$(ldconfig -p 2>/dev/null | awk -v n="$lib" '$1 == n { print $NF; exit }')
        [[ -n $hit ]] && dir[$lib]=$(dirname "$hit")
    done
    local missing=()
    for lib in "${libs[@]}"; do [[ -z ${dir[$lib]:-} ]] && missing+=(-o -name "$lib"); done
    if (( ${#missing[@]} )); then
        # One search for every library ldconfig does not know (first hit per name wins).
        while read -r path; do
            name=$(basename "$path")
            [[ -z ${dir[$name]:-} ]] && dir[$name]=$(dirname "$path")
        done < <(timeout 30 find /usr/local /usr/lib /usr/lib64 /opt \( -false "${missing[@]}" \) \
                     \( -type f -o -type l \) 2>/dev/null)
    fi
    local dirs=""
    for lib in "${libs[@]}"; do
        d=${dir[$lib]:-}
        echo "$lib: ${d:-NOT FOUND}" >>"$INFO"
        [[ -n $d && ":$dirs:" != *":$d:"* ]] && dirs="$dirs:$d"
    done
    export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# Seconds this step may take: its cap, or what is left of the budget minus a reserve.
step_limit() {
    local cap=$1 left=$(( BUDGET - ($(date +%s) - START) - 5 ))
    (( left < cap )) && cap=$left
    echo "$cap"
}

# Why a failed step failed, from its log: the no-device cases by name.
failure_note() {
    local logf=$1 from=$2
    local text
    text=$(tail -n "+$from" "$logf" 2>/dev/null)
    if grep -qE "no CUDA driver found|reports no GPU|no CUDA-capable device|CUDA_ERROR_NO_DEVICE|no CUDA device" <<<"$text"; then
        echo "no CUDA device"
    elif grep -qE "cuBLAS not found" <<<"$text"; then
        echo "no cuBLAS"
    elif grep -qE "unbound variable|command not found" <<<"$text"; then
        echo "script bug: $(grep -m1 -oE "[A-Za-z_0-9]+: (unbound variable|command not found)" <<<"$text")"
    elif grep -qE "No module named|cannot import name" <<<"$text"; then
        grep -m1 -oE "No module named '[^']*'|cannot import name '[^']*'" <<<"$text"
    fi
}

add_row() { SUMMARY+=("$(printf '%-13s %-8s %5s  %-5s %s' "$1" "$2" "$3" "$4" "${5:-}")"); }

# run_step NAME CAP LOGFILE CMD...: runs CMD under a time limit, appends its output to
# LOGFILE, records PASS/FAIL/TIMEOUT/SKIP with the duration and a note. Returns CMD's status.
run_step() {
    local name=$1 cap=$2 logf=$3
    shift 3
    if ! want "$name"; then
        return 98
    fi
    local limit
    limit=$(step_limit "$cap")
    if (( limit < 10 )); then
        add_row "$name" SKIP - - "time budget spent"
        log "$name: skipped (time budget spent)"
        return 99
    fi
    log "$name: start (limit ${limit}s) -> ${logf#"$WORK"/}"
    touch "$logf"
    local from
    from=$(( $(wc -l <"$logf") + 1 ))
    echo "===== $name: $* (limit ${limit}s)" >>"$logf"
    if declare -F "$1" >/dev/null; then
        # A shell function: run it in a child bash that gets its definition and the helpers
        # (timeout needs a program; it signals the whole process group on expiry).
        set -- bash -c "$(declare -f "$1" tool want log); set -u -o pipefail; \"\$@\"" _ "$@"
    fi
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" >>"$logf" 2>&1
    rc=$?
    local dt=$(( SECONDS - t0 )) status=PASS note=""
    if (( rc == 124 || rc == 137 )); then status=TIMEOUT; elif (( rc != 0 )); then status=FAIL; fi
    [[ $status != PASS ]] && note=$(failure_note "$logf" "$from")
    echo "===== $name: $status (exit $rc, ${dt}s)" >>"$logf"
    add_row "$name" "$status" "${dt}s" "$rc" "$note"
    log "$name: $status (exit $rc, ${dt}s)${note:+ $note}"
    if [[ $status != PASS ]]; then
        echo "----- last lines of ${logf#"$WORK"/}:"
        tail -n 15 "$logf" | cut -c1-300
        echo "-----"
    fi
    return $rc
}

skip() { want "$1" || return 0; add_row "$1" SKIP - - "$2"; log "$1: skipped ($2)"; }

# Appends a note to the last summary row (e.g. a test count, a throughput).
note_last() { (( ${#SUMMARY[@]} )) && SUMMARY[-1]="${SUMMARY[-1]} $*"; }

# The device facts every report carries: name, SMs, clocks, memory, driver, the kernels'
# origin, the bundle's commit.
gpu_info() {
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cpus: $NPROC  $(grep -m1 'model name' /proc/cpuinfo)"
    grep -vE '^  [0-9a-f]{64} ' "$BUNDLE/BUILD-INFO.txt" 2>/dev/null
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    "$BIN" --version || return 1
    command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: no CUDA device"; return 1; }
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,clocks.sm,compute_cap \
        --format=csv || return 1
    nvidia-smi -L
    nvidia-smi -q 2>/dev/null | grep -m1 -E "CUDA Version|Product Name"
    python3 - <<'PY' 2>/dev/null || true
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"torch {torch.__version__}: {p.name}, {p.multi_processor_count} SMs, sm_{p.major}{p.minor}, "
          f"{p.total_memory / 2**30:.0f} GiB")
PY
}

# One line for the report header: "NVIDIA H200, 132 SMs, 1980 MHz max SM, driver 580.159.04".
device_line() {
    local smi sms
    smi=$(nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
    sms=$(grep -m1 -oE '[0-9]+ SMs' "$INFO" 2>/dev/null)
    if [[ -n $smi ]]; then
        IFS=',' read -r n sm mem drv <<<"$smi"
        echo "device: ${n}, ${sms:-? SMs}, max clocks SM${sm} / mem${mem}, driver${drv}"
    else
        echo "device: none (no nvidia-smi / no CUDA device)"
    fi
}

# A short slug of the GPU name for the results folder: "h200", "h100-80gb-hbm3", "none".
gpu_slug() {
    local n
    n=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
    n=${n#NVIDIA }
    n=$(tr '[:upper:]' '[:lower:]' <<<"${n:-none}" | tr -cs 'a-z0-9' '-')
    n=${n%-}
    echo "${n:-none}"
}

# finish: the summary (printed last), $OUT packed into <= 4 files, the exit status.
#   $OUT/<script>-summary.txt   the summary below
#   $OUT/<script>-results.json  the machine-readable results the script collected ($WORK/results.json)
#   $OUT/<script>-logs.tar.gz   every log and JSON of the run ($WORK/logs)
finish() {
    local name=$SCRIPT_NAME rc=0 day slug commit
    # A loop, not `printf | grep -q`: under pipefail, grep -q exiting at the first match can
    # SIGPIPE the printf and turn a found FAIL into a false "no FAIL" (it did, on CI).
    local row
    for row in "${SUMMARY[@]}"; do
        [[ $row =~ ^[a-z0-9_]+\ +(FAIL|TIMEOUT)\  ]] && rc=1
    done
    (( ${#SUMMARY[@]} )) || rc=1
    day=$(date -u +%F)
    slug=$(gpu_slug)
    commit=$(sed -n 's/^commit: //p' "$BUNDLE/BUILD-INFO.txt" 2>/dev/null | head -n 1)
    [[ -f $WORK/results.json ]] && cp "$WORK/results.json" "$LOGS/results.json"
    {
        echo "crossrank $name: $(date -u +%FT%TZ), $(( $(date +%s) - START )) s of a ${BUDGET}s budget"
        echo "commit: ${commit:-unknown (no BUILD-INFO.txt)}; command: ${GPU_COMMAND:-bash tools/$name.sh}${GPU_STEPS:+ (GPU_STEPS=$GPU_STEPS)}"
        device_line
        (( ${#HEADLINES[@]} )) && printf '%s\n' "${HEADLINES[@]}"
        echo
        printf '%-13s %-8s %5s  %-5s %s\n' step status time exit note
        printf '%s\n' "${SUMMARY[@]}"
        echo
        echo "result: $([[ $rc == 0 ]] && echo PASS || echo FAIL)"
        echo "keep the raw results (next session, from the repository root; FILES_AT = the run's files_at):"
        echo "  mkdir -p benches/results/$day-$slug/$name && tar -xzf \$FILES_AT/$name-logs.tar.gz -C benches/results/$day-$slug/$name && cp \$FILES_AT/$name-summary.txt \$FILES_AT/$name-results.json benches/results/$day-$slug/$name/"
    } >"$LOGS/$name-summary.txt"
    cp "$LOGS/$name-summary.txt" "$OUT/$name-summary.txt"
    if [[ -f $WORK/results.json ]]; then cp "$WORK/results.json" "$OUT/$name-results.json"; else echo '{}' >"$OUT/$name-results.json"; fi
    tar -czf "$OUT/$name-logs.tar.gz" -C "$LOGS" . 2>/dev/null || echo "archive failed"
    echo
    cat "$OUT/$name-summary.txt"
    return $rc
}

# transformers >= 5.24 has native GTE; the GPU machine's (5.17) does not: install the carried
# wheels into $WORK/site (no network, no dependencies resolved) and put it first on
# PYTHONPATH. Returns non-zero (with the reason in $LOGS/python.log) when it cannot.
setup_transformers() {
    local logf="$LOGS/python.log"
    {
        if ! python3 -c "import torch" 2>/dev/null; then
            echo "no torch in python3"
            return 1
        fi
        if ! python3 -c "from transformers import GteForSequenceClassification" 2>/dev/null; then
            local wheels=("$BUNDLE"/wheels/*.whl)
            [[ -e ${wheels[0]} ]] || { echo "no native GTE in this transformers and no $BUNDLE/wheels"; return 1; }
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target "$WORK/site" "${wheels[@]}" || return 1
            export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
        fi
        python3 -c "import torch, transformers, tokenizers; from transformers import GteForSequenceClassification; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"
    } >>"$logf" 2>&1
}

# `background NAME CMD...` starts a generator under a time limit (BG_LIMIT, default 150 s);
# `wait_background NAME` waits for it and records its row.
background() {
    local name=$1
    shift
    BG_T0[$name]=$SECONDS
    timeout -k 10 "${BG_LIMIT:-150}" "$@" >"$LOGS/$name.log" 2>&1 &
    BG_PID[$name]=$!
    log "$name: started in the background (pid ${BG_PID[$name]})"
}
wait_background() {
    local name=$1 rc dt
    [[ -n ${BG_PID[$name]:-} ]] || return 1
    wait "${BG_PID[$name]}"
    rc=$?
    unset "BG_PID[$name]"
    dt=$(( SECONDS - BG_T0[$name] ))
    if (( rc == 0 )); then
        add_row "$name" PASS bg 0 "$(tail -n 1 "$LOGS/$name.log" | cut -c1-80) (ready after ${dt}s)"
    else
        add_row "$name" "$( (( rc == 124 || rc == 137 )) && echo TIMEOUT || echo FAIL)" bg "$rc" "after ${dt}s"
        tail -n 10 "$LOGS/$name.log"
    fi
    log "$name: exit $rc after ${dt}s"
    return $rc
}
declare -A BG_PID=() BG_T0=()

# results.json: every JSON file of $LOGS, by file stem (unreadable ones as null).
merge_results() {
    python3 - "$LOGS" "$WORK/results.json" <<'PY' || echo '{}' >"$WORK/results.json"
import json, os, sys
logs, out = sys.argv[1], sys.argv[2]
merged = {}
for f in sorted(os.listdir(logs)):
    if f.endswith(".json") and f != "results.json":
        try:
            merged[f[:-5]] = json.load(open(os.path.join(logs, f)))
        except (OSError, ValueError):
            merged[f[:-5]] = None
json.dump(merged, open(out, "w"), indent=2)
PY
}

# start_checkpoint: the real-size checkpoint in the background, unless REAL_MODEL names one or
# an earlier run on this machine completed it ($REAL/.complete).
start_checkpoint() {
    if [[ -n ${REAL_MODEL:-} ]]; then
        log "ckpt: using REAL_MODEL=$REAL_MODEL"
    elif [[ -f $REAL/.complete ]]; then
        log "ckpt: reusing $REAL (completed by an earlier run on this machine)"
    elif [[ -s $TOKENIZER && -n ${GEN:-} ]]; then
        rm -rf "$REAL"
        # shellcheck disable=SC2016  # the single-quoted script gets its values as "$@"
        BG_LIMIT=150 background ckpt bash -c 'python3 "$1" checkpoint "$2" "$3" --layers "$4" && touch "$2/.complete"' \
            _ "$GEN" "$REAL" "$TOKENIZER" "${REAL_LAYERS:-12}"
    else
        skip ckpt "no tokenizer in $BUNDLE/assets or no gpu_gen.py"
    fi
}

# wait_checkpoint: 0 when the checkpoint is ready (waits for the background job).
wait_checkpoint() {
    if [[ -n ${BG_PID[ckpt]:-} ]]; then
        wait_background ckpt || return 1
    fi
    [[ -f $REAL/config.json && ( -n ${REAL_MODEL:-} || -f $REAL/.complete ) ]]
}
