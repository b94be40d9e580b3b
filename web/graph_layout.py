"""Lay an automation graph out by depth: a box per step, labelled arrows, drawn as SVG."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from engine.graph import Graph, Step
from engine.step_types import find

BOX_W, BOX_H = 232, 92
# The width a connection takes on a level it passes over.
POINT_W = 20
GAP_X, GAP_Y = 40, 70
MARGIN = 24
BRANCH_LABELS = {
    "default": "",
    "condition_met": "condition met",
    "condition_not_met": "not met",
    "event_received": "event received",
    "timeout": "timeout",
}


@dataclass(frozen=True)
class Box:
    key: str
    type: str
    label: str
    detail: str
    x: float
    y: float


@dataclass(frozen=True)
class Arrow:
    from_key: str
    to_key: str
    label: str
    path: str
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    boxes: list[Box]
    arrows: list[Arrow]


@dataclass(frozen=True)
class Counts:
    reached: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0


def depths(graph: Graph) -> dict[str, int]:
    """Each step's longest distance from the trigger, so that every arrow points downwards."""
    order = graph.order()
    seen: set[str] = set()
    topo: list[str] = []

    def visit(key: str) -> None:
        seen.add(key)
        for connection in graph.outgoing(key):
            if connection.to_key not in seen:
                visit(connection.to_key)
        topo.append(key)

    for key in order:
        if key not in seen:
            visit(key)
    depth = dict.fromkeys(order, 0)
    for key in reversed(topo):
        for connection in graph.outgoing(key):
            depth[connection.to_key] = max(depth[connection.to_key], depth[key] + 1)
    return depth


def _levels(graph: Graph) -> tuple[list[list[str]], dict[int, list[str]]]:
    """Steps by depth, plus a virtual point on every level that a connection passes over."""
    depth, order = depths(graph), graph.order()
    rank: dict[str, float] = {key: i for i, key in enumerate(order)}
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for key in order:
        levels[depth[key]].append(key)
    parents: dict[str, list[str]] = {key: [] for key in order}
    chains: dict[int, list[str]] = {}
    for index, connection in enumerate(graph.connections):
        # "#" never appears in a step key, so a virtual point cannot take a step's name.
        chain = [
            f"#{index}:{d}" for d in range(depth[connection.from_key] + 1, depth[connection.to_key])
        ]
        for name, row in zip(
            chain, range(depth[connection.from_key] + 1, len(levels)), strict=False
        ):
            levels[row].append(name)
            rank[name], parents[name] = rank[connection.to_key], []
        points = [connection.from_key, *chain, connection.to_key]
        for upper, lower in itertools.pairwise(points):
            parents[lower].append(upper)
        chains[index] = chain
    place: dict[str, float] = {}
    for level in levels:

        def centre(key: str) -> tuple[float, float]:
            above = [place[p] for p in parents[key] if p in place]
            return (sum(above) / len(above) if above else rank[key], rank[key])

        level.sort(key=centre)
        place.update(_pack(level))
    return levels, chains


def _width(key: str) -> float:
    return POINT_W if key.startswith("#") else BOX_W


def _pack(level: list[str]) -> dict[str, float]:
    """Centres of a level's items laid side by side, the level centred on x = 0."""
    span = sum(_width(key) for key in level) + GAP_X * (len(level) - 1)
    centres, left = {}, -span / 2
    for key in level:
        centres[key] = left + _width(key) / 2
        left += _width(key) + GAP_X
    return centres


def _path(points: list[tuple[float, float]]) -> str:
    """Vertical-tangent curves between levels, straight lines through a passed-over level."""
    (x, y), parts = points[0], [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for nx, ny in points[1:]:
        if nx == x:
            parts.append(f"L{nx:.1f},{ny:.1f}")
        else:
            bend = (ny - y) / 2
            parts.append(f"C{x:.1f},{y + bend:.1f} {nx:.1f},{ny - bend:.1f} {nx:.1f},{ny:.1f}")
        x, y = nx, ny
    return " ".join(parts)


def step_detail(step: Step) -> str:
    """A short summary of a step's config: its event, duration, template or rule."""
    spec = find(step.type)
    return spec.summary(step.config) if spec is not None else ""


def step_label(step_type: str) -> str:
    """The name a box shows for its step's type."""
    spec = find(step_type)
    # A stored graph may name a type no longer registered: it still draws.
    return spec.label if spec is not None else step_type.replace("_", " ")


def layout(graph: Graph) -> Layout:
    """Boxes by depth, centred level by level, and an arrow per connection around other boxes."""
    levels, chains = _levels(graph)
    centres = {key: x for level in levels for key, x in _pack(level).items()}
    half = max((abs(x) + _width(key) / 2 for key, x in centres.items()), default=BOX_W / 2)
    width = 2 * (half + MARGIN)
    height = len(levels) * BOX_H + (len(levels) - 1) * GAP_Y + 2 * MARGIN
    top = {key: MARGIN + row * (BOX_H + GAP_Y) for row, level in enumerate(levels) for key in level}
    boxes = {
        key: Box(
            key,
            graph.step(key).type,
            step_label(graph.step(key).type),
            step_detail(graph.step(key)),
            width / 2 + centres[key] - BOX_W / 2,
            top[key],
        )
        for level in levels
        for key in level
        if not key.startswith("#")
    }
    # A step's branches leave it from left to right in the order of where they head.
    heading = {
        index: centres[chains[index][0] if chains[index] else connection.to_key]
        for index, connection in enumerate(graph.connections)
    }
    slot: dict[int, float] = {}
    for key in boxes:
        mine = sorted(
            (i for i, c in enumerate(graph.connections) if c.from_key == key),
            key=lambda i: heading[i],
        )
        slot.update({i: place - (len(mine) - 1) / 2 for place, i in enumerate(mine)})
    arrows = []
    for index, connection in enumerate(graph.connections):
        spread = slot[index] * 70
        source, target = boxes[connection.from_key], boxes[connection.to_key]
        points = [(source.x + BOX_W / 2 + spread, source.y + BOX_H)]
        for name in chains[index]:
            x = width / 2 + centres[name]
            points += [(x, top[name]), (x, top[name] + BOX_H)]
        points.append((target.x + BOX_W / 2, target.y - 2))
        (sx, sy), (nx, ny) = points[0], points[1]
        # Branches leaving one step get their labels on staggered heights, so none overlap.
        lift = slot[index] * 24
        label = BRANCH_LABELS.get(str(connection.type), str(connection.type))
        arrows.append(
            Arrow(
                connection.from_key,
                connection.to_key,
                label,
                _path(points),
                (sx + nx) / 2,
                (sy + ny) / 2 + lift,
            )
        )
    return Layout(width, height, list(boxes.values()), arrows)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _box_svg(box: Box, counts: Counts) -> str:
    kind = " has-failed" if counts.failed else ""
    tally = f"{counts.completed:,} ok · {counts.failed:,} failed · {counts.skipped:,} skipped"
    return (
        f'<g class="step step-{_e(box.type)}{kind}" data-step="{_e(box.key)}">'
        f"<title>{_e(box.key)} ({_e(box.type)}) {_e(box.detail)}</title>"
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="8"/>'
        f'<text class="step-key" x="{box.x + 12:.1f}" y="{box.y + 22:.1f}">'
        f"{_e(_clip(box.key, 26))}</text>"
        f'<text class="step-type" x="{box.x + 12:.1f}" y="{box.y + 40:.1f}">'
        f"{_e(_clip(box.label + (' · ' + box.detail if box.detail else ''), 34))}"
        f'</text><text class="step-reached" x="{box.x + 12:.1f}" y="{box.y + 62:.1f}">'
        f"{counts.reached:,} reached</text>"
        f'<text class="step-tally" x="{box.x + 12:.1f}" y="{box.y + 80:.1f}">{_e(tally)}</text></g>'
    )


def render(graph: Graph, counts: Mapping[str, Counts], *, title: str) -> str:
    """The graph as an SVG document fragment; every text from the graph is escaped."""
    drawn = layout(graph)
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {drawn.width:.0f} {drawn.height:.0f}" width="{drawn.width:.0f}" '
        f'height="{drawn.height:.0f}" aria-label="{_e(title)}"><title>{_e(title)}</title>'
        '<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>"
    ]
    for arrow in drawn.arrows:
        parts.append(
            f'<path class="edge edge-{_e(arrow.label.replace(" ", "-") or "default")}" '
            f'd="{arrow.path}" marker-end="url(#arrowhead)"/>'
        )
    for box in drawn.boxes:
        parts.append(_box_svg(box, counts.get(box.key, Counts())))
    for arrow in drawn.arrows:
        if arrow.label:
            w = 10 + 7 * len(arrow.label)
            parts.append(
                f'<g class="edge-label"><rect x="{arrow.label_x - w / 2:.1f}" '
                f'y="{arrow.label_y - 10:.1f}" width="{w:.1f}" height="19" rx="9"/>'
                f'<text x="{arrow.label_x:.1f}" y="{arrow.label_y + 4:.1f}" '
                f'text-anchor="middle">{_e(arrow.label)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
