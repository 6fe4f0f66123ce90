"""Model instances read by fixed SQL statements, for hot paths where the ORM's compiler costs
more than the query (a payment locked for one provider report: 0.7 ms of compiling a
two-table select, against 0.3 ms for the round trip itself).

Only reads: the instances are the ones the ORM would build (``from_db``, every concrete field,
each field's own ``from_db_value``), so the code that receives them cannot tell the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


@functools.cache
def _shape(model: type[models.Model]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...]]:
    fields = model._meta.concrete_fields
    columns = tuple(f.column for f in fields)
    attnames = tuple(f.attname for f in fields)
    converters = tuple((i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value"))
    return columns, attnames, converters


def select_list(model: type[models.Model], alias: str) -> str:
    """Every concrete column of ``model``'s table under ``alias``, in the order ``build`` reads."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(column)}" for column in _shape(model)[0])


def width(model: type[models.Model]) -> int:
    """How many values of a row ``select_list`` gives for ``model``."""
    return len(_shape(model)[0])


def build(model: type[M], values: Sequence[Any], db: str | None = None) -> M:
    """The instance the ORM would build from these column values (``select_list``'s order)."""
    _, attnames, converters = _shape(model)
    row = list(values)
    for i, field in converters:
        if row[i] is not None:
            row[i] = field.from_db_value(row[i], None, connection)
    return model.from_db(db or connection.alias, attnames, row)
