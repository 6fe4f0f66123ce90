"""Celery tasks of the payments service: thin wrappers over payments services, and sweepers."""
