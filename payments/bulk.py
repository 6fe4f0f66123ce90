"""One-statement updates of many rows (PostgreSQL's UPDATE ... FROM (VALUES ...))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection


def update_rows(
    *,
    table: str,
    key: tuple[str, str],
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Set ``columns`` of the rows of ``table`` whose ``key`` matches, one statement in all.

    ``key`` and each column are ``(name, PostgreSQL type)``; each row holds the key value first,
    then one value per column. Names come from code, never from input; values are parameters.
    """
    if not rows:
        return
    names = [key[0], *(name for name, _ in columns)]
    placeholder = "(" + ", ".join(f"%s::{kind}" for _, kind in [key, *columns]) + ")"
    assignments = ", ".join(f"{name} = v.{name}" for name, _ in columns)
    sql = (
        f"UPDATE {table} AS t SET {assignments} "  # noqa: S608 - names from code, values as params
        f"FROM (VALUES {', '.join([placeholder] * len(rows))}) AS v({', '.join(names)}) "
        f"WHERE t.{key[0]} = v.{key[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])
