#!/usr/bin/env bash
# One prepared GPU check for nnx on a bare CUDA machine without a package registry.
#   here:  bash bench/gpu_wheels.sh            (fills .whl/ with the wheels that machine lacks)
#   there: bash bench/gpu_check.sh OUT_DIR      (from anywhere; .whl/ carried along)
# Without the wheels (or when array_api_compat cannot be imported after installing them) it
# stops at once with one line and exit status 3. Otherwise, in this order, each step under
# `timeout -s INT` (a cut pytest or benchmark still prints and writes its summary):
#   versions      GPU, driver, libraries, why CuPy can or cannot run      (versions.json)
#   train         a short `nnx train` on CuPy (NumPy when CuPy cannot run), then `nnx
#                 evaluate`; warms CuPy's kernel cache (CUPY_CACHE_DIR, made writable)
#   layer_tests   the per-layer tests in float32 on cupy, numpy and torch  (layers.xml)
#   bench         one round of the benchmark against PyTorch               (bench.json)
#   full_suite    the whole non-slow test suite with the time left          (pytest.xml)
# The whole run takes under 6 minutes (NNX_GPU_CHECK_BUDGET=330 s for installation and
# steps; the full suite gets what is left), so a 15-minute device budget leaves room to run it
# twice. OUT_DIR/summary.json is rewritten
# atomically after every step and is valid JSON at every moment; OUT_DIR/gpu_check.log has
# everything printed. NNX_GPU_CHECK_FAST=1 shrinks every step (tests run it on a CPU);
# NNX_GPU_WHEELS=DIR reads the wheels from DIR instead of .whl/.
set -uo pipefail
export LC_ALL=C
t_start=$(date +%s)  # the budget counts from here, installation included
OUT=${1:-}
if [ -z "$OUT" ]; then
  echo "usage: bash bench/gpu_check.sh OUT_DIR" >&2
  exit 2
fi
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
cd "$(dirname "$0")/.." || exit 2
WHEELS=${NNX_GPU_WHEELS:-.whl}
PY=${PYTHON:-python3}
FAST=${NNX_GPU_CHECK_FAST:-0}
[ -d "$WHEELS" ] && WHEELS=$(cd "$WHEELS" && pwd)
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "gpu_check: no wheels in $WHEELS/; run 'bash bench/gpu_wheels.sh' where pip can download and carry .whl along" >&2
  exit 3
fi

# -- install: the wheels into SITE; nnx laid out as it installs (backends/ as nnx.backends) --
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nnx-gpu-check.XXXXXX") || exit 3
trap 'rm -rf "$TMP"' EXIT
SITE=$TMP/site WORK=$TMP/work
if ! err=$("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
           "$WHEELS"/*.whl 2>&1); then
  echo "gpu_check: installing $WHEELS/*.whl failed: $(printf '%s\n' "$err" | grep -v '^ *$' | tail -n 1)" >&2
  exit 3
fi
mkdir -p "$WORK"
cp -r nnx bench tests pyproject.toml README.md "$WORK/" && [ -d scripts ] && cp -r scripts "$WORK/"
rm -rf "$WORK/nnx/backends" && cp -r backends "$WORK/nnx/backends"
export PYTHONPATH="$WORK:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export NNX_GPU_CHECK_RUNNING=1  # tests/test_gpu_check_script.py does not run this script again
# CUDA component wheels carried in .whl (NNX_GPU_CTK=12|13 bash bench/gpu_wheels.sh)
for lib in "$SITE"/nvidia/*/lib; do
  [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
if [ -z "${CUDA_PATH:-}" ] && [ -d "$SITE/nvidia/cu13/include" ]; then export CUDA_PATH=$SITE/nvidia/cu13; fi
cd "$WORK" || exit 3
if ! err=$("$PY" -c "import array_api_compat, nnx, nnx.backends" 2>&1); then
  echo "gpu_check: array_api_compat or nnx cannot be imported after installing $WHEELS/: $(printf '%s\n' "$err" | tail -n 1)" >&2
  exit 3
fi
mkdir -p "$OUT" || exit 3
# CuPy compiles kernels on first use and caches them: somewhere writable, warmed by `train`
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-${TMPDIR:-/tmp}/nnx-cupy-kernel-cache}
mkdir -p "$CUPY_CACHE_DIR" 2>/dev/null && [ -w "$CUPY_CACHE_DIR" ] || export CUPY_CACHE_DIR=$TMP/cupy-cache
mkdir -p "$CUPY_CACHE_DIR"

LOG=$OUT/gpu_check.log
SUMMARY=$OUT/summary.json
exec > >(tee -a "$LOG") 2>&1
if [ "$FAST" = 1 ]; then BUDGET=${NNX_GPU_CHECK_BUDGET:-150}; else BUDGET=${NNX_GPU_CHECK_BUDGET:-330}; fi
elapsed() { echo $(( $(date +%s) - t_start )); }
step() { echo; echo "=== $* ($(elapsed) s)"; }

cat > "$TMP/record.py" <<'PY'
"""record.py SUMMARY init STEP...       | step NAME key=value...  | set key=value...
Values are JSON when they parse, @file.xml (a pytest junit report, counted), @file (JSON),
else text. The summary is replaced atomically, so it is valid JSON at every moment."""
import json, os, sys, time
import xml.etree.ElementTree as ET

path, cmd, *args = sys.argv[1:]


def junit(p):
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as exc:
        return f"no report: {exc}"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    out["time_s"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
    bad = [c for c in root.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
    out["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in bad[:25]]
    return out


def value(text):
    if text.startswith("@"):
        p = text[1:]
        if p.endswith(".xml"):
            return junit(p)
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            return f"unreadable: {exc}"
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(items):
    return {k: value(v) for k, _, v in (a.partition("=") for a in items)}


try:
    with open(path) as f:
        doc = json.load(f)
except (OSError, ValueError):
    doc = {}
if cmd == "init":
    doc = {"schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished": False,
           "steps": {name: {"status": "pending"} for name in args}}
elif cmd == "step":
    doc.setdefault("steps", {}).setdefault(args[0], {}).update(pairs(args[1:]))
elif cmd == "set":
    doc.update(pairs(args))
doc["elapsed_s"] = round(time.time() - float(os.environ.get("T_START", time.time())), 1)
tmp = f"{path}.tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, path)
PY
export T_START=$t_start
record() { "$PY" "$TMP/record.py" "$SUMMARY" "$@" || echo "gpu_check: could not update $SUMMARY"; }
# run_step NAME LIMIT CMD...: CMD under timeout -s INT (then KILL 15 s later); sets RC and SECS
run_step() {
  local name=$1 limit=$2 t0
  shift 2
  step "$name (limit $limit s)"
  record step "$name" status='"running"' limit_s="$limit"
  t0=$(date +%s)
  timeout -s INT -k 15 "$limit" "$@"
  RC=$?
  SECS=$(( $(date +%s) - t0 ))
}
status_of() {  # status_of RC: ok, timed_out or failed
  case $1 in 0) echo ok ;; 124|137) echo timed_out ;; *) echo failed ;; esac
}

record init versions train layer_tests bench full_suite
record set mode="$([ "$FAST" = 1 ] && echo fast || echo full)" budget_s="$BUDGET" \
  wheels="$(cd "$WHEELS" && ls -- *.whl | tr '\n' ' ')" cupy_cache_dir="$CUPY_CACHE_DIR"
echo "gpu_check: nnx from $WORK, wheels from $WHEELS, CUPY_CACHE_DIR=$CUPY_CACHE_DIR, budget $BUDGET s"

# -- 1. versions ----------------------------------------------------------------------------
run_step versions 45 "$PY" - "$OUT/versions.json" <<'PY'
import json, platform, shutil, subprocess, sys
out = {"python": platform.python_version()}
smi = shutil.which("nvidia-smi")
if smi:
    try:
        res = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,pci.bus_id",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        out["nvidia_smi"] = (res.stdout or res.stderr).strip().splitlines()
    except Exception as exc:  # noqa: BLE001
        out["nvidia_smi"] = f"error: {exc}"
else:
    out["nvidia_smi"] = "not found"
for mod in ("numpy", "cupy", "torch", "array_api_compat", "array_api_strict", "threadpoolctl",
            "pytest"):
    try:
        out[mod] = __import__(mod).__version__
    except Exception as exc:  # noqa: BLE001
        out[mod] = f"missing: {type(exc).__name__}: {exc}"
import nnx
from nnx import backends
out["nnx"] = nnx.__version__
reason = backends.probe("cupy")
out["cupy_probe"] = "ok" if reason is None else f"unavailable: {reason}"
out["available_backends"] = nnx.available_backends()
out["gpus_seen_by_cupy"] = backends.device_count("cupy")
if reason is None:
    be = backends.create_backend("cupy")
    out["cupy_backend"] = be.versions()
try:
    import torch
    out["torch_cuda"] = torch.version.cuda
    out["torch_gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as exc:  # noqa: BLE001
    out["torch_cuda"] = f"error: {type(exc).__name__}: {exc}"
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
print(json.dumps(out, indent=1))
PY
record step versions status="$(status_of $RC)" exit=$RC seconds=$SECS
if [ -f "$OUT/versions.json" ]; then
  record set versions="@$OUT/versions.json"
  CUPY=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('cupy_probe', 'unknown'))" "$OUT/versions.json")
else
  CUPY="unknown: the versions step wrote nothing"
fi
record set cupy="$CUPY"

# -- 2. short train (warms the kernel cache) --------------------------------------------------
if [ "$CUPY" = ok ]; then TB=cupy; else TB=numpy; fi
if [ "$FAST" = 1 ]; then EPOCHS=1; else EPOCHS=2; fi
rm -rf "$OUT/run"
run_step train 60 "$PY" -m nnx train --backend "$TB" --epochs "$EPOCHS" --out "$OUT/run" --no-progress
TRAIN_RC=$RC TRAIN_SECS=$SECS
EVAL=$(timeout -s INT -k 5 20 "$PY" -m nnx evaluate "$OUT/run/best.safetensors" --backend "$TB" 2>&1 \
       | grep -E '^(accuracy|loss|error|nnx)' | head -n 3 | tr '\n' ' ')
echo "$EVAL"
HIST=null
[ -f "$OUT/run/history.json" ] && HIST="@$OUT/run/history.json"
record step train status="$(status_of $TRAIN_RC)" exit=$TRAIN_RC seconds=$TRAIN_SECS backend="$TB" \
  cupy="$CUPY" epochs=$EPOCHS evaluate="$EVAL" history="$HIST"
rm -f "$OUT/run/last.safetensors"  # keep what comes back small

# -- 3. per-layer tests in float32 -------------------------------------------------------------
export NNX_TEST_BACKENDS=${NNX_TEST_BACKENDS:-cupy,numpy,torch}
if [ "$FAST" = 1 ]; then
  LAYER_TESTS=(tests/test_activations.py)
else
  LAYER_TESTS=(tests/test_layers.py tests/test_activations.py tests/test_normalization.py
               tests/test_pooling_avg.py tests/test_residual.py tests/test_loss.py)
fi
run_step layer_tests 90 "$PY" -m pytest -q -rs -p no:cacheprovider -m "not slow" -k "not float64" \
  --junitxml="$OUT/layers.xml" "${LAYER_TESTS[@]}"
record step layer_tests status="$(status_of $RC)" exit=$RC seconds=$SECS backends="$NNX_TEST_BACKENDS" \
  files="$(printf '%s ' "${LAYER_TESTS[@]}")" result="@$OUT/layers.xml"

# -- 4. one round of the benchmark ---------------------------------------------------------------
if [ "$FAST" = 1 ]; then
  BENCH=(--quick --backends cupy,numpy --torch none --no-seed-conv)
  LIMIT=60
else
  BENCH=(--models LeNet5,WideCNN --batches 128,512 --backends cupy,numpy --torch cuda,cpu
         --rounds 1 --steps 10 --warmup 2 --max-time 2 --no-seed-conv)
  LIMIT=90
fi
run_step bench $LIMIT "$PY" -m bench "${BENCH[@]}" --out "$OUT/bench.json" --table
BENCH_JSON=null
if [ -f "$OUT/bench.json" ]; then
  BENCH_JSON=$("$PY" - "$OUT/bench.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
rows = [{k: r.get(k) for k in ("model", "batch", "impl", "median_ms", "images_per_s", "errors",
                               "gpu_peak_mb")}
        for r in doc.get("results", [])]
print(json.dumps({"rows": rows, "skipped": doc.get("skipped"), "interrupted": doc.get("interrupted")}))
PY
) || BENCH_JSON=null
fi
record step bench status="$(status_of $RC)" exit=$RC seconds=$SECS result="$BENCH_JSON"

# -- 5. the full suite with the time left -------------------------------------------------------------
LEFT=$(( BUDGET - $(elapsed) ))
if [ "$FAST" = 1 ]; then FULL=(tests/test_init.py); [ $LEFT -gt 60 ] && LEFT=60; else FULL=(tests); fi
if [ $LEFT -ge 20 ]; then
  run_step full_suite $LEFT "$PY" -m pytest -q -rs -p no:cacheprovider -m "not slow" \
    --junitxml="$OUT/pytest.xml" "${FULL[@]}"
  record step full_suite status="$(status_of $RC)" exit=$RC seconds=$SECS backends="$NNX_TEST_BACKENDS" \
    result="@$OUT/pytest.xml"
else
  record step full_suite status='"skipped"' reason="only $LEFT s of the $BUDGET s budget left"
fi

record set finished=true total_s=$(elapsed)
step "done in $(elapsed) s; summary in $SUMMARY"
