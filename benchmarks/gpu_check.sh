#!/usr/bin/env bash
# Everything that needs a GPU in one run (at most ~8 minutes on one card): one Markdown table and
# a JSON in OUT_DIR. See benchmarks/gpu_check.py; exits 2 on a machine without CUDA.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: benchmarks/gpu_check.sh OUT_DIR [--budget SECONDS]" >&2
    exit 64
fi
cd "$(dirname "$0")/.."
exec python -m benchmarks.gpu_check "$@"
