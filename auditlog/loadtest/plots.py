"""Inline SVG charts for the HTML report, drawn here so the report needs nothing fetched.

Three shapes cover the report: lines over time (throughput, percentiles), stacked bars over
time (errors by kind) and a histogram on a logarithmic axis (latency). Each function returns
one ``<svg>`` element as text; sizes are in CSS pixels and the element scales to its container.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Final

WIDTH: Final = 760
HEIGHT: Final = 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 30, 40
COLORS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f")

Point = tuple[float, float]


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high``."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k" if v % 1000 == 0 else f"{v:,.0f}"
    return f"{v:g}" if v == int(v) else f"{v:.3g}"


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label="{escape(title)}" class="chart">',
        f'<text x="{_LEFT}" y="18" class="title">{escape(title)}</text>',
        f'<text x="{(WIDTH + _LEFT) / 2}" y="{HEIGHT - 6}" class="axis"'
        f' text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{(HEIGHT + _TOP - _BOTTOM) / 2}" class="axis" text-anchor="middle"'
        f' transform="rotate(-90 14 {(HEIGHT + _TOP - _BOTTOM) / 2})">{escape(y_label)}</text>',
    ]


class _Axes:
    def __init__(self, x_max: float, y_max: float) -> None:
        # Headroom above the highest value, so a flat line at the maximum does not run along
        # the frame's top.
        self.y_ticks = nice_ticks(y_max * 1.05)
        self.x_ticks = nice_ticks(x_max, 8)
        self.x_max = self.x_ticks[-1] or 1.0
        self.y_max = self.y_ticks[-1] or 1.0
        self.w = WIDTH - _LEFT - _RIGHT
        self.h = HEIGHT - _TOP - _BOTTOM

    def x(self, v: float) -> float:
        return _LEFT + v / self.x_max * self.w

    def y(self, v: float) -> float:
        return _TOP + self.h - v / self.y_max * self.h

    def grid(self) -> list[str]:
        out = []
        for t in self.y_ticks:
            y = self.y(t)
            out.append(
                f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            )
            out.append(
                f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick"'
                f' text-anchor="end">{_fmt(t)}</text>'
            )
        for t in self.x_ticks:
            x = self.x(t)
            out.append(
                f'<text x="{x:.1f}" y="{_TOP + self.h + 16}" class="tick"'
                f' text-anchor="middle">{_fmt(t)}</text>'
            )
        return out


def _legend(labels: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    x = WIDTH - _RIGHT
    for label, color in reversed(labels):
        x -= 14 + 7 * len(label)
        out.append(f'<rect x="{x}" y="9" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="18" class="tick">{escape(label)}</text>')
        x -= 10
    return out


def line_chart(
    title: str, x_label: str, y_label: str, series: Sequence[tuple[str, Sequence[Point]]]
) -> str:
    """One polyline per (label, points) series, on shared axes from 0."""
    xs = [p[0] for _, pts in series for p in pts]
    ys = [p[1] for _, pts in series for p in pts]
    axes = _Axes(max(xs, default=1.0), max(ys, default=1.0))
    out = _frame(title, x_label, y_label) + axes.grid()
    labels = []
    for i, (label, points) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        labels.append((label, color))
        if points:
            path = " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>'
            )
    return "\n".join([*out, *_legend(labels), "</svg>"])


def stacked_bars(
    title: str,
    x_label: str,
    y_label: str,
    xs: Sequence[float],
    stacks: Sequence[tuple[str, Sequence[float]]],
) -> str:
    """Bars at each x (one second wide), each the sum of its stacks, drawn bottom up."""
    totals = [sum(s[1][i] for s in stacks) for i in range(len(xs))]
    axes = _Axes(max(xs, default=0.0) + 1, max(totals, default=0.0))
    out = _frame(title, x_label, y_label) + axes.grid()
    width = max(1.0, axes.x(1) - axes.x(0) - 1)
    labels = []
    for i, x in enumerate(xs):
        base = 0.0
        for j, (_, values) in enumerate(stacks):
            v = values[i]
            if v <= 0:
                continue
            top = axes.y(base + v)
            out.append(
                f'<rect x="{axes.x(x):.1f}" y="{top:.1f}" width="{width:.1f}"'
                f' height="{axes.y(base) - top:.1f}" fill="{COLORS[j % len(COLORS)]}"/>'
            )
            base += v
    labels = [(label, COLORS[j % len(COLORS)]) for j, (label, _) in enumerate(stacks)]
    if not any(totals):
        out.append(
            f'<text x="{(WIDTH + _LEFT) / 2}" y="{HEIGHT / 2}" class="axis"'
            ' text-anchor="middle">no errors</text>'
        )
    return "\n".join([*out, *_legend(labels), "</svg>"])


def log_histogram(title: str, buckets: Sequence[tuple[float, float, int]], bins: int = 48) -> str:
    """Counts of (low, high, count) value ranges (ms), regrouped into ``bins`` bars of equal
    width on a logarithmic axis, so microseconds and seconds show on one chart."""
    out = _frame(title, "latency (ms, log scale)", "requests")
    filled = [(max(lo, 1e-3), max(hi, 1e-3), n) for lo, hi, n in buckets if n > 0]
    if not filled:
        return "\n".join([*out, "</svg>"])
    lo_log = math.floor(math.log10(filled[0][0]) * 4) / 4
    hi_log = math.ceil(math.log10(filled[-1][1]) * 4) / 4
    hi_log = max(hi_log, lo_log + 0.25)
    span = hi_log - lo_log
    counts = [0] * bins
    for lo, hi, n in filled:
        mid = math.log10(math.sqrt(lo * hi))
        counts[min(bins - 1, int((mid - lo_log) / span * bins))] += n
    axes = _Axes(1.0, max(counts))
    out += [line for line in axes.grid() if 'text-anchor="middle"' not in line]
    bar = axes.w / bins
    for i, n in enumerate(counts):
        if n:
            top = axes.y(n)
            out.append(
                f'<rect x="{_LEFT + i * bar:.1f}" y="{top:.1f}" width="{bar - 1:.1f}"'
                f' height="{axes.y(0) - top:.1f}" fill="{COLORS[0]}"/>'
            )
    decade = math.ceil(lo_log)
    while decade <= hi_log:
        x = _LEFT + (decade - lo_log) / span * axes.w
        out.append(
            f'<text x="{x:.1f}" y="{_TOP + axes.h + 16}" class="tick"'
            f' text-anchor="middle">{_fmt(10.0**decade)}</text>'
        )
        decade += 1
    return "\n".join([*out, "</svg>"])
