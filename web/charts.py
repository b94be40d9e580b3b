"""Server-side SVG charts as pure functions: stacked columns, horizontal bars, a step funnel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = 12
LEGEND_HEIGHT = 26


@dataclass(frozen=True)
class Series:
    """One stacked layer: a name for the legend, a CSS class for its colour, a value per column."""

    name: str
    css: str
    values: Sequence[float]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    css: str
    text: str


@dataclass(frozen=True)
class FunnelStep:
    label: str
    detail: str
    reached: int
    completed: int
    failed: int
    skipped: int


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate with at most one decimal, without a trailing `.0`."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(maximum: float, count: int = 4, *, integer: bool = True) -> list[float]:
    """Evenly spaced round tick values from 0 to at least `maximum`."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(f * magnitude for f in factors if f * magnitude >= raw)
    if integer:
        step = max(1.0, round(step))
    steps = math.ceil(maximum / step - 1e-9)
    return [step * index for index in range(steps + 1)]


def _tick_text(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _svg(width: int, height: int, title: str, body: list[str], css: str) -> str:
    return (
        f'<svg class="chart {css}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{_e(title)}" preserveAspectRatio="xMinYMin meet">'
        f"<title>{_e(title)}</title>{''.join(body)}</svg>"
    )


def _legend(series: Sequence[Series], left: float) -> list[str]:
    parts, x = [], left
    for item in series:
        parts.append(
            f'<rect class="{_e(item.css)}" x="{_n(x)}" y="6" width="11" height="11" rx="2"/>'
            f'<text class="legend" x="{_n(x + 16)}" y="16">{_e(item.name)}</text>'
        )
        x += 30 + 7 * len(item.name)
    return parts


def _empty_note(x: float, y: float, text: str) -> str:
    return (
        f'<text class="empty-note" x="{_n(x)}" y="{_n(y)}" text-anchor="middle">{_e(text)}</text>'
    )


def stacked_columns(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 1120,
    height: int = 240,
    empty_text: str = "Nothing in this range",
) -> str:
    """Columns stacked by series, with a y axis, grid lines, x labels and a legend."""
    left, right, top, bottom = 48, 12, LEGEND_HEIGHT + 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    body = _legend(series, left)
    for tick in ticks:
        y = top + plot_h - tick * scale
        body.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_n(y)}" y2="{_n(y)}"/>'
            f'<text class="tick" x="{left - 6}" y="{_n(y + 4)}" text-anchor="end">'
            f"{_tick_text(tick)}</text>"
        )
    slot = plot_w / max(len(labels), 1)
    bar_w = max(slot * 0.72, 1.0)
    every = max(1, math.ceil(len(labels) / 10))
    for index, label in enumerate(labels):
        x = left + slot * index + (slot - bar_w) / 2
        base: float = top + plot_h
        for item in series:
            value = item.values[index]
            if value <= 0:
                continue
            h = value * scale
            base -= h
            body.append(
                f'<rect class="{_e(item.css)}" x="{_n(x)}" y="{_n(base)}" '
                f'width="{_n(bar_w)}" height="{_n(h)}"><title>{_e(label)} · {_e(item.name)}: '
                f"{_tick_text(value)}</title></rect>"
            )
        if index % every == 0:
            body.append(
                f'<text class="tick" x="{_n(left + slot * index + slot / 2)}" '
                f'y="{top + plot_h + 16}" text-anchor="middle">{_e(label)}</text>'
            )
    body.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    if not any(totals):
        body.append(_empty_note(left + plot_w / 2, top + plot_h / 2, empty_text))
    return _svg(width, height, title, body, "columns")


def horizontal_bars(
    bars: Sequence[Bar], *, title: str, width: int = 540, empty_text: str = "No data"
) -> str:
    """One labelled bar per row, scaled to the largest, with its value written after it."""
    label_w = 16 + 7 * max((len(bar.label) for bar in bars), default=4)
    value_w, row_h, top = 100, 30, 8
    plot_w = width - label_w - value_w
    height = top * 2 + row_h * max(len(bars), 1)
    largest = max((bar.value for bar in bars), default=0)
    body = []
    for index, bar in enumerate(bars):
        y = top + row_h * index
        length = plot_w * bar.value / largest if largest > 0 else 0
        body.append(
            f'<text class="label" x="{label_w - 8}" y="{y + 19}" text-anchor="end">'
            f"{_e(bar.label)}</text>"
            f'<rect class="track" x="{label_w}" y="{y + 6}" width="{plot_w}" height="18" rx="3"/>'
            f'<rect class="{_e(bar.css)}" x="{label_w}" y="{y + 6}" width="{_n(length)}" '
            f'height="18" rx="3"><title>{_e(bar.label)}: {_e(bar.text)}</title></rect>'
            f'<text class="value" x="{_n(label_w + plot_w + 8)}" y="{y + 19}">{_e(bar.text)}</text>'
        )
    if not bars or largest <= 0:
        body.append(_empty_note(label_w + plot_w / 2, height / 2 + 4, empty_text))
    return _svg(width, height, title, body, "bars")


def funnel(steps: Sequence[FunnelStep], *, title: str, width: int = 1120) -> str:
    """A bar per step in graph order: how many runs reached it, split into how they left it."""
    label_w, text_w, row_h, top = 190, 300, 40, 8
    plot_w = width - label_w - text_w
    height = top * 2 + row_h * max(len(steps), 1)
    largest = max((step.reached for step in steps), default=0)
    body = []
    for index, step in enumerate(steps):
        y = top + row_h * index
        body.append(
            f'<text class="label" x="{label_w - 10}" y="{y + 17}" text-anchor="end">'
            f"{_e(step.label)}</text>"
            f'<text class="sublabel" x="{label_w - 10}" y="{y + 31}" text-anchor="end">'
            f"{_e(step.detail)}</text>"
            f'<rect class="track" x="{label_w}" y="{y + 8}" width="{plot_w}" height="22" rx="3"/>'
        )
        x = float(label_w)
        other = max(step.reached - step.completed - step.failed, 0)
        for css, name, value in (
            ("s-completed", "completed", step.completed),
            ("s-failed", "failed", step.failed),
            ("s-other", "in flight, skipped or cancelled", other),
        ):
            if value <= 0 or largest <= 0:
                continue
            length = plot_w * value / largest
            body.append(
                f'<rect class="{css}" x="{_n(x)}" y="{y + 8}" width="{_n(length)}" height="22">'
                f"<title>{_e(step.label)} · {name}: {value:,}</title></rect>"
            )
            x += length
        summary = (
            f"{step.reached:,} reached · {step.completed:,} ok · "
            f"{step.failed:,} failed · {step.skipped:,} skipped"
        )
        body.append(
            f'<text class="value" x="{label_w + plot_w + 10}" y="{y + 23}">{_e(summary)}</text>'
        )
    if largest <= 0:
        body.append(_empty_note(label_w + plot_w / 2, height / 2 + 4, "No run reached any step"))
    return _svg(width, height, title, body, "funnel")
