"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in and out; SQLite stores naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            naive: dt.datetime = value
            return naive.replace(tzinfo=dt.UTC)
        aware: dt.datetime = value.astimezone(dt.UTC)
        return aware


# Python None is SQL NULL, whether it comes through the ORM, a literal or a bound parameter
# (by default a bound None would be stored as JSON `null`, and the two do not compare equal).
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
