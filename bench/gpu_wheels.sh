#!/usr/bin/env bash
# Fetch the pure-Python wheels a bare GPU machine lacks (it has CuPy, PyTorch+CUDA, NumPy,
# pytest, matplotlib and hypothesis, but no package registry) into .whl/ (git-ignored).
# Run here, with the registry, before bench/gpu_check.sh runs there with .whl carried along.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
rm -f .whl/*.whl
py=${PYTHON:-python3}
common=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform any -d .whl)
for spec in "array-api-compat==1.16.0" "array-api-strict==2.6.1" "tqdm==4.67.1" \
            "safetensors==0.8.0"; do
  "$py" -m pip download -q "${common[@]}" "$spec" 2>&1 | grep -v '^WARNING: Location' || true
done
ls -la .whl
