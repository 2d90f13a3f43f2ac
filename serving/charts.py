"""Small inline-SVG charts for the reports services serve as HTML pages (shadow_ab's
comparison, online_ab's experiment): bars per bin for one or two series, and a line over time.

Written here from the numbers, not with a plotting library: a report is a few dozen shapes,
matplotlib is ~40 MB with its fonts for the image, and the small SVG-chart packages (pygal,
leather) are unmaintained. Every chart has a title, axis labels from the data, and a <title>
per shape, so a value can be read by hovering.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

W, H, PAD = 460, 180, 30
COLOURS = ("#1a73e8", "#e8710a", "#188038", "#9aa0a6")


def _frame(title: str) -> list[str]:
    return [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{PAD}" y="14" font-size="11">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
    ]


def bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    percent: bool = False,
) -> str:
    """Grouped bars: one group per label, one bar per series (name, values by label)."""
    top = max([v for _, values in series for v in values] + [1e-9])
    slot = (W - 2 * PAD) / max(len(labels), 1)
    width = (slot - 4) / max(len(series), 1)
    parts = _frame(f"{title} (max {top:.0%})" if percent else f"{title} (max {top:.3g})")
    for i, label in enumerate(labels):
        x0 = PAD + i * slot + 2
        for j, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0.0
            h = (H - 2 * PAD) * value / top
            shown = f"{value:.1%}" if percent else f"{value:.4g}"
            parts.append(
                f'<rect x="{x0 + j * width:.1f}" y="{H - PAD - h:.1f}" width="{width:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                f"<title>{html.escape(name)} {html.escape(label)}: {shown}</title></rect>"
            )
        if len(labels) <= 12 or i % (len(labels) // 10 + 1) == 0:
            parts.append(
                f'<text x="{x0 + slot / 2 - 2:.1f}" y="{H - PAD + 12}" font-size="9" '
                f'text-anchor="middle">{html.escape(label)}</text>'
            )
    parts.append(_legend([name for name, _ in series]))
    return "".join(parts) + "</svg>"


def line(title: str, points: Sequence[tuple[str, float]], *, floor: float = 0.0) -> str:
    """One series over ordered x labels (e.g. time buckets), from `floor` to the maximum."""
    parts = _frame(title)
    if not points:
        return "".join(parts) + "</svg>"
    top = max(max(v for _, v in points), floor + 1e-9)
    step = (W - 2 * PAD) / max(len(points) - 1, 1)
    xy = [
        (PAD + i * step, H - PAD - (H - 2 * PAD) * (v - floor) / (top - floor))
        for i, (_, v) in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>')
    for (x, y), (label, v) in zip(xy, points, strict=True):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{COLOURS[0]}">'
            f"<title>{html.escape(label)}: {v:.4g}</title></circle>"
        )
    for (x, _), (label, _) in list(zip(xy, points, strict=True))[:: max(len(points) // 6, 1)]:
        parts.append(
            f'<text x="{x:.1f}" y="{H - PAD + 12}" font-size="9" text-anchor="middle">'
            f"{html.escape(label)}</text>"
        )
    parts.append(
        f'<text x="{W - PAD}" y="28" font-size="9" text-anchor="end">{floor:g} to {top:.3g}</text>'
    )
    return "".join(parts) + "</svg>"


def _legend(names: Sequence[str]) -> str:
    out = []
    for j, name in enumerate(names):
        x = W - PAD - 110 * (len(names) - j)
        out.append(
            f'<rect x="{x}" y="22" width="9" height="9" fill="{COLOURS[j % len(COLOURS)]}"/>'
            f'<text x="{x + 12}" y="30" font-size="10">{html.escape(name)}</text>'
        )
    return "".join(out)


def page(title: str, body: Sequence[str]) -> str:
    """A self-contained HTML page (no script, no external asset)."""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:60em}.no_go,.critical{color:#c5221f}"
        ".go,.ok{color:#188038}.insufficient_data{color:#e37400}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "svg{margin:.5em 1em .5em 0}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """The share of `values` in each bin of `edges`; values beyond them count in the end bins."""
    if not values:
        return [0.0] * (len(edges) - 1)
    clipped = np.clip(np.asarray(values, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=np.asarray(edges, dtype=np.float64))
    return [float(c) / len(values) for c in counts]
