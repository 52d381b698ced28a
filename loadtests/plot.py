"""PNG plots with the standard library only (zlib + struct): no matplotlib/numpy in the gate's image.

A tiny RGB canvas with lines, boxes and a 5x7 bitmap font, enough for the two plots the reports
need: the latency distribution against the SLA, and p95 against concurrency for a sweep.
"""

from __future__ import annotations

import math
import struct
import zlib

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (200, 200, 200)
BAR: Color = (110, 140, 190)
BAND: Color = (200, 220, 250)
SLA_RED: Color = (220, 30, 30)
P95_BLUE: Color = (20, 60, 200)

_GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14), "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14), "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8), "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12), "A": (14, 17, 17, 31, 17, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28), "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16), "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12), "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31), "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16), "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17), "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4), "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17), "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    ".": (0, 0, 0, 0, 0, 12, 12), "-": (0, 0, 0, 31, 0, 0, 0), ":": (0, 12, 12, 0, 12, 12, 0),
    "/": (0, 1, 2, 4, 8, 16, 0), "%": (24, 25, 2, 4, 8, 19, 3), "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8), "=": (0, 0, 31, 0, 31, 0, 0), "<": (2, 4, 8, 16, 8, 4, 2),
    ">": (8, 4, 2, 1, 2, 4, 8), ",": (0, 0, 0, 0, 12, 4, 8), "+": (0, 4, 4, 31, 4, 4, 0),
    "[": (14, 8, 8, 8, 8, 8, 14), "]": (14, 2, 2, 2, 2, 2, 14), " ": (0, 0, 0, 0, 0, 0, 0),
}


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.w, self.h = width, height
        self.px = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, c: Color) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def get(self, x: int, y: int) -> Color:
        i = (y * self.w + x) * 3
        return self.px[i], self.px[i + 1], self.px[i + 2]

    def box(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        for y in range(max(0, min(y0, y1)), min(self.h, max(y0, y1) + 1)):
            for x in range(max(0, min(x0, x1)), min(self.w, max(x0, x1) + 1)):
                self.set(x, y, c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: Color, width: int = 1) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        half = width // 2
        while True:
            self.box(x0 - half, y0 - half, x0 - half + width - 1, y0 - half + width - 1, c)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, s: str, c: Color = BLACK, scale: int = 1) -> None:
        for ch in s.upper():
            rows = _GLYPHS.get(ch, _GLYPHS[" "])
            for r, bits in enumerate(rows):
                for col in range(5):
                    if bits & (1 << (4 - col)):
                        self.box(x + col * scale, y + r * scale, x + col * scale + scale - 1,
                                 y + r * scale + scale - 1, c)
            x += 6 * scale

    @staticmethod
    def text_width(s: str, scale: int = 1) -> int:
        return len(s) * 6 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / max(ticks, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)



class _Axes:
    """Maps data to pixels inside fixed margins, and draws the frame, ticks and labels."""

    LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50

    def __init__(self, canvas: Canvas, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.c = canvas
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right = self.LEFT, canvas.w - self.RIGHT
        self.top, self.bottom = self.TOP, canvas.h - self.BOTTOM

    def px(self, x: float) -> int:
        return round(self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left))

    def py(self, y: float) -> int:
        return round(self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top))

    def frame(self, title: str, x_label: str, y_label: str, x_ticks: list[tuple[float, str]],
              y_ticks: list[tuple[float, str]]) -> None:
        c = self.c
        for v, label in x_ticks:
            x = self.px(v)
            c.line(x, self.top, x, self.bottom, GREY)
            c.text(x - Canvas.text_width(label) // 2, self.bottom + 6, label)
        for v, label in y_ticks:
            y = self.py(v)
            c.line(self.left, y, self.right, y, GREY)
            c.text(self.left - Canvas.text_width(label) - 4, y - 3, label)
        c.line(self.left, self.bottom, self.right, self.bottom, BLACK)
        c.line(self.left, self.top, self.left, self.bottom, BLACK)
        c.text(self.left, 12, title, scale=2)
        c.text((self.left + self.right - Canvas.text_width(x_label)) // 2, self.bottom + 24, x_label)
        c.text(4, self.top - 14, y_label)


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}"


def latency_histogram(values: list[float], sla_s: float, p95_s: float | None,
                      ci: tuple[float | None, float | None], width: int = 800, height: int = 400) -> bytes:
    """Histogram of end-to-end latencies with the SLA (red), p95 (blue) and its 95% CI (shaded)."""
    c = Canvas(width, height)
    finite = sorted(v for v in values if math.isfinite(v))
    top_v = max([sla_s * 1.15] + ([finite[min(len(finite) - 1, math.ceil(0.999 * len(finite)))]] if finite else []))
    step = _nice_step(top_v)
    x_max = step * math.ceil(top_v / step)
    bins = 60
    counts = [0] * bins
    for v in finite:
        counts[min(bins - 1, int(v / x_max * bins))] += 1
    y_max = max([*counts, 1]) * 1.1
    ax = _Axes(c, (0.0, x_max), (0.0, y_max))
    lo, hi = ci
    if lo is not None or hi is not None:
        ax_lo = ax.px(lo if lo is not None else 0.0)
        ax_hi = ax.px(min(hi, x_max) if hi is not None and math.isfinite(hi) else x_max)
        c.box(ax_lo, ax.top, ax_hi, ax.bottom - 1, BAND)
    y_step = _nice_step(y_max, 4)
    ax.frame("LATENCY VS SLA", "END-TO-END LATENCY (S)", "REQUESTS",
             [(i * step, _label(i * step)) for i in range(int(x_max / step) + 1)],
             [(i * y_step, f"{i * y_step:g}") for i in range(int(y_max / y_step) + 1)])
    for i, n in enumerate(counts):
        if n:
            c.box(ax.px(i * x_max / bins) + 1, ax.py(n), ax.px((i + 1) * x_max / bins) - 1, ax.bottom - 1, BAR)
    if p95_s is not None and math.isfinite(p95_s) and p95_s <= x_max:
        x = ax.px(p95_s)
        c.line(x, ax.top, x, ax.bottom, P95_BLUE, 2)
        label = f"P95 {p95_s:.3f}"
        c.text(x - Canvas.text_width(label) - 4, ax.top + 2, label, P95_BLUE)
    x = ax.px(sla_s)
    c.line(x, ax.top, x, ax.bottom, SLA_RED, 3)
    c.text(x + 4, ax.top + 2, f"SLA {sla_s:g}", SLA_RED)
    return c.png()


def sweep_plot(points: list[tuple[int, float | None]], sla_s: float, knee: int | None,
               width: int = 800, height: int = 400) -> bytes:
    """p95 end-to-end latency against concurrency (log2 axis), with the SLA line and the knee."""
    c = Canvas(width, height)
    xs = [p for p, _ in points] or [1]
    finite = [v for _, v in points if v is not None and math.isfinite(v)]
    top_v = max([sla_s * 1.2, *finite])
    step = _nice_step(top_v)
    y_max = step * math.ceil(top_v / step)
    lx0, lx1 = math.log2(min(xs)), math.log2(max(xs))
    ax = _Axes(c, (lx0 - 0.25, lx1 + 0.25 if lx1 > lx0 else lx0 + 1), (0.0, y_max))
    ax.frame("P95 VS CONCURRENCY", "CONCURRENT REQUESTS", "P95 E2E (S)",
             [(math.log2(x), str(x)) for x in xs], [(i * step, _label(i * step)) for i in range(int(y_max / step) + 1)])
    y = ax.py(sla_s)
    c.line(ax.left, y, ax.right, y, SLA_RED, 3)
    c.text(ax.right - 80, y - 12, f"SLA {sla_s:g}", SLA_RED)
    prev: tuple[int, int] | None = None
    for x, v in points:
        px = ax.px(math.log2(x))
        py = ax.py(min(v, y_max)) if v is not None and math.isfinite(v) else ax.top
        if prev is not None:
            c.line(prev[0], prev[1], px, py, P95_BLUE, 2)
        c.box(px - 3, py - 3, px + 3, py + 3, P95_BLUE)
        prev = (px, py)
    if knee is not None:
        px = ax.px(math.log2(knee))
        c.text(px - 20, ax.bottom - 14, f"KNEE {knee}", BLACK)
    return c.png()
