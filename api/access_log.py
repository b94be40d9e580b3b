"""The server's access log without the secrets that travel in a path: unsubscribe tokens.

uvicorn logs each request's path, and an unsubscribe link's token is its path: whoever reads
the log could unsubscribe anyone who got an email. The token is replaced before the line is
formatted, whichever handler (ours, or uvicorn's own log config) writes it.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_TOKEN = re.compile(r"(/unsubscribe/)[^/?#\s\"]+")
HIDDEN = r"\1***"


class HideUnsubscribeTokens(logging.Filter):
    """Rewrites a record whose message holds an unsubscribe path, with the token as `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = _TOKEN.sub(HIDDEN, message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def hide_tokens_in_access_log() -> None:
    """Install the filter on uvicorn's access logger, once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(found, HideUnsubscribeTokens) for found in logger.filters):
        logger.addFilter(HideUnsubscribeTokens())
