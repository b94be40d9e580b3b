"""The Celery app for the `celery` command: `celery -A wiring.worker worker` (or beat, flower).

The one place that builds an app at import time, because the celery CLI imports an app by name.
"""

import sys

from engine.settings import BAD_SETTINGS_EXIT, ConfigurationError, Settings
from tasks.app import create_celery_app

try:
    app = create_celery_app(Settings())
except ConfigurationError as refused:
    # One line and no traceback: the celery command would print the import's whole stack.
    print(f"error: {refused}", file=sys.stderr)
    raise SystemExit(BAD_SETTINGS_EXIT) from None
