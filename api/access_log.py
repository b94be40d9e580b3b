"""The server's access log without what travels in a path and must not be kept: unsubscribe
tokens, and contacts' addresses.

uvicorn logs each request's path, and an unsubscribe link's token is its path: whoever reads
the log could unsubscribe anyone who got an email. A contact may be named by its address in a
path (`GET /contacts/ada@example.com`). Both are replaced before the line is formatted,
whichever handler (ours, or uvicorn's own log config) writes it.
"""

from __future__ import annotations

import logging
import re

from engine.logs import hide_addresses

ACCESS_LOGGER = "uvicorn.access"
_TOKEN = re.compile(r"(/unsubscribe/)[^/?#\s\"]+")
HIDDEN = r"\1***"


class HideUnsubscribeTokens(logging.Filter):
    """Rewrites a record whose message holds an unsubscribe path, with the token as `***`, or
    an address, as `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = hide_addresses(_TOKEN.sub(HIDDEN, message))
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def hide_tokens_in_access_log() -> None:
    """Install the filter on uvicorn's access logger, once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(found, HideUnsubscribeTokens) for found in logger.filters):
        logger.addFilter(HideUnsubscribeTokens())
