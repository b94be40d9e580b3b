"""Links between dashboard pages: query strings, cursor pages, safe redirects, notices."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from engine.errors import InvalidInput, NotFound

# What a redirect after an action may announce; only these fixed texts are ever shown.
NOTICES = {
    "enabled": "The automation is enabled: new events start runs again.",
    "disabled": "The automation is disabled: no new runs start; runs in flight go on.",
    "stopped": "The automation is stopped: no new runs start; runs in flight go on to completion.",
    "stopped_cancelled": "The automation is stopped and its runs in flight were cancelled.",
    "stopped_cancelling": (
        "The automation is stopped. Its runs in flight take no further step; the workers are"
        " cancelling the rest of them."
    ),
    "cancelled": "The run is cancelled: it stops before its next step.",
    "retried": "The run is running again from the step where it failed.",
    "resumed": "The run is running again from the step where it was cancelled.",
    "replayed": "This new run replays the earlier one on the automation's current version.",
    "bulk_started": "The workers are on it, a chunk of runs at a time; this page follows them.",
    "bulk_cancelled": (
        "The operation is cancelled: the runs it had not reached are left as they were; those"
        " it took stay so."
    ),
    "signed_out": "You are signed out.",
}


@dataclass(frozen=True)
class Pager:
    newer: str | None
    older: str | None


def root(scope_root_path: object) -> str:
    """The dashboard's own path prefix (where it is mounted), without a trailing slash."""
    return str(scope_root_path or "").rstrip("/") or "/dashboard"


def with_query(path: str, params: Sequence[tuple[str, str]]) -> str:
    """The path with these query parameters (already-escaped by urlencode)."""
    kept = [(name, value) for name, value in params if value]
    return f"{path}?{urlencode(kept)}" if kept else path


def pager(
    path: str,
    ids: Sequence[uuid.UUID],
    *,
    has_more: bool,
    after: uuid.UUID | None,
    before: uuid.UUID | None,
    keep: Sequence[tuple[str, str]] = (),
) -> Pager:
    """Links to the newer and older pages of a newest-first keyset list."""
    if not ids:
        home = with_query(path, keep) if after or before else None
        return Pager(newer=home if after else None, older=home if before else None)
    newer_exist = has_more if before is not None else after is not None
    older_exist = has_more if before is None else True
    return Pager(
        newer=with_query(path, [*keep, ("before", str(ids[0]))]) if newer_exist else None,
        older=with_query(path, [*keep, ("after", str(ids[-1]))]) if older_exist else None,
    )


def parse_uuid(value: str | None, *, missing: str = "Page not found") -> uuid.UUID:
    """A path or query id; anything else is a page that does not exist."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(missing) from None


def page_cursor(after: str | None, before: str | None) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """A list page's cursor: `after` or `before` (the pager's links carry one, never both)."""
    if after and before:
        raise InvalidInput("A page link says `after` or `before`, not both.", field="after")
    return _optional_uuid(after), _optional_uuid(before)


def _optional_uuid(value: str | None) -> uuid.UUID | None:
    return None if not value else parse_uuid(value, missing="This page link is not valid")


def safe_next(value: str | None, root: str) -> str:
    """Where to go after signing in: a dashboard path of this site, never another site."""
    if value and value.startswith(root + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return root + "/"
