"""The course report's nested-loop Conv2d forward, timed against nnx's Conv2d.

``ReportConv2D.forward`` is the course report's code (section 卷积层, 前向传播)
as written there: loops over batch, output channel, output row and output
column, each output computed as ``np.sum(patch * W[oc]) + b[oc, 0, 0]`` into
a float64 ``np.zeros`` buffer. The report elides its padding code
(``# ...填充代码...``); zero padding with ``np.pad`` stands in for it.

``python -m bench.seed_conv`` prints one line ``BENCH_RESULT {json}`` with
both forward times, the speed-up and the largest absolute difference between
the two outputs (same weights, same input).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MARKER = "BENCH_RESULT "


class ReportConv2D:
    """The course report's conv2D layer, forward only: W (out, in, kH, kW), b (out, 1, 1)."""

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0) -> None:
        self.W = W
        self.b = b
        self.out_channels = W.shape[0]
        self.kernel_size = (W.shape[2], W.shape[3])
        self.stride = (stride, stride)
        self.padding = padding

    def forward(self, X: np.ndarray) -> np.ndarray:
        # 存储输入用于反向传播
        self.input = X
        batch_size = X.shape[0]

        # 如果指定了则应用填充 (the report elides this; zero padding as np.pad)
        p = self.padding
        self.input_padded = np.pad(X, ((0, 0), (0, 0), (p, p), (p, p))) if p else X
        padded_height, padded_width = self.input_padded.shape[2], self.input_padded.shape[3]

        # 计算输出维度
        output_height = (padded_height - self.kernel_size[0]) // self.stride[0] + 1
        output_width = (padded_width - self.kernel_size[1]) // self.stride[1] + 1

        # 初始化输出
        output = np.zeros((batch_size, self.out_channels, output_height, output_width))

        # 执行卷积操作
        for b in range(batch_size):
            for oc in range(self.out_channels):
                for h in range(output_height):
                    h_start = h * self.stride[0]
                    h_end = h_start + self.kernel_size[0]

                    for w in range(output_width):
                        w_start = w * self.stride[1]
                        w_end = w_start + self.kernel_size[1]

                        # 从输入中提取当前块
                        patch = self.input_padded[b, :, h_start:h_end, w_start:w_end]

                        # 执行卷积（元素乘法和求和）
                        output[b, oc, h, w] = np.sum(patch * self.W[oc]) + self.b[oc, 0, 0]
        return output


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` calls (ms) and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times), out


def compare(batch: int = 8, in_channels: int = 1, out_channels: int = 6, size: int = 28,
            kernel: int = 5, padding: int = 2, seed_repeats: int = 3,
            nnx_repeats: int = 50) -> dict[str, Any]:
    """Time both forwards on one random float32 input; check they agree."""
    import nnx

    nnx.manual_seed(0)
    with nnx.use_backend("numpy"):
        layer = nnx.Conv2d(in_channels, out_channels, kernel, padding=padding)
    w = nnx.to_numpy(layer.weight.data)
    b = nnx.to_numpy(layer.bias.data).reshape(out_channels, 1, 1)
    seed_layer = ReportConv2D(w, b, padding=padding)
    x = np.random.default_rng(0).random((batch, in_channels, size, size), dtype=np.float32)

    layer(x)  # warm up nnx once (first-call allocations)
    nnx_ms, nnx_out = _median_time(lambda: layer(x), nnx_repeats)
    seed_ms, seed_out = _median_time(lambda: seed_layer.forward(x), seed_repeats)
    nnx_out = np.asarray(nnx.to_numpy(nnx_out))
    return {
        "input_shape": [batch, in_channels, size, size],
        "weight_shape": list(w.shape), "padding": padding, "output_shape": list(seed_out.shape),
        "seed_repeats": seed_repeats, "nnx_repeats": nnx_repeats,
        "seed_forward_ms": seed_ms, "nnx_forward_ms": nnx_ms, "speedup": seed_ms / nnx_ms,
        "max_abs_diff": float(np.max(np.abs(seed_out - nnx_out.astype(np.float64)))),
        "max_abs_output": float(np.max(np.abs(seed_out))),
        "seed_dtype": str(seed_out.dtype), "nnx_dtype": str(nnx_out.dtype),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.seed_conv", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed-repeats", type=int, default=3)
    p.add_argument("--nnx-repeats", type=int, default=50)
    args = p.parse_args(argv)
    result = compare(batch=args.batch, seed_repeats=args.seed_repeats, nnx_repeats=args.nnx_repeats)
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
