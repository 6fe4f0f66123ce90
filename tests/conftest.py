"""Test set-up shared by every test: real PostgreSQL, and factories for the five models."""

from __future__ import annotations

import decimal

import pytest
from django.db.backends.postgresql.operations import DatabaseOperations

# The ledger rejects TRUNCATE unless the session says it is a maintenance reset; Django's test
# flush between transactional tests is one, so it says so (in the same transaction).
_original_sql_flush = DatabaseOperations.sql_flush


def _sql_flush_allowing_ledger_reset(self, style, tables, **kwargs):  # type: ignore[no-untyped-def]
    statements = _original_sql_flush(self, style, tables, **kwargs)
    if statements:
        return ["SET LOCAL payments.allow_truncate = on", *statements]
    return statements


DatabaseOperations.sql_flush = _sql_flush_allowing_ledger_reset  # type: ignore[method-assign]


# Any float that meets a Decimal is a bug: make it raise, in every thread the tests start.
decimal.DefaultContext.traps[decimal.FloatOperation] = True


@pytest.fixture(autouse=True)
def _trap_float_in_money() -> None:
    decimal.getcontext().traps[decimal.FloatOperation] = True
