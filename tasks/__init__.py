"""The Celery adapter: the app factory and one thin task per step type."""
