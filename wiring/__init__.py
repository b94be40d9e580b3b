"""The composition root: each process assembled from its parts (api, engine, tasks, web).

The adapters do not know one another: only this package puts the API, its dispatcher and the
dashboard together, builds the Celery app the `celery` command imports, and the embedded mode.
"""
