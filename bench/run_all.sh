#!/usr/bin/env bash
# Run the budget-path benchmarks and write one markdown table: bench/out/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
out=bench/out/results.md
{ echo "# Paymaster benchmarks"; echo; echo "$(date -u +%F) on $(nproc) CPUs, $(python -c 'import platform; print(platform.python_version())')"; } > "$out"
python bench/overhead.py --tasks "${TASKS:-2000}" --markdown "$out"
python bench/concurrency.py --tasks "${CONCURRENT_TASKS:-1000}" --markdown "$out"
python bench/faults.py --tasks "${FAULT_TASKS:-500}" --markdown "$out"
echo "wrote $out"
