"""One-statement updates of many rows (PostgreSQL's UPDATE ... FROM unnest(arrays))."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from payments import ledger_pg


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
    sql = _statement(table, key, tuple(columns))
    # One array per column (the key's first): the text is the same whatever the row count.
    ledger_pg.run(sql, [list(values) for values in zip(*rows, strict=True)])


@functools.cache
def _statement(table: str, key: tuple[str, str], columns: tuple[tuple[str, str], ...]) -> str:
    names = [key[0], *(name for name, _ in columns)]
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in [key, *columns])
    assignments = ", ".join(f"{name} = v.{name}" for name, _ in columns)
    return (
        f"UPDATE {table} AS t SET {assignments} "  # noqa: S608 - names from code, values as params
        f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE t.{key[0]} = v.{key[0]}"
    )
