"""The same no-op job on each queue `bench/queues.py` compares: a producer and a handler each.

`ours` runs in the project's environment; `celery_app` and `procrastinate_app` run in a separate
one that the benchmark creates (they import nothing of the project).
"""
