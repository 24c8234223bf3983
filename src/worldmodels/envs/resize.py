"""Area resizing to 64x64, exactly OpenCV's INTER_AREA, 2.5x as fast on Doom's screen (33 vs 83 us a frame,
benchmarks/collect_throughput.py).

OpenCV's INTER_AREA sets each output pixel to the mean of the source area it covers. When the scale is not
an integer (Doom's 160x120 screen to 64x64 is 2.5 x 1.875) OpenCV takes a slow general path. The same mean in integer arithmetic: along an axis of `src` pixels resized to
`dst`, the pattern repeats every p = src/g source pixels (g = gcd(src, dst)), which map to q = dst/g outputs
with integer weights (the overlaps, in units of 1/q of a pixel). So every output is N / den for an integer N,
computed exactly in float32 by two small matrix products per block (vertical, then horizontal).

When den is odd, N / den is never halfway between two integers: it lies at least 1 / (2 den) from a
rounding boundary, far more than the float error of OpenCV's own computation, so rounding N / den gives
OpenCV's result pixel for pixel (tests/test_envs.py checks it on random frames). Shapes where that does not
hold use OpenCV. Doom: den = 75; CarRacing's 84x96 crop: den = 63.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import gcd

import cv2
import numpy as np

MAX_DEN = 255
"""Largest denominator the integer path is used for: 1/(2 den) then dwarfs every float error involved."""


def _axis_weights(src: int, dst: int) -> tuple[np.ndarray, int]:
    """Integer weights (q, p) of one period of the area resize along an axis, and their row sum."""
    g = gcd(src, dst)
    p, q = src // g, dst // g
    w = np.zeros((q, p), np.int64)
    for d in range(q):
        lo, hi = Fraction(d * p, q), Fraction((d + 1) * p, q)
        for s in range(p):
            overlap = min(hi, Fraction(s + 1)) - max(lo, Fraction(s))
            if overlap > 0:
                w[d, s] = int(overlap * q)
    w //= np.gcd.reduce(w.ravel())
    return w, int(w[0].sum())


class AreaResize:
    """Resize (T, H, W, C) uint8 frames to (T, out, out, C) exactly as cv2.INTER_AREA does."""

    def __init__(self, height: int, width: int, channels: int = 3, out: int = 64) -> None:
        self.shape, self.out = (height, width, channels), out
        wy, den_y = _axis_weights(height, out)
        wx, den_x = _axis_weights(width, out)
        self.den = den_y * den_x
        self.exact = (
            height > out and width > out and self.den % 2 == 1 and self.den <= MAX_DEN
        )  # fmt: skip
        self.py = wy.shape[1]
        self.px = wx.shape[1]
        self.wy = wy.astype(np.float32)  # (qy, py): a block of py rows -> qy rows
        # (px * C, qx * C): a block of px pixels (channels interleaved) -> qx pixels, channel by channel
        self.kx = np.kron(wx.T, np.eye(channels)).astype(np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        T, (H, W, C), o = len(frames), self.shape, self.out
        if frames.shape[1:] != self.shape:
            raise ValueError(f"AreaResize for {self.shape} got frames of shape {frames.shape[1:]}")
        if not self.exact:
            return (
                np.stack([_cv2_area(f, o) for f in frames])
                if T
                else np.zeros((0, o, o, C), np.uint8)
            )
        rows = np.matmul(
            self.wy, frames.reshape(T * H // self.py, self.py, W * C).astype(np.float32)
        )
        n = rows.reshape(-1, self.px * C) @ self.kx  # (T * out * W / px, qx * C): the integers N
        n *= np.float32(1 / self.den)
        return np.rint(n, out=n).astype(np.uint8).reshape(T, o, o, C)


def _cv2_area(frame: np.ndarray, out: int) -> np.ndarray:
    r = cv2.resize(frame, (out, out), interpolation=cv2.INTER_AREA)
    return r if r.ndim == 3 else r[..., None]


@lru_cache(maxsize=8)
def area_resize(height: int, width: int, channels: int = 3, out: int = 64) -> AreaResize:
    """The resizer for one input shape (built once: the weights are computed with fractions)."""
    return AreaResize(height, width, channels, out)
