"""GPU readiness without a GPU: arrays stay on the model's device.

CuPy allocates and launches on the calling thread's *current* device, and
array-api-compat's CuPy namespace ignores ``device=`` in ``zeros``/``full``/``arange``.
The ``current_device`` fixture gives array-api-strict the same rule: each thread has a
current device (``CPU_DEVICE`` unless set, as a CUDA thread starts on GPU 0), which
``Backend.activate()`` / ``make_current()`` change, and every array an operation creates
must be on it. Only ``asarray(..., device=d)`` and ``to_device(d)`` may create elsewhere
(array-api-compat's CuPy honours those with ``with cupy.cuda.Device(d)``), and arrays made
without a device land on CPU_DEVICE, where combining them with device1 raises. A violation is
recorded (on CuPy it is an array on the wrong GPU, or a kernel that fails), so a model on
``device1`` that trains cleanly has run every operation inside its device's scope.
"""

from __future__ import annotations

import contextlib
import threading
import traceback

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.backends import strict_backend
from nnx.data import DataLoader, transforms
from nnx.trainer import Trainer, evaluate

xs = pytest.importorskip("array_api_strict")
Array = type(xs.asarray(0))
CPU = xs.__array_namespace_info__().default_device()
D1 = xs.Device("device1")
D2 = xs.Device("device2")


class CurrentDevice:
    """The fake GPU runtime: a current device per thread, and what was created where."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.violations: list[str] = []
        self.created: list[str] = []
        self.lock = threading.Lock()

    def current(self):
        return getattr(self.local, "device", CPU)

    def set(self, dev) -> None:
        self.local.device = dev

    @contextlib.contextmanager
    def explicit(self):
        """Creation with an explicit device (honoured by array-api-compat's CuPy)."""
        depth = getattr(self.local, "explicit", 0)
        self.local.explicit = depth + 1
        try:
            yield
        finally:
            self.local.explicit = depth

    def check(self, out) -> None:
        if getattr(self.local, "explicit", 0):
            return
        here = self.current()
        with self.lock:
            self.created.append(str(out.device))
            if out.device != here:
                where = "".join(traceback.format_stack(limit=6)[:-2])
                self.violations.append(f"[{threading.current_thread().name}] array on "
                                       f"{out.device} while {here} was current\n{where}")


@pytest.fixture
def current_device(monkeypatch):
    runtime = CurrentDevice()
    real_new = Array._new.__func__
    real_asarray = xs.asarray
    real_to_device = Array.to_device

    def new(cls, x, /, device):
        out = real_new(cls, x, device=device)
        if device is not None:  # None: array-api-strict's own scalars (on CPU_DEVICE; mixing
            runtime.check(out)  # one with a device1 array raises, so no escape goes unseen)
        return out

    def asarray(obj, /, *, dtype=None, device=None, copy=None):
        if device is None:
            return real_asarray(obj, dtype=dtype, device=device, copy=copy)
        with runtime.explicit():
            return real_asarray(obj, dtype=dtype, device=device, copy=copy)

    def to_device(self, device, /, stream=None):
        with runtime.explicit():
            return real_to_device(self, device, stream=stream)

    @contextlib.contextmanager
    def activate(self):
        before = runtime.current()
        runtime.set(self.device)
        try:
            yield self
        finally:
            runtime.set(before)

    monkeypatch.setattr(Array, "_new", classmethod(new))
    monkeypatch.setattr(xs, "asarray", asarray)
    monkeypatch.setattr(Array, "to_device", to_device)
    monkeypatch.setattr(strict_backend.StrictBackend, "uses_current_device", True)
    monkeypatch.setattr(strict_backend.StrictBackend, "is_host", False)  # uint8 batches, scaled there
    monkeypatch.setattr(strict_backend.StrictBackend, "activate", activate)
    monkeypatch.setattr(strict_backend.StrictBackend, "make_current",
                        lambda self: runtime.set(self.device))
    return runtime


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def _model_on_device1(how: str):
    nnx.manual_seed(0)
    if how == "moved":  # built on the default device, then model.to(device=...) alone
        with nnx.use_backend("array_api_strict"):
            model = nnx.models.LeNet5()
        model.to(device="device1")
    else:  # built for device1 while it was current; trained where another device is current
        with nnx.use_backend(nt.make_backend("array_api_strict:device1")):
            model = nnx.models.LeNet5()
    for name, p in model.named_parameters():
        assert p.data.device == D1, name
    return model


def _fit_and_evaluate(model, log):
    images, labels = _data()
    opt = nnx.optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = nnx.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    trainer = Trainer(model, opt, scheduler=sched, progress=False, log=log.append, threads=1,
                      sync_every=2, clip_grad_norm=5.0)
    augment = transforms.Compose([transforms.RandomCrop(2), transforms.RandomHorizontalFlip(),
                                  transforms.Normalize([0.5], [0.25])])
    train = DataLoader(images, labels, 16, seed=1, transform=augment)
    val = DataLoader(images[:32], labels[:32], 16, shuffle=False,
                     transform=transforms.Normalize([0.5], [0.25]))
    history = trainer.fit(train, val, epochs=2)
    metrics = evaluate(model, val)
    return history, metrics, opt


def _assert_on_device1(runtime, model, opt):
    assert not runtime.violations, "\n".join(runtime.violations[:3])
    assert runtime.created and set(runtime.created) == {str(D1)}, sorted(set(runtime.created))
    for name, p in model.named_parameters():
        assert p.data.device == D1 and p.grad is not None and p.grad.device == D1, name
    assert all(b.device == D1 for b in opt.buffers if b is not None)


@pytest.mark.parametrize("how", ["moved", "built_there"])
def test_model_on_another_device_trains_and_evaluates(current_device, how):
    model = _model_on_device1(how)
    current_device.set(D2)  # the thread's current device is another one (set_backend elsewhere)
    current_device.created.clear()
    log: list[str] = []
    history, metrics, opt = _fit_and_evaluate(model, log)
    _assert_on_device1(current_device, model, opt)
    assert len(history["epochs"]) == 2 and metrics["n"] == 32
    assert all(np.isfinite(e["train_loss"]) for e in history["epochs"])
    assert current_device.current() == D2  # the scopes restore the thread's device


def test_training_in_a_worker_thread_stays_on_the_models_device(current_device):
    model = _model_on_device1("moved")
    current_device.created.clear()
    out: dict[str, object] = {}

    def work():
        try:
            out["result"] = _fit_and_evaluate(model, [])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            out["error"] = traceback.format_exc()
            raise exc

    worker = threading.Thread(target=work, name="trainer-thread")
    worker.start()
    worker.join(120)
    assert not worker.is_alive()
    assert "error" not in out, out.get("error")
    _history, metrics, opt = out["result"]
    _assert_on_device1(current_device, model, opt)
    assert any(v == str(D1) for v in current_device.created)
    assert 0.0 <= metrics["acc"] <= 1.0


def test_the_fixture_catches_work_outside_the_device_scope(current_device, monkeypatch):
    """Without the scopes (the bug: a model on device1, the thread's current device 0) the
    same run records arrays made off the model's device: the checks above can fail."""
    model = _model_on_device1("moved")
    x = nnx.asarray(np.ones((2, 3), np.float32), nt.make_backend("array_api_strict:device1"))
    assert not current_device.violations  # an explicit device= is honoured
    _ = x * 2.0  # outside any scope: CuPy would launch this on the current device
    assert current_device.violations
    current_device.violations.clear()
    off = contextlib.nullcontext
    for mod in ("nnx.module", "nnx.trainer"):
        monkeypatch.setattr(f"{mod}.device_scope", lambda x: off())
    monkeypatch.setattr(strict_backend.StrictBackend, "activate", lambda self: off())
    _fit_and_evaluate(model, [])
    assert current_device.violations


def test_forward_and_backward_of_a_plain_loop_run_on_the_models_device(current_device):
    """Module.__call__ and Sequential.backward enter the scope themselves; the loss and the
    optimizer step of a hand-written loop go inside ``nnx.use_backend(model's backend)``."""
    model = _model_on_device1("moved")
    d1 = nnx.backend_of(model.parameters()[0].data)
    images, labels = _data(16)
    x = nnx.asarray(images[:, None].astype(np.float32) / 255, d1)
    y = nnx.asarray(labels, d1)
    current_device.created.clear()
    out = model(x)
    assert out.device == D1 and not current_device.violations
    loss_fn = nnx.CrossEntropyLoss()
    opt = nnx.optim.SGD(model, lr=0.1, momentum=0.9)
    with nnx.use_backend(d1):
        loss_fn(out, y)
        grad = loss_fn.backward()
    model.backward(grad)
    with nnx.use_backend(d1):
        opt.step()
    _assert_on_device1(current_device, model, opt)


def test_a_loader_converts_and_transforms_on_its_device_from_any_thread(current_device):
    images, labels = _data(32)
    d1 = nt.make_backend("array_api_strict:device1")
    loader = DataLoader(images, labels, 8, backend=d1, transform=transforms.Compose(
        [transforms.RandomCrop(2), transforms.Normalize([0.5], [0.25])]))
    seen = []
    worker = threading.Thread(target=lambda: seen.extend(loader))
    worker.start()
    worker.join(60)
    assert len(seen) == 4 and all(x.device == D1 and y.device == D1 for x, y in seen)
    assert not current_device.violations, current_device.violations[0]
    assert set(current_device.created) == {str(D1)}


def test_set_backend_makes_the_device_current(current_device):
    before = nnx.get_backend()
    try:
        nnx.set_backend("array_api_strict", device="device1")
        assert current_device.current() == D1
    finally:
        nnx.set_backend(before.name, before.device)
    assert current_device.current() == D1  # NumPy has no current device to set
    with nnx.use_backend("array_api_strict", device="device2"):
        assert current_device.current() == D2
    assert current_device.current() == D1


def test_device_scope_is_free_for_host_arrays():
    from nnx.backend import device_scope

    a = np.zeros(3)
    assert device_scope(a) is device_scope(np.ones(2))  # the shared no-op
    assert device_scope([1, 2]) is device_scope(None)
    with device_scope(a):
        pass


def test_backend_of_asks_no_library_by_name():
    """backend_of gives each library its own device object (no CuPy special case) and one
    Backend per place."""
    import inspect

    import nnx.module

    assert "cupy" not in inspect.getsource(nnx.module.backend_of)
    d1 = nt.make_backend("array_api_strict:device1")
    x = d1.from_numpy(np.zeros(2))
    assert nnx.backend_of(x) is nnx.backend_of(d1.from_numpy(np.ones(3)))
    assert nnx.backend_of(x).device == D1
