"""Data parallelism over threads inside one process (the host backends' fast path).

NumPy runs each element-wise operation on one core, while PyTorch spreads its
operations over all of them. On NumPy, a :class:`~nnx.Sequential` of a splittable
model (no BatchNorm, no Dropout) with convolutions splits a large enough batch into
equal slices and runs one replica of itself per slice, each in its own thread (NumPy
releases the GIL inside its loops), forward and backward, with BLAS limited to one
thread per call meanwhile (:class:`BatchSplitter`). The replicas share the model's
parameter arrays; their gradients are summed into the model's own ``.grad``, which
equals the full batch's gradient up to the order of float summation. Every caller
gets it: ``nnx.Trainer`` and a plain ``model(x)`` … ``model.backward(g)`` loop alike.
:func:`set_num_threads` (or ``model.threads``) overrides the automatic choice.
"""

from __future__ import annotations

import copy
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._array import array_namespace, namespace_of
from .backends import Backend
from .backends.cpu_threads import blas_threads, blas_threads_controllable, usable_cores
from .module import Module, backend_of

#: The fewest samples a thread is given; smaller batches run in one thread
#: (measured: below this the threads' overhead outweighs what they save).
MIN_PER_THREAD = 32


def auto_threads(model: Module, batch_size: int | None = None) -> int:
    """Threads worth using for ``model``: one per usable core (shared out among the ranks
    of a distributed world on this machine) on a backend that
    declares ``threads_split_batches`` (NumPy) when
    its BLAS thread count can be controlled and the model has convolutions and no layer
    that cannot be split (:func:`splittable`), else 1;
    with ``batch_size``, no more than the batch gives :data:`MIN_PER_THREAD` samples each.

    Measured on a 2-core machine (bench/README.md): convolutional nets gain (the wide
    CNN at batch 128 went from 82 to 55 ms a step) because their element-wise work,
    im2col and pooling are single-threaded in NumPy; an MLP is matrix products, which
    OpenBLAS already spreads over the cores, and lost (2.5 to 4.1 ms). Other libraries
    thread their own operations.
    """
    params = model.parameters()
    if not params:
        return 1
    be: Backend = backend_of(params[0].data)
    if not be.threads_split_batches or not blas_threads_controllable():
        return 1
    from .layers import Conv2d

    if not any(isinstance(m, Conv2d) for m in model.modules()) or not splittable(model):
        return 1
    n = usable_cores() // local_ranks()  # ranks on one machine share its cores
    if batch_size is not None:
        n = min(n, batch_size // MIN_PER_THREAD)
    return max(1, n)


def local_ranks() -> int:
    """Ranks of this process's initialised distributed world that run on this machine (1
    without one); MPI is never imported for the question."""
    world_module = sys.modules.get("nnx.distributed._world")
    world = getattr(world_module, "_WORLD", None)
    if world is None or not world.initialized:
        return 1
    return max(1, int(world.local_size))


def splittable(model: Module) -> bool:
    """Whether a batch may be split across replicas of ``model``: not when a layer couples
    the samples (BatchNorm's batch statistics) or draws random numbers (Dropout)."""
    return all(m.splittable for m in model.modules())


def replicate(model: Module) -> Module:
    """A structural copy of ``model`` whose new Parameters share ``model``'s arrays
    (no gradients, no kept activations)."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p.data)] = p.data
        if p.grad is not None:
            memo[id(p.grad)] = None
    for m in model.modules():
        for key, value in vars(m).items():
            if key.startswith("_cache") and value is not None:
                memo[id(value)] = None
    return copy.deepcopy(model, memo)


def correct_count(out: Any, y: Any, as_int: bool = True) -> Any:
    """Number of rows of ``out`` whose argmax equals the label: an int, or with
    ``as_int=False`` a 0-d array left on the device (no wait for the device)."""
    xp = array_namespace(out)
    n = xp.sum(xp.astype(xp.argmax(out, axis=1) == y, xp.int32))
    return int(n) if as_int else n


class BatchSplitter:
    """Run a Sequential's forward and backward over ``threads`` slices of the batch, one
    replica of the model per slice, each in its own thread (slice 0 on the calling one).

    ``forward(x)`` returns the concatenated outputs; ``backward(g, need_input_grad)``
    sends each slice of ``g`` back through its replica, leaves in every parameter of the
    model the sum of the replicas' gradients (the full batch's: ``g`` already carries
    the loss's 1/B) and returns the concatenated input gradient (or None). The replicas
    share the model's parameter arrays (re-read before each forward); BLAS runs one
    thread per slice meanwhile.
    """

    def __init__(self, model: Module, threads: int) -> None:
        if not isinstance(threads, int) or threads < 2:
            raise ValueError(f"BatchSplitter: threads must be an int >= 2, got {threads!r}")
        odd = sorted({type(m).__name__ for m in model.modules() if not m.splittable})
        if odd:
            raise ValueError(f"{type(model).__name__} has {', '.join(odd)}, whose output depends on "
                             "the whole batch or on random draws; a batch cannot be split across "
                             "threads through it (use threads=1)")
        # weakly: the module-level registry maps model -> splitter weakly by key, and a
        # strong reference here would keep every model that ever split alive (its replicas,
        # their activations and the pool's thread with it)
        self._model = weakref.ref(model)
        self._name = type(model).__name__
        self.threads = threads
        self.replicas = [replicate(model) for _ in range(threads)]
        self._params = model.parameters()
        self._replica_params = [r.parameters() for r in self.replicas]
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="nnx-split")
        weakref.finalize(model, self._pool.shutdown, wait=False)  # the thread goes with the model
        self.bounds: list[int] | None = None  # of the last training forward
        self._out_shape: tuple[int, ...] | None = None
        self._namespace: Any = None

    def _map(self, fn: Any, *args: Any) -> list[Any]:
        """fn(i, *args) for every slice i, slices 1.. in the pool, slice 0 here."""
        with blas_threads(1):
            futures = [self._pool.submit(_inside_split, fn, i, *args)
                       for i in range(1, self.threads)]
            first = _inside_split(fn, 0, *args)
            return [first] + [f.result() for f in futures]

    @property
    def model(self) -> Module:
        model = self._model()
        if model is None:
            raise RuntimeError(f"the {self._name} this splitter served no longer exists")
        return model

    def forward(self, x: Any) -> Any:
        n = int(x.shape[0])
        k = self.threads
        for params in self._replica_params:  # optimizers may rebind .data
            for q, p in zip(params, self._params):
                q.data = p.data
        mode = self.model.training
        for replica in self.replicas:
            if replica.training != mode:
                replica.train(mode)
        self.bounds = [n * i // k for i in range(k + 1)]
        outs = self._map(self._forward_slice, x)
        xp = array_namespace(outs[0])
        out = xp.concat(outs, axis=0)
        self._out_shape = tuple(int(s) for s in out.shape)
        self._namespace = xp
        return out

    def _forward_slice(self, i: int, x: Any) -> Any:
        b = self.bounds
        return self.replicas[i](x[b[i]:b[i + 1], ...])

    def backward(self, grad: Any, need_input_grad: bool) -> Any:
        if self.bounds is None:
            raise RuntimeError(f"{self._name}: backward() needs a forward() in training mode "
                               "first")
        self._check_grad(grad)
        # the bounds stay: a second backward of the same forward works as it does unsplit
        grads_in = self._map(self._backward_slice, grad, need_input_grad)
        for j, p in enumerate(self._params):
            grads = [params[j].grad for params in self._replica_params]
            if any(g is None for g in grads):
                p.grad = None
                continue
            total = grads[0] + grads[1]  # a new array: the replicas' stay theirs
            for g in grads[2:]:
                total += g
            p.grad = total
        if not need_input_grad:
            return None
        return array_namespace(grads_in[0]).concat(grads_in, axis=0)

    def _check_grad(self, grad: Any) -> None:
        """The whole gradient against the whole forward output, before it is sliced: the
        slices' own checks would name the half-batch shapes, or not see a longer batch."""
        expected = self._out_shape
        try:
            same_library = namespace_of(grad) is self._namespace
        except TypeError:
            same_library = False
        if not same_library:
            raise TypeError(f"{self._name}: backward expects an array of the forward output's "
                            f"library, got {type(grad).__name__}")
        from .layers._common import check_grad_shape

        check_grad_shape(self._name, grad, expected)

    def _backward_slice(self, i: int, grad: Any, need_input_grad: bool) -> Any:
        b = self.bounds
        replica, g = self.replicas[i], grad[b[i]:b[i + 1], ...]
        if need_input_grad:
            return replica.backward(g)
        replica.backward_params_only(g)  # any Module: it skips its input's gradient if it can
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False)


# -- the thread setting, and which Sequential calls split --------------------------
_setting: int | str = "auto"
_inside = threading.local()
_splitters: weakref.WeakKeyDictionary[Module, BatchSplitter] = weakref.WeakKeyDictionary()
_auto: weakref.WeakKeyDictionary[Module, dict[Any, int]] = weakref.WeakKeyDictionary()


def set_num_threads(threads: int | str) -> None:
    """How many threads a Sequential splits a batch across on CPU backends: ``"auto"``
    (the default: :func:`auto_threads`) or an int (1 turns it off). A model's own
    ``threads`` attribute (``model.threads = n``) wins over this."""
    global _setting
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int)
                              or threads < 1):
        raise ValueError(f"set_num_threads: threads must be 'auto' or an int >= 1, got "
                         f"{threads!r}")
    _setting = threads


def get_num_threads() -> int | str:
    return _setting


def _inside_split(fn: Any, *args: Any) -> Any:
    _inside.active = True
    try:
        return fn(*args)
    finally:
        _inside.active = False


def splitter_for(model: Module, x: Any) -> BatchSplitter | None:
    """The splitter a Sequential's forward of ``x`` runs through, or None (run as usual):
    None inside a split (replicas never split again), for a batch too small for two
    slices of :data:`MIN_PER_THREAD`, and when the threads resolve to 1."""
    if getattr(_inside, "active", False):
        return None
    setting = getattr(model, "threads", None) or _setting
    n = int(x.shape[0])
    if setting == "auto":
        if n < 2 * MIN_PER_THREAD:
            return None
        cache = _auto.setdefault(model, {})
        key = (type(x), n)
        if key not in cache:  # the model's structure and backend decide: look once
            cache[key] = auto_threads(model, n)
        threads = cache[key]
    else:
        threads = min(int(setting), n // MIN_PER_THREAD)
    if threads < 2:
        return None
    splitter = _splitters.get(model)
    if splitter is None or splitter.threads != threads:
        if splitter is not None:
            splitter.close()
        splitter = _splitters[model] = BatchSplitter(model, threads)
    return splitter


def active_splitter(model: Module) -> BatchSplitter | None:
    """The splitter whose forward is waiting for its backward, if any."""
    splitter = _splitters.get(model)
    return splitter if splitter is not None and splitter.bounds is not None else None


def forget_split(model: Module) -> None:
    """The model ran a forward without splitting: a later backward is not the splitter's."""
    splitter = _splitters.get(model)
    if splitter is not None:
        splitter.bounds = None


__all__ = ["MIN_PER_THREAD", "BatchSplitter", "auto_threads", "correct_count", "get_num_threads",
           "replicate", "set_num_threads", "splittable"]
