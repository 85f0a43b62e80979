#!/usr/bin/env bash
# The Python package's tests: builds and installs the wheel exactly as a user does
# (`pip install ./python`, maturin from PyPI as the build backend) into a virtual environment,
# installs the test dependencies (pytest, numpy, pyarrow, pandas, Ray Data), and runs
# python/tests against the committed tiny fixture and the CLI.
#
#   tools/test-python.sh            # venv in .venv (git-ignored); $PYTHON picks the interpreter
#
# Fails when pytest fails, collects nothing (exit code 5), or skips the tests CI relies on
# (the Ray cluster test, the CLI comparisons), so a missing dependency cannot pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
venv="${CROSSRANK_VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet pytest numpy pyarrow pandas tqdm "ray[data]"
# The wheel: the root crate and python/ compiled by maturin (release profile, python/target).
# --no-deps: its one dependency (numpy) is installed above; --force-reinstall: rebuilt every run.
"$py" -m pip install --quiet --force-reinstall --no-deps ./python

# The CLI the tests compare scores with. Built as `cargo test` builds it (same features, same
# target/debug), so after tools/test.sh's `cargo test` step this compiles nothing.
cargo test --locked --quiet --no-run --test cli
export CROSSRANK_CLI="$PWD/target/debug/crossrank"

report="$(mktemp -d)/pytest.xml"
set +e
"$py" -m pytest python/tests -q -rs -p no:cacheprovider --junitxml="$report"
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "tools/test-python.sh: pytest failed (exit $status; 5 means no tests were collected)" >&2
  exit 1
fi
"$py" - "$report" <<'PY'
import sys
import xml.etree.ElementTree as ET

cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
ran, skipped = set(), set()
for case in cases:
    (skipped if case.find("skipped") is not None else ran).add(case.get("name"))
required = {"test_ray_dataset_matches_cli", "test_scores_bit_equal_to_cli", "test_arrow_table_round_trip",
            "test_two_threads_share_one_model", "test_no_memory_growth_over_repeated_calls"}
missing = sorted(required - ran)
if len(ran) < 20 or missing:
    sys.exit(f"tools/test-python.sh: only {len(ran)} tests ran; required but skipped or absent: {missing}")
print(f"tools/test-python.sh: {len(ran)} tests passed, {len(skipped)} skipped")
PY
