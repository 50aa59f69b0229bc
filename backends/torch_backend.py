"""PyTorch tensors on the CPU or a CUDA device (plain tensors; nnx does its own backward)."""

from __future__ import annotations

import importlib.util
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend, BackendUnavailableError

NAME = "torch"
INSTALL_HINT = "pip install 'nnx-array[torch]' (or pip install torch)"


def probe(device: Any = None) -> str | None:
    """None when usable (on ``device`` if given), else the reason it is not."""
    if importlib.util.find_spec("torch") is None:
        return f"PyTorch is not installed; {INSTALL_HINT}"
    try:
        import torch
    except Exception as exc:  # a broken install must not crash the probe
        return f"importing torch failed: {type(exc).__name__}: {exc}"
    if device is not None and str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            return "torch has no usable CUDA device here (torch.cuda.is_available() is False)"
    return None


def device_count() -> int:
    """How many CUDA devices PyTorch sees (0 without torch or CUDA)."""
    if importlib.util.find_spec("torch") is None:
        return 0
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken install counts as no device
        return 0


def owns(x: Any) -> bool:
    return array_api_compat.is_torch_array(x)


def to_numpy(x: Any) -> np.ndarray:
    """The values of tensor ``x`` in host memory (shared with a CPU tensor)."""
    return x.detach().cpu().numpy()


class TorchBackend(Backend):
    """PyTorch tensors on the CPU or one CUDA device."""

    name = NAME

    def __init__(self, device: Any = None) -> None:
        reason = probe(device)
        if reason:
            raise BackendUnavailableError(
                f"Backend 'torch' is unavailable: {reason}. "
                "Use nnx.set_backend('auto') to pick what this machine has."
            )
        import array_api_compat.torch as xp_torch
        import torch

        self._torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device if not isinstance(device, int) else f"cuda:{device}")
        except (RuntimeError, TypeError) as exc:
            raise BackendUnavailableError(f"torch backend: bad device {device!r}: {exc}") from None
        if dev.type == "cuda":
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise BackendUnavailableError(
                    f"torch backend: CUDA device {index} does not exist; "
                    f"this machine has {torch.cuda.device_count()}."
                )
            dev = torch.device("cuda", index)
        super().__init__(xp_torch, dev)
        self.is_host = dev.type == "cpu"

    def owns(self, x: Any) -> bool:
        return owns(x)

    def from_numpy(self, a: np.ndarray) -> Any:
        if not a.flags.writeable:
            a = a.copy()
        return self._torch.as_tensor(a, device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return to_numpy(x)

    def device_uid(self) -> str:
        if self.device.type == "cuda":
            try:
                props = self._torch.cuda.get_device_properties(self.device)
                return str(getattr(props, "uuid", None) or f"cuda:{self.device.index}")
            except Exception:  # noqa: BLE001
                return f"cuda:{self.device.index}"
        return str(self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def versions(self) -> dict[str, str]:
        out = {"torch": self._torch.__version__}
        if self.device.type == "cuda":
            out["cuda"] = str(self._torch.version.cuda)
            out["gpu"] = self._torch.cuda.get_device_name(self.device)
        return out


def create(device: Any = None) -> TorchBackend:
    return TorchBackend(device)
