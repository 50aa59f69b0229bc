#!/usr/bin/env bash
# One prepared GPU check for nnx on a bare CUDA machine without a package registry.
#   here:  bash bench/gpu_wheels.sh                  (fills .whl/ with the missing wheels)
#   there: bash bench/gpu_check.sh OUT_DIR            (from the repository root, .whl/ carried)
# In under 8 minutes it prints the GPU, driver and library versions; runs the whole test
# suite on cupy, numpy and torch (CUDA); runs the training benchmark (cupy, numpy, PyTorch
# CUDA and CPU) for MLP, LeNet-5 and the wide CNN at batch 128 and 512; trains LeNet-5 with
# `nnx train --backend cupy`; and writes everything to OUT_DIR as JSON and logs.
set -uo pipefail
OUT=${1:?usage: bash bench/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
t_start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t_start )) s)"; }

step "install nnx and the carried wheels (no network)"
# The wheels go to SITE; nnx is laid out as it installs (backends/ as nnx.backends) in PKG,
# and the repository is copied to WORK with the same layout, where everything runs, so
# neither the checkout's nnx/ (which has no backends/ inside) nor a top-level `backends`
# is ever imported.
SITE=/tmp/nnx-gpu-site PKG=/tmp/nnx-gpu-pkg WORK=/tmp/nnx-gpu-work
rm -rf "$SITE" "$PKG" "$WORK" && mkdir -p "$SITE" "$PKG" "$WORK"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || echo "WARNING: wheel install failed"
else
  echo "WARNING: no .whl/ folder (run bench/gpu_wheels.sh here first); relying on what is installed"
fi
cp -r nnx "$PKG/nnx" && rm -rf "$PKG/nnx/backends" && cp -r backends "$PKG/nnx/backends"
cp -r nnx backends bench tests scripts pyproject.toml README.md "$WORK/"
rm -rf "$WORK/nnx/backends" && cp -r backends "$WORK/nnx/backends"
export PYTHONPATH="$PKG:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$WORK"
python3 -c "import nnx, nnx.backends; print('nnx', nnx.__version__, 'from', nnx.__file__)"

step "versions"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/versions.json"
import json, platform
out = {"python": platform.python_version()}
for mod in ("numpy", "cupy", "torch", "array_api_compat", "array_api_strict", "pytest"):
    try:
        out[mod] = __import__(mod).__version__
    except Exception as exc:  # noqa: BLE001
        out[mod] = f"missing: {exc}"
import nnx
out["nnx_available_backends"] = nnx.available_backends()
try:
    b = nnx.set_backend("cupy")
    out["cupy_backend"] = b.versions()
except Exception as exc:  # noqa: BLE001
    out["cupy_backend"] = f"unavailable: {exc}"
try:
    import torch
    out["torch_cuda"] = torch.version.cuda
    out["torch_gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as exc:  # noqa: BLE001
    out["torch_cuda"] = f"error: {exc}"
print(json.dumps(out, indent=1))
PY

step "test suite on cupy, numpy, torch (CUDA)"
NNX_TEST_BACKENDS=cupy,numpy,torch timeout 180 python3 -m pytest -q -rs -p no:cacheprovider \
  -m "not slow" --junitxml="$OUT/pytest.xml" tests 2>&1 | tail -n 60 | tee "$OUT/pytest_tail.txt"
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/pytest_tail.txt"

step "training benchmark (cupy, numpy, PyTorch CUDA and CPU), batch 128 and 512"
timeout 230 python3 -m bench --models MLP,LeNet5,WideCNN --batches 128,512 \
  --backends cupy,numpy --torch cuda,cpu --rounds 2 --steps 15 --max-time 3 \
  --no-seed-conv --out "$OUT/bench.json" --table 2>&1 | tee "$OUT/bench_table.txt"
echo "bench exit: ${PIPESTATUS[0]}"

step "nnx train --backend cupy (LeNet-5, bundled sample, default recipe)"
t0=$(date +%s.%N)
timeout 150 python3 -m nnx train --backend cupy --out "$OUT/run" --no-progress 2>&1 \
  | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
t1=$(date +%s.%N)
python3 -m nnx evaluate "$OUT/run/best.safetensors" --backend cupy 2>&1 | tee "$OUT/evaluate.txt"
python3 - "$OUT" "$rc" "$t0" "$t1" <<'PY'
import json, sys, pathlib
out, rc, t0, t1 = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
summary = {"train_exit": rc, "train_seconds": round(t1 - t0, 1)}
hist = out / "run" / "history.json"
if hist.is_file():
    epochs = json.loads(hist.read_text())["epochs"]
    summary["best_val_acc"] = max(e["val_acc"] for e in epochs)
    summary["epoch_seconds"] = [round(e["seconds"], 2) for e in epochs]
ev = (out / "evaluate.txt").read_text() if (out / "evaluate.txt").is_file() else ""
summary["evaluate"] = ev.strip().splitlines()[:2]
(out / "train_summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
rm -rf "$OUT/run/last.safetensors"   # keep what comes back small

step "done in $(( $(date +%s) - t_start )) s"
