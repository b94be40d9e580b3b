"""Entry point for the `celery` command: `celery -A tasks.celery_main worker`.

The one place that builds the app at import time, because the celery CLI imports an app by name.
"""

from engine.settings import Settings
from tasks.app import create_celery_app

app = create_celery_app(Settings())
