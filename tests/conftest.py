"""The ``backend`` and ``dtype`` fixtures every cross-backend test uses.

``backend`` runs a test once per backend spec (numpy, array_api_strict, torch,
cupy), restricted by NNX_TEST_BACKENDS=numpy,torch; an unusable backend is
skipped with the reason. The chosen backend is active (``use_backend``) for the
whole test.
"""

from __future__ import annotations

import os

import pytest

import nnx
import nnx.testing as nt


def _disable_tf32() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


_disable_tf32()


def _pin_array_api_version() -> None:
    """Test against the 2024.12 standard, not array-api-strict's newest default: nnx
    must not use what later versions add."""
    try:
        import array_api_strict
    except ImportError:
        return
    array_api_strict.set_array_api_strict_flags(api_version="2024.12")


_pin_array_api_version()


@pytest.fixture(params=nt.requested_specs())
def backend(request):
    spec = request.param
    reason = nt.backend_status(spec)
    if reason is not None:
        pytest.skip(f"backend {spec} unavailable: {reason}")
    be = nt.make_backend(spec)
    with nnx.use_backend(be):
        yield be


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return __import__("numpy").random.default_rng(1234)


def torch_or_skip():
    return pytest.importorskip("torch", reason="torch not installed")


@pytest.fixture(autouse=True)
def _fresh_seed():
    nnx.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _nnx_log_reaches_caplog():
    """nnx's logger writes to stderr and does not propagate; let pytest's caplog see it."""
    log = __import__("logging").getLogger("nnx")
    log.propagate = True
    yield
    log.propagate = False


def pytest_report_header(config):
    specs = nt.requested_specs()
    lines = [f"nnx backends requested: {', '.join(specs)}"]
    for s in specs:
        reason = nt.backend_status(s)
        lines.append(f"  {s}: {'ok' if reason is None else 'skip - ' + reason}")
    lines.append(f"NNX_TEST_BACKENDS={os.environ.get('NNX_TEST_BACKENDS', '')!r}")
    return lines
