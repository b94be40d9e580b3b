"""One row per fault scenario, and the Markdown table the bench prints."""

from __future__ import annotations

from dataclasses import dataclass, field

COLUMNS = (
    "fault",
    "runs",
    "emails",
    "faults injected",
    "lost",
    "duplicated",
    "same-Message-ID resends",
    "inconsistent",
    "stalled",
    "seconds",
    "notes",
)


@dataclass
class Result:
    fault: str
    runs: int
    emails: int
    injected: int
    lost: int
    duplicated: int
    resends: int
    seconds: float
    notes: str = ""
    problems: list[str] = field(default_factory=list)  # what the check found wrong
    stalls: list[str] = field(default_factory=list)  # the waits the driver gave up

    def cells(self) -> list[str]:
        return [
            self.fault,
            str(self.runs),
            str(self.emails),
            str(self.injected),
            str(self.lost),
            str(self.duplicated),
            str(self.resends),
            str(len(self.problems)),
            str(len(self.stalls)),
            f"{self.seconds:.1f}",
            self.notes,
        ]


def merge(rows: list[Result]) -> Result:
    """Several rounds of one fault as one row."""
    first = rows[0]
    return Result(
        fault=first.fault,
        runs=sum(r.runs for r in rows),
        emails=sum(r.emails for r in rows),
        injected=sum(r.injected for r in rows),
        lost=sum(r.lost for r in rows),
        duplicated=sum(r.duplicated for r in rows),
        resends=sum(r.resends for r in rows),
        seconds=sum(r.seconds for r in rows),
        notes="; ".join(r.notes for r in rows) if len(rows) == 1 else f"{len(rows)} rounds",
        problems=[p for r in rows for p in r.problems],
        stalls=[s for r in rows for s in r.stalls],
    )


def table(rows: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    if len(rows) > 1:
        total = merge(rows)
        total.fault, total.notes = "**total**", ""
        lines.append("| " + " | ".join(total.cells()) + " |")
    return "\n".join(lines)
