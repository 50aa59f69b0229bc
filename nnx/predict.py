"""Classify image files with a checkpoint: ``nnx predict CHECKPOINT FILE... [--top K]``.

    >>> from nnx.predict import predict_files
    >>> for p in predict_files("runs/latest/best.safetensors", ["seven.png"], top=3):
    ...     print(p.name, p.top)        # seven.png [(7, '7', 0.98), (9, '9', 0.01), ...]

Each file is read (PNG, JPEG and the other formats Pillow reads, or a NumPy ``.npy``
array, never unpickled), converted to the model's channel count (grey: Pillow's "L"
luminance; colour from grey: the grey value in every channel; RGBA: the alpha dropped),
resized to the model's input size (Pillow's bilinear filter, antialiased when shrinking),
scaled to [0, 1] (uint8 / 255), normalised as the checkpoint records, and run through
the model in eval mode; the softmax of the logits gives the probabilities.

What the model takes comes from the checkpoint (:func:`input_spec`): the input shape
(C, H, W), the class names and the evaluation transform that ``nnx train`` records
(``config["data_facts"]`` and ``config["transforms"]["eval"]``). For older checkpoints
(nnx 0.1, or ``nnx.save`` without them) the dataset recorded in the config, or else the
model's config, decides: 1×28×28 digits for MNIST-sized models, 3×32×32 for colour
models, classes named by their index, no normalisation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The install hint for image files.
PILLOW_HINT = "pip install 'nnx-array[predict]' (or pip install pillow)"
_DATASET_SHAPES = {"sample": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                   "cifar10": (3, 32, 32)}
_DIGITS = tuple(str(d) for d in range(10))


@dataclass
class InputSpec:
    """What a checkpoint's model takes and what its outputs mean.

    ``shape``: (C, H, W) of one image; ``classes``: a name per output; ``normalize``:
    the per-channel (mean, std) applied to pixels in [0, 1], or None; ``source``: where
    these facts come from ("recorded by nnx train", or how they were inferred).
    """

    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    source: str


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _square(n: int, channels: int) -> tuple[int, int, int] | None:
    if n % channels:
        return None
    side = math.isqrt(n // channels)
    return (channels, side, side) if side * side * channels == n else None


def _shape_from_model(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(C, H, W) from a model config (nnx.models' names and defaults), or None."""
    name = cfg.get("name")
    if name in ("LeNet5", "WideCNN"):
        c, s = cfg.get("in_channels", 1), cfg.get("input_size", 28)
        return (c, s, s) if _is_pos_int(c) and _is_pos_int(s) else None
    if name in ("ResNet", "ConvNet"):
        c = cfg.get("in_channels", 3 if name == "ResNet" else 1)
        return (c, 28, 28) if c == 1 else (c, 32, 32) if _is_pos_int(c) else None
    if name == "MLP":
        sizes = cfg.get("sizes")
        if not isinstance(sizes, list) or not sizes or not _is_pos_int(sizes[0]):
            return None
        n = sizes[0]
        return {784: (1, 28, 28), 3072: (3, 32, 32)}.get(n) or _square(n, 1) or _square(n, 3)
    return None


def _num_classes(cfg: dict[str, Any]) -> int | None:
    if cfg.get("name") == "MLP":
        sizes = cfg.get("sizes")
        return sizes[-1] if isinstance(sizes, list) and sizes and _is_pos_int(sizes[-1]) else None
    n = cfg.get("num_classes", 10 if cfg.get("name") in ("LeNet5", "WideCNN", "ResNet", "ConvNet")
                else None)
    return n if _is_pos_int(n) else None


def input_spec(checkpoint: Any) -> InputSpec:
    """The :class:`InputSpec` of an ``nnx.checkpoint.Checkpoint`` (see the module docstring
    for the fallbacks). Raises ValueError naming the file when the shape cannot be told
    or the recorded facts are malformed."""
    from .onnx_export import normalization

    path = checkpoint.path
    meta = checkpoint.meta
    config = meta.get("config") or {}
    model_cfg = meta.get("model_config") or {}
    facts = config.get("data_facts")
    try:
        normalize = normalization((config.get("transforms") or {}).get("eval"))
    except ValueError as exc:
        raise ValueError(f"{path}: config.transforms.eval: {exc}") from None
    if facts is not None:
        shape, classes = facts.get("shape") if isinstance(facts, dict) else None, \
            facts.get("classes") if isinstance(facts, dict) else None
        if not (isinstance(shape, list) and len(shape) == 3 and all(map(_is_pos_int, shape))
                and isinstance(classes, list) and classes
                and all(isinstance(c, str) for c in classes)):
            raise ValueError(f"{path}: config.data_facts must hold shape [C, H, W] and a list "
                             f"of class names, got {str(facts)[:120]}")
        return InputSpec(tuple(shape), tuple(classes), normalize,  # type: ignore[arg-type]
                         "recorded by nnx train")
    dataset = config.get("dataset")
    if dataset is None and "model" in config:  # nnx 0.1's nnx train: MNIST-format digits only
        dataset = "sample" if config.get("data") is None else "mnist"
    shape = _DATASET_SHAPES.get(dataset) if isinstance(dataset, str) else None
    how = f"the recorded dataset {dataset}" if shape is not None else "the model's config"
    shape = shape or _shape_from_model(model_cfg)
    if shape is None:
        raise ValueError(f"{path}: the checkpoint records no input shape (config.data_facts) and "
                         f"its model_config {str(model_cfg)[:80]} does not tell one")
    if dataset in ("sample", "mnist"):
        classes: tuple[str, ...] = _DIGITS
    elif isinstance(dataset, str) and dataset in _DATASET_SHAPES:
        from .datasets.registry import REGISTRY

        classes = REGISTRY[dataset].classes
    else:
        n = _num_classes(model_cfg)
        classes = tuple(str(i) for i in range(n)) if n else ()
    return InputSpec(shape, classes, normalize, f"inferred from {how}")


# ---------------------------------------------------------------------------
# reading images
# ---------------------------------------------------------------------------
def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"reading image files needs Pillow: {PILLOW_HINT}; .npy files need "
                          "nothing more") from None
    return Image


def _resize(hwc: np.ndarray, h: int, w: int, name: str) -> np.ndarray:
    """A float HWC array in [0, 1] resized to h×w with Pillow's bilinear filter."""
    if hwc.shape[:2] == (h, w):
        return hwc
    try:
        Image = _pillow()
    except ImportError as exc:
        raise ImportError(f"{name}: the image is {hwc.shape[0]}x{hwc.shape[1]}, the model takes "
                          f"{h}x{w}; {exc}") from None
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(hwc[:, :, c], np.float32), mode="F")
                         .resize((w, h), bilinear)) for c in range(hwc.shape[2])]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def _channels(hwc: np.ndarray, c: int, name: str) -> np.ndarray:
    """A float HWC array with ``c`` channels: grey from colour by ITU-R 601-2 luminance
    (Pillow's "L"), colour from grey by repeating, an alpha channel dropped."""
    have = hwc.shape[2]
    if have in (2, 4):  # grey + alpha, RGBA: drop the alpha
        hwc, have = hwc[:, :, :have - 1], have - 1
    if have == c:
        return hwc
    if c == 1 and have == 3:
        return hwc @ np.array([[0.299], [0.587], [0.114]], dtype=hwc.dtype)
    if have == 1:
        return np.repeat(hwc, c, axis=2)
    raise ValueError(f"{name}: has {have} channels, the model takes {c}")


def _npy_images(path: Path, name: str, shape: tuple[int, int, int]) -> list[tuple[str, np.ndarray]]:
    """(label, float HWC image in [0, 1]) for each image a .npy file holds."""
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{name}: the .npy file holds Python objects; nnx never unpickles "
                             "files (save a uint8 or float array)") from None
        raise ValueError(f"{name}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{name}: not a readable .npy file ({exc})") from None
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: holds a {type(a).__name__}, not one array (an .npz archive?)")
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{name}: integer pixels must lie in 0..255, got {a.min()}..{a.max()}")
        a = a.astype(np.float32) / np.float32(255)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32)
        if not np.isfinite(a).all() or (a.size and (a.min() < 0 or a.max() > 1)):
            raise ValueError(f"{name}: float pixels must be finite and lie in [0, 1] (uint8 "
                             f"arrays are scaled by 1/255), got {np.nanmin(a):.4g}..{np.nanmax(a):.4g}")
    else:
        raise ValueError(f"{name}: pixels must be uint8 (0..255) or floats in [0, 1], got dtype "
                         f"{a.dtype}")
    c = shape[0]
    chan = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA
    if a.ndim == 2:  # (H, W)
        batch = a[None, :, :, None]
    elif a.ndim == 3 and a.shape[0] == c and a.shape[2] != c:  # (C, H, W)
        batch = np.moveaxis(a, 0, 2)[None]
    elif a.ndim == 3 and a.shape[2] in chan:  # (H, W, C)
        batch = a[None]
    elif a.ndim == 3:  # (N, H, W): grey images
        batch = a[:, :, :, None]
    elif a.ndim == 4 and (a.shape[1] == c or (a.shape[1] in chan and a.shape[3] not in chan)):
        batch = np.moveaxis(a, 1, 3)  # (N, C, H, W)
    elif a.ndim == 4 and a.shape[3] in chan:  # (N, H, W, C)
        batch = a
    else:
        raise ValueError(f"{name}: an array of shape {a.shape} is not an image: expected (H, W), "
                         "(H, W, C), (C, H, W), or a stack (N, H, W), (N, C, H, W), (N, H, W, C)")
    if batch.shape[0] == 0:
        raise ValueError(f"{name}: holds no images (shape {a.shape})")
    many = batch.shape[0] > 1 or a.ndim == 4
    return [(f"{name}[{i}]" if many else name, img) for i, img in enumerate(batch)]


def read_images(path: str | os.PathLike[str], shape: Sequence[int], invert: bool = False
                ) -> list[tuple[str, np.ndarray]]:
    """The images in file ``path`` as (label, float32 (C, H, W) array in [0, 1]) pairs,
    ready for a model taking ``shape`` = (C, H, W): one pair for an image file, one per
    image for a ``.npy`` stack (labelled ``file[i]``).

    A ``.npy`` file (read with ``allow_pickle=False``) holds uint8 pixels (or other
    integers in 0..255) or floats in [0, 1], as (H, W); (C, H, W) when C is the model's
    channel count; (H, W, C) with C in 1..4; otherwise a 3-d array is a stack (N, H, W) of
    grey images; 4-d arrays are stacks (N, C, H, W) or (N, H, W, C). ``invert``: 1 − x
    (dark strokes on a light background made like MNIST's light-on-dark). Raises
    FileNotFoundError, ValueError naming the file for unreadable files, ImportError for
    an image file (or a .npy image of another size) without Pillow."""
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file" if not p.exists() else
                                f"{name}: not a file")
    c, h, w = (int(s) for s in shape)
    if p.suffix.lower() == ".npy":
        images = _npy_images(p, name, (c, h, w))
    else:
        Image = _pillow()
        try:
            with Image.open(p) as img:
                img.load()
                mode = "L" if c == 1 else "RGB"
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits
                    arr = np.asarray(img, dtype=np.float64)
                    top = 65535.0 if arr.max(initial=0) > 255 else 255.0
                    img = Image.fromarray(np.round(arr / top * 255).astype(np.uint8), mode="L")
                if img.mode != mode:
                    img = img.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), getattr(Image, "Resampling", Image).BILINEAR)
                hwc = np.asarray(img, dtype=np.uint8).reshape(h, w, -1)
        except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{name}: not an image Pillow can read ({why})") from None
        except Image.DecompressionBombError as exc:
            raise ValueError(f"{name}: {exc}") from None
        images = [(name, hwc.astype(np.float32) / np.float32(255))]
    out = []
    for label, hwc in images:
        hwc = _resize(_channels(hwc, c, label), h, w, label)
        chw = np.ascontiguousarray(np.moveaxis(hwc, 2, 0), dtype=np.float32)
        out.append((label, 1.0 - chw if invert else chw))
    return out


# ---------------------------------------------------------------------------
# predicting
# ---------------------------------------------------------------------------
@dataclass
class Prediction:
    """One image's result: ``name`` (the file, or ``file[i]`` in a .npy stack) and ``top``,
    the most probable classes as (index, class name, probability), most probable first."""

    name: str
    top: list[tuple[int, str, float]]


def probabilities(model: Any, images: np.ndarray, spec: InputSpec, batch_size: int = 256
                  ) -> np.ndarray:
    """Softmax probabilities (N, classes), float64, of ``model`` in eval mode for
    ``images`` (N, C, H, W) in [0, 1], normalised as ``spec`` says, batch by batch on the
    model's backend and in its dtype."""
    from . import backends as _backends
    from .data.transforms import Normalize
    from .module import backend_of

    params = [p.data for p in model.parameters()]
    be = backend_of(params[0]) if params else None
    dtype = str(np.asarray(_backends.to_numpy(params[0])).dtype) if params else "float32"
    norm = Normalize(*spec.normalize) if spec.normalize is not None else None
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = np.asarray(images[i:i + batch_size], dtype=dtype)
            xb = _backends.asarray(x, be) if be is not None else x
            if norm is not None:
                xb = norm.apply(xb)
            logits = np.asarray(_backends.to_numpy(model(xb)), dtype=np.float64)
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            out.append(e / e.sum(axis=1, keepdims=True))
    finally:
        model.train(was_training)
    return np.concatenate(out)


def predict_files(checkpoint: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]],
                  top: int = 1, backend: Any = None, invert: bool = False,
                  batch_size: int = 256) -> list[Prediction]:
    """Classify the images in ``files`` with the model in ``checkpoint`` (on ``backend``,
    default the active one); the ``top`` most probable classes of each. Every file is
    read before anything runs, so a bad file fails the call with its name."""
    from .checkpoint import load

    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    ck = load(checkpoint)
    spec = input_spec(ck)
    items = [item for f in files for item in read_images(f, spec.shape, invert)]
    if not items:
        raise ValueError("no images to classify")
    model = ck.build_model(backend)
    probs = probabilities(model, np.stack([img for _, img in items]), spec, batch_size)
    classes = spec.classes
    if classes and len(classes) != probs.shape[1]:
        raise ValueError(f"{checkpoint}: the model has {probs.shape[1]} outputs but the checkpoint "
                         f"names {len(classes)} classes")
    if not classes:
        classes = tuple(str(i) for i in range(probs.shape[1]))
    k = min(top, probs.shape[1])
    results = []
    for (name, _), p in zip(items, probs):
        order = np.argsort(-p, kind="stable")[:k]
        results.append(Prediction(name, [(int(i), classes[int(i)], float(p[i])) for i in order]))
    return results


def format_prediction(p: Prediction) -> str:
    """``FILE: 7 (7) 0.9812`` and, for several classes, ``, 9 (9) 0.0101, ...``."""
    return f"{p.name}: " + ", ".join(f"{i} ({name}) {prob:.4f}" for i, name, prob in p.top)


__all__ = ["InputSpec", "Prediction", "format_prediction", "input_spec", "predict_files",
           "probabilities", "read_images"]
