"""The product's settings with one change for ``ipn_load.py``: the bench URLconf (a trivial view).

Selected only in the benchmark's own gunicorn (``DJANGO_SETTINGS_MODULE=bench_settings`` with
``benchmarks/`` on ``PYTHONPATH``); the product's URLs are untouched.
"""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench_urls"
