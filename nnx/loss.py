"""Softmax cross-entropy loss."""

from __future__ import annotations

from numbers import Real
from typing import Any

from ._array import array_namespace, device, dtype_name, shape_str
from .functional import log_softmax


class CrossEntropyLoss:
    """Mean softmax cross-entropy of logits against integer class labels, with PyTorch's
    label smoothing.

    L = −(1/B) Σ_i Σ_c q_ic log softmax(z_i)_c, with the target distribution
    q_i = (1 − ε)·onehot(y_i) + ε/C (ε = ``label_smoothing`` in [0, 1]; ε = 0 gives
    L = −(1/B) Σ_i log softmax(z_i)[y_i]), computed from a max-subtracted log-softmax
    (finite for logits of ±1e4, no epsilon). Shapes: logits (B, C) float, labels (B,)
    integer in [0, C) -> a 0-d array. ``backward()`` returns dL/dz = (softmax(z) − q) / B,
    shape (B, C). ``label_smoothing`` is keyword-only (PyTorch's first positional
    argument is ``weight``).

    Labels outside [0, C) raise ValueError at once, which reads a flag from the device.
    With ``defer_label_check = True`` (the Trainer sets it, to read the device once per
    epoch) the flag is kept instead: :meth:`label_error` gives it as a 0-d boolean array
    and :meth:`raise_label_error` raises the error.
    """

    defer_label_check: bool = False

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        name = type(self).__name__
        if (not isinstance(label_smoothing, Real) or isinstance(label_smoothing, bool)
                or not 0 <= label_smoothing <= 1):
            raise ValueError(f"{name}: label_smoothing must be a number in [0, 1], got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self._cache: Any = None
        self._bad_labels: Any = None  # a device flag, kept while checks are deferred
        self._classes = 0

    def __repr__(self) -> str:
        extra = f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"{type(self).__name__}({extra})"

    def __call__(self, logits: Any, labels: Any) -> Any:
        return self.forward(logits, labels)

    def forward(self, logits: Any, labels: Any) -> Any:
        name = type(self).__name__
        try:
            xp = array_namespace(logits, labels)
        except TypeError as exc:
            raise TypeError(f"{name}: logits and labels must be arrays of one library "
                            f"and device ({exc}); convert labels with nnx.asarray") from None
        if logits.ndim != 2:
            raise ValueError(f"{name}: logits must have shape (batch, classes), got "
                             f"{shape_str(logits.shape)}")
        if not xp.isdtype(logits.dtype, "real floating"):
            raise TypeError(f"{name}: logits must be float32 or float64, got "
                            f"{dtype_name(logits.dtype)}")
        bsz, classes = int(logits.shape[0]), int(logits.shape[1])
        if str(device(logits)) != str(device(labels)):
            raise TypeError(f"{name}: logits are on device {device(logits)} but labels on "
                            f"{device(labels)}; move the labels with nnx.asarray")
        if labels.ndim != 1 or int(labels.shape[0]) != bsz:
            raise ValueError(f"{name}: labels must have shape ({bsz},) to match logits "
                             f"{shape_str(logits.shape)}, got {shape_str(labels.shape)}")
        if not xp.isdtype(labels.dtype, "integral"):
            raise ValueError(f"{name}: labels must be integers, got {dtype_name(labels.dtype)}")
        if bsz == 0:
            raise ValueError(f"{name}: empty batch")
        if labels.dtype != xp.int64:
            # narrow types (uint8 from IDX files, int8) cannot hold the class count
            labels = xp.astype(labels, xp.int64)
        bad = xp.any((labels < 0) | (labels >= classes))
        self._classes = classes
        if self.defer_label_check:
            self._bad_labels = bad if self._bad_labels is None else self._bad_labels | bad
        elif bool(bad):
            lo, hi = int(xp.min(labels)), int(xp.max(labels))
            raise ValueError(f"{name}: labels must lie in [0, {classes}) for {classes} classes, "
                             f"got values in [{lo}, {hi}]")
        logp = log_softmax(xp, logits)
        classes_row = xp.arange(classes, dtype=labels.dtype, device=device(labels))
        target = xp.astype(xp.reshape(labels, (bsz, 1)) == classes_row, logits.dtype)
        eps = self.label_smoothing
        if eps:
            target = target * (1.0 - eps) + eps / classes
        loss = -xp.sum(logp * target) / bsz
        self._cache = (logp, target)
        return xp.asarray(loss)  # a 0-d array (NumPy's reductions give a scalar)

    def label_error(self) -> Any:
        """The deferred check: a 0-d boolean array, True if any label since the last
        :meth:`raise_label_error` was out of range (None when nothing was checked)."""
        return self._bad_labels

    def raise_label_error(self, bad: bool) -> None:
        """Forget the deferred flag; raise the label error when ``bad`` (its host value)."""
        self._bad_labels = None
        if bad:
            raise ValueError(f"{type(self).__name__}: labels must lie in [0, {self._classes}) "
                             f"for {self._classes} classes; a batch held other values")

    def backward(self) -> Any:
        """dL/dlogits = (softmax − q) / B for the last forward call (q: the smoothed
        one-hot target)."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: call the loss before backward()")
        logp, target = self._cache
        xp = array_namespace(logp)
        return (xp.exp(logp) - target) / logp.shape[0]


MultiCrossEntropyLoss = CrossEntropyLoss
