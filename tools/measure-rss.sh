#!/usr/bin/env bash
# Peak memory of a long `crossrank score` run: generates N pairs (default 1,000,000) with
# tools/gen_pairs.py, scores them on the CPU with the tiny fixture model, and reports the
# peak RSS (from /usr/bin/time -v, else by polling /proc) and the wall time. The target is
# well under 1 GiB whatever N is: memory is bounded by the pipeline's window and channels.
#
#   tools/measure-rss.sh [--n N] [--model DIR] [--keep DIR] [--parquet] [-- extra crossrank score args]
#
# --parquet: the pairs go in as a Parquet file and come out as a directory of Parquet parts.
# Environment: PYTHON (default /opt/crtools/bin/python when present, else python3; needs
# numpy), PARQUET_PYTHON (for --parquet: a Python with pyarrow, default $PYTHON),
# CROSSRANK (default target/release/crossrank, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

n=1000000 model=tests/fixtures/tiny keep="" parquet=""
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --n) n=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --parquet) parquet=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /opt/crtools/bin/python ]]; then PYTHON=/opt/crtools/bin/python; else PYTHON=python3; fi
fi
bin=${CROSSRANK:-target/release/crossrank}
[[ -x $bin ]] || cargo build --release --locked

work=${keep:-$(mktemp -d)}
mkdir -p "$work"
[[ -n $keep ]] || trap 'rm -rf "$work"' EXIT
pairs=$work/pairs.jsonl
if [[ ! -s $pairs ]]; then
  echo "generating $n pairs..." >&2
  "$PYTHON" tools/gen_pairs.py --n "$n" --seed 0 --out "$pairs" >&2
fi
echo "input: $(wc -l < "$pairs") lines, $(du -h "$pairs" | cut -f1)" >&2
input=$pairs output=$work/scored.jsonl
if [[ -n $parquet ]]; then
  input=$work/pairs.parquet output=$work/scored.parquet
  if [[ ! -s $input ]]; then
    "${PARQUET_PYTHON:-$PYTHON}" -c "import sys, pyarrow.json as j, pyarrow.parquet as pq
pq.write_table(j.read_json(sys.argv[1]), sys.argv[2], row_group_size=65536)" "$pairs" "$input"
  fi
  echo "input: $(du -h "$input" | cut -f1) Parquet" >&2
  rm -rf "$output"
fi

cmd=("$bin" score --device cpu --model "$model" -i "$input" -o "$output" "${extra[@]}")
start=$(date +%s.%N)
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -v "${cmd[@]}" 2> "$work/time.txt" || { cat "$work/time.txt" >&2; exit 1; }
  peak_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")
  grep -E "^crossrank:" "$work/time.txt" | tail -2 >&2 || true
else
  "${cmd[@]}" 2> "$work/stderr.txt" &
  pid=$!
  peak_kb=0
  while kill -0 "$pid" 2>/dev/null; do
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [[ -n $hwm && $hwm -gt $peak_kb ]] && peak_kb=$hwm
    sleep 0.2
  done
  wait "$pid"
fi
end=$(date +%s.%N)
if [[ -n $parquet ]]; then
  lines=$("${PARQUET_PYTHON:-$PYTHON}" -c "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)" "$output")
else
  lines=$(wc -l < "$output")
fi
awk -v kb="$peak_kb" -v s="$start" -v e="$end" -v n="$lines" 'BEGIN {
  printf "scored %d pairs: peak RSS %.1f MiB, wall %.1f s (%.0f pairs/s)\n", n, kb / 1024, e - s, n / (e - s)
}'
