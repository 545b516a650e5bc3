#!/usr/bin/env bash
# Create `.venv-bench`, the environment of the TRL comparison (benchmarks/trl_vs_globe.py).
#
#   bash benchmarks/setup_trl_env.sh              # then: .venv-bench/bin/python benchmarks/trl_vs_globe.py
#   PYTHON=python3.12 bash benchmarks/setup_trl_env.sh
#
# TRL is installed here only, never into the project's .venv. Order matters: the CPU torch first,
# pinned (an unpinned torch would pull a multi-GB CUDA build), then the project with its `bench`
# extra (trl) under the same pin. The resolver picks the newest trl that accepts the project's
# transformers range; the versions that resolved are printed at the end (docs/benchmark_trl.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${BENCH_VENV:-.venv-bench}"
TORCH_VERSION="2.13.0"
start=$(date +%s)

"$PYTHON" -m venv --clear "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==$TORCH_VERSION"
"$PY" -m pip install -q -e '.[bench]' "torch==$TORCH_VERSION"

"$PY" - <<'PYEOF'
import torch
import transformers
import trl
import lightning

print(f"torch {torch.__version__} | transformers {transformers.__version__} | trl {trl.__version__} | lightning {lightning.__version__}")
PYEOF
echo "benchmark environment ready in $VENV after $(( $(date +%s) - start )) s"
