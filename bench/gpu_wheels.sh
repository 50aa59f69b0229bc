#!/usr/bin/env bash
# Fetch the wheels a bare GPU machine lacks (it has CuPy, PyTorch+CUDA, NumPy, pytest,
# matplotlib and hypothesis, but no package registry) into .whl/ (git-ignored), where
# bench/gpu_check.sh installs them from, offline. Run here, with the registry:
#   bash bench/gpu_wheels.sh                 nnx's pure-Python runtime and test wheels (~1.5 MB)
#   NNX_GPU_CTK=13 bash bench/gpu_wheels.sh  also CUDA 13's NVRTC and runtime (~58 MB), for a
#                                            CuPy that imports but cannot compile its kernels
# and carry .whl along (the device machine takes 64 MiB of carried files in all).
# The list below is also what tests/test_gpu_check_script.py builds from this environment.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
rm -f .whl/*.whl
py=${PYTHON:-python3}
common=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64
        --platform manylinux2010_x86_64 --platform any -d .whl)
specs=("array-api-compat==1.16.0" "array-api-strict==2.6.1" "tqdm==4.67.1" "safetensors==0.8.0"
       "threadpoolctl==3.8.0")
case ${NNX_GPU_CTK:-} in
  "") ;;
  12) specs+=("nvidia-cuda-nvrtc-cu12==12.*" "nvidia-cuda-runtime-cu12==12.*") ;;
  13) specs+=("nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*") ;;
  *) echo "gpu_wheels: NNX_GPU_CTK must be 12 or 13, got ${NNX_GPU_CTK}" >&2; exit 2 ;;
esac
for spec in "${specs[@]}"; do
  "$py" -m pip download -q "${common[@]}" "$spec" 2>&1 | grep -v '^WARNING: Location' || true
done
ls -la .whl
total=$(du -sm .whl | cut -f1)
missing=$(( ${#specs[@]} - $(ls .whl/*.whl | wc -l) ))
[ "$missing" -le 0 ] || { echo "gpu_wheels: $missing of ${#specs[@]} wheels could not be downloaded" >&2; exit 1; }
[ "$total" -lt 62 ] || echo "gpu_wheels: warning: .whl holds $total MB, near the 64 MiB a device run carries" >&2
