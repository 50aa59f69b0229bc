"""Data parallelism over threads inside one process (the host backends' fast path).

NumPy runs each element-wise operation on one core, while PyTorch spreads its
operations over all of them. :class:`ThreadedDataParallel` splits every batch
into equal slices and runs forward and backward of one replica of the model per
slice, each in its own thread (NumPy releases the GIL inside its loops), with
BLAS limited to one thread per call meanwhile. The replicas share the model's
parameter arrays; their gradients are combined into the model's own
``.grad`` as the batch-size-weighted mean, which equals the full-batch gradient
of a mean loss (up to the order of float summation). The optimizer then steps
the model as usual.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._array import array_namespace
from .backends import Backend
from .backends.cpu_threads import blas_threads, blas_threads_controllable, usable_cores
from .module import Module, Sequential, backend_of

#: The fewest samples a thread is given; smaller batches run in one thread
#: (measured: below this the threads' overhead outweighs what they save).
MIN_PER_THREAD = 32


def auto_threads(model: Module, batch_size: int | None = None) -> int:
    """Threads worth using for ``model``: one per usable core on the NumPy backend when
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
    if be.name != "numpy" or not blas_threads_controllable():
        return 1
    from .layers import Conv2d

    if not any(isinstance(m, Conv2d) for m in model.modules()) or not splittable(model):
        return 1
    n = usable_cores()
    if batch_size is not None:
        n = min(n, batch_size // MIN_PER_THREAD)
    return max(1, n)


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


class ThreadedDataParallel:
    """Run one training step's forward and backward over ``threads`` batch slices.

    ``step(x, y)`` returns (mean loss over the batch, number correct) and leaves
    in every parameter of ``model`` the gradient of the batch's mean loss.
    """

    def __init__(self, model: Module, loss_fn: Any, threads: int) -> None:
        if not isinstance(threads, int) or threads < 2:
            raise ValueError(f"ThreadedDataParallel: threads must be an int >= 2, got {threads!r}")
        odd = sorted({type(m).__name__ for m in model.modules() if not m.splittable})
        if odd:
            raise ValueError(f"ThreadedDataParallel: {type(model).__name__} has {', '.join(odd)}, "
                             "whose output depends on the whole batch or on random draws; a batch "
                             "cannot be split across threads through it (use threads=1)")
        self.model = model
        self.threads = threads
        self.replicas = [replicate(model) for _ in range(threads)]
        self.loss_fns = [copy.copy(loss_fn) for _ in range(threads)]
        self._params = model.parameters()
        self._replica_params = [r.parameters() for r in self.replicas]
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="nnx-dp")

    def applies(self, batch: int) -> bool:
        return batch >= self.threads * MIN_PER_THREAD

    def _run(self, i: int, x: Any, y: Any) -> tuple[float, int, int]:
        replica, loss_fn = self.replicas[i], self.loss_fns[i]
        out = replica(x)
        loss = float(loss_fn(out, y))
        grad = loss_fn.backward()
        if isinstance(replica, Sequential):
            replica.backward(grad, need_input_grad=False)
        else:
            replica.backward(grad)
        return loss, correct_count(out, y), int(x.shape[0])

    def step(self, x: Any, y: Any) -> tuple[float, int]:
        n = int(x.shape[0])
        k = self.threads
        bounds = [n * i // k for i in range(k + 1)]
        for params in self._replica_params:  # optimizers may rebind .data
            for q, p in zip(params, self._params):
                q.data = p.data
        for replica in self.replicas:  # training step: replicas keep their activations
            if not replica.training:
                replica.train()
        with blas_threads(1):  # slices 1..k-1 in the pool, slice 0 on this thread
            futures = [self._pool.submit(self._run, i, x[bounds[i]:bounds[i + 1], ...],
                                         y[bounds[i]:bounds[i + 1]]) for i in range(1, k)]
            results = [self._run(0, x[bounds[0]:bounds[1], ...], y[bounds[0]:bounds[1]])]
            results += [f.result() for f in futures]
        weights = [r[2] / n for r in results]
        equal = len({r[2] for r in results}) == 1
        for j, p in enumerate(self._params):
            grads = [params[j].grad for params in self._replica_params]
            if any(g is None for g in grads):
                p.grad = None
                continue
            if equal:  # mean of the slices' mean-loss gradients
                total = grads[0] + grads[1]
                for g in grads[2:]:
                    total += g
                total *= 1.0 / k
            else:
                total = grads[0] * weights[0]
                for g, w in zip(grads[1:], weights[1:]):
                    total += g * w
            p.grad = total
        loss = sum(r[0] * w for r, w in zip(results, weights))
        correct = sum(r[1] for r in results)
        return (loss if math.isfinite(loss) else float("nan")), correct

    def close(self) -> None:
        self._pool.shutdown(wait=False)


__all__ = ["MIN_PER_THREAD", "ThreadedDataParallel", "auto_threads", "correct_count",
           "replicate", "splittable"]
