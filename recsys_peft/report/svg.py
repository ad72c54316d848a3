"""Inline SVG charts for the HTML report: drawn in Python, so the page needs no script or network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Colour-blind-safe pair (Okabe-Ito blue and orange) for base and adapted series.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")
FONT = "font-family='sans-serif' font-size='11'"


@dataclass(frozen=True)
class Series:
    """One named line or bar series; ``low``/``high`` are optional interval bounds per point."""

    name: str
    values: Sequence[float | None]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts = []
    for index, entry in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        left = x + index * 130
        parts.append(f"<rect x='{left:.1f}' y='{y - 9:.1f}' width='10' height='10' fill='{colour}'/>")
        parts.append(f"<text x='{left + 14:.1f}' y='{y:.1f}' {FONT}>{escape(entry.name)}</text>")
    return parts


def line_chart(chart_id: str, title: str, x_values: Sequence[float], series: Sequence[Series],
               x_label: str, y_label: str, width: int = 460, height: int = 260) -> str:
    """Draw lines over a shared x axis; a None value leaves a gap (for example epoch 0's loss)."""
    left, right, top, bottom = 56, 16, 30, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [v for s in series for v in s.values if v is not None]
    y_low, y_high = (min(points), max(points)) if points else (0.0, 1.0)
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    x_low, x_high = (min(x_values), max(x_values)) if x_values else (0.0, 1.0)
    x_span = (x_high - x_low) or 1.0

    def sx(x: float) -> float:
        return left + (x - x_low) / x_span * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts = [f"<svg id='{chart_id}' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}'>",
             f"<text x='{left}' y='16' {FONT} font-weight='bold'>{escape(title)}</text>"]
    for tick in _ticks(y_low, y_high):
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{sy(tick):.1f}' y2='{sy(tick):.1f}' "
                     f"stroke='#ddd'/>")
        parts.append(f"<text x='{left - 4}' y='{sy(tick) + 4:.1f}' text-anchor='end' {FONT}>{tick:.3g}</text>")
    for x in x_values:
        parts.append(f"<text x='{sx(x):.1f}' y='{top + plot_h + 14}' text-anchor='middle' {FONT}>{x:g}</text>")
    parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 16}' text-anchor='middle' {FONT}>"
                 f"{escape(x_label)}</text>")
    parts.append(f"<text transform='translate(12 {top + plot_h / 2:.1f}) rotate(-90)' text-anchor='middle' "
                 f"{FONT}>{escape(y_label)}</text>")
    for index, entry in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        coords = [(sx(x), sy(y)) for x, y in zip(x_values, entry.values) if y is not None]
        if coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f"<polyline class='series' points='{path}' fill='none' stroke='{colour}' stroke-width='2'/>")
        for x, y in coords:
            parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{colour}'/>")
    parts.extend(_legend(series, left + plot_w - 130 * len(series) + 20, height - 2))
    parts.append("</svg>")
    return "\n".join(parts)


def interval_bar_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series],
                       value_label: str, width: int = 720) -> str:
    """Draw horizontal grouped bars, one group per label, with interval whiskers where given."""
    left, right, top, bottom = 110, 24, 30, 48
    group_h = 10 + 12 * len(series)
    height = top + bottom + group_h * len(labels)
    plot_w = width - left - right
    highs = [h for s in series for h in (s.high or []) if h is not None]
    values = [v for s in series for v in s.values if v is not None]
    x_high = max(highs + values + [1e-9]) * 1.05

    def sx(x: float) -> float:
        return left + max(x, 0.0) / x_high * plot_w

    parts = [f"<svg id='{chart_id}' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}'>",
             f"<text x='{left}' y='16' {FONT} font-weight='bold'>{escape(title)}</text>"]
    for tick in _ticks(0.0, x_high):
        parts.append(f"<line x1='{sx(tick):.1f}' x2='{sx(tick):.1f}' y1='{top}' y2='{height - bottom}' "
                     f"stroke='#ddd'/>")
        parts.append(f"<text x='{sx(tick):.1f}' y='{height - bottom + 14}' text-anchor='middle' {FONT}>"
                     f"{tick:.3g}</text>")
    parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 20}' text-anchor='middle' {FONT}>"
                 f"{escape(value_label)}</text>")
    for row, label in enumerate(labels):
        y0 = top + row * group_h + 5
        parts.append(f"<text x='{left - 6}' y='{y0 + group_h / 2:.1f}' text-anchor='end' {FONT}>{escape(label)}</text>")
        for index, entry in enumerate(series):
            value = entry.values[row]
            if value is None:
                continue
            colour = COLOURS[index % len(COLOURS)]
            y = y0 + index * 12
            parts.append(f"<rect class='bar' x='{left}' y='{y:.1f}' width='{sx(value) - left:.1f}' height='10' "
                         f"fill='{colour}'><title>{escape(entry.name)} {escape(label)}: {value:.4f}</title></rect>")
            if entry.low is not None and entry.high is not None:
                low, high, mid = sx(entry.low[row]), sx(entry.high[row]), y + 5
                parts.append(f"<path class='interval' d='M{low:.1f},{mid:.1f}H{high:.1f}M{low:.1f},{mid - 4:.1f}"
                             f"V{mid + 4:.1f}M{high:.1f},{mid - 4:.1f}V{mid + 4:.1f}' stroke='#333' fill='none'/>")
    parts.extend(_legend(series, left, height - 2))
    parts.append("</svg>")
    return "\n".join(parts)
