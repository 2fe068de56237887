#!/usr/bin/env bash
# One-shot script for a lent GPU machine: real-NVML discovery vs nvidia-smi (read-only).
# Wheels for packages the machine lacks travel in .whl/ (see README "GPU check").
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
out="${OUT:-/tmp/gpu-check}"; mkdir -p "$out"
nvidia-smi -L
nvidia-smi -q -x > "$out/nvidia-smi-q.xml"
nvidia-smi topo -m > "$out/topo.txt" 2>&1; cat "$out/topo.txt"
python3 -m gpudra discover --backend nvml | tee "$out/discover.txt"
python3 -m gpudra discover --backend nvml -o json > "$out/discover.json"
python3 tests/gpu/gpu_check.py 2>&1 | tee "$out/gpu-check.txt"
exit "${PIPESTATUS[0]}"
