"""Filters and paging of the API's lists: ``status``, ``type``, ``currency``, a creation date
range, ``page`` and a bounded ``page_size``. A value a filter cannot take is a 400
``invalid_filter``; an unknown parameter is ignored.

``page_size`` defaults to 50; more than 200 is served as 200 (the response's ``next`` link
leads on). ``created_after`` is inclusive and ``created_before`` exclusive; each takes an
ISO 8601 date (midnight UTC) or date-time (UTC when it names no offset).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from payments.errors import InvalidFilter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")


class Pagination(PageNumberPagination):
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_size_query_description = (
        f"Rows per page: 1 or more, {DEFAULT_PAGE_SIZE} when not given; more than "
        f"{MAX_PAGE_SIZE} is served as {MAX_PAGE_SIZE}."
    )
    page_query_description = "The page number, from 1."

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        return min(_positive_int(raw, "page_size"), MAX_PAGE_SIZE)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw not in ("", "last"):
            _positive_int(raw, "page")
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters


def _positive_int(raw: str, name: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise InvalidFilter(f"{name} must be a whole number from 1, not {raw[:40]!r}.")
    return int(raw)


@dataclass(frozen=True)
class ListFilters:
    """The filters one list takes: which field each choice parameter filters, and its values."""

    choices: dict[str, tuple[str, Sequence[str]]]  # parameter -> (field, allowed values)
    currency_field: str | None = None

    def apply(self, request: Request, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = request.query_params
        for parameter, (field, allowed) in self.choices.items():
            raw = params.get(parameter)
            if raw:
                values = [v.strip() for v in raw.split(",") if v.strip()]
                unknown = [v for v in values if v not in allowed]
                if unknown or not values:
                    raise InvalidFilter(
                        f"{parameter} takes {', '.join(allowed)} (several: comma-separated), "
                        f"not {raw[:40]!r}."
                    )
                queryset = queryset.filter(**{f"{field}__in": values})
        raw = params.get("currency")
        if self.currency_field and raw:
            if not _CODE.match(raw):
                raise InvalidFilter(
                    f"currency is a currency code such as USDTTRC20, not {raw[:40]!r}."
                )
            queryset = queryset.filter(**{self.currency_field: raw.upper()})
        after = _moment(params.get("created_after"), "created_after")
        before = _moment(params.get("created_before"), "created_before")
        if after is not None:
            queryset = queryset.filter(created_at__gte=after)
        if before is not None:
            queryset = queryset.filter(created_at__lt=before)
        return queryset

    def schema_parameters(self) -> list[OpenApiParameter]:
        parameters = [
            OpenApiParameter(
                parameter,
                OpenApiTypes.STR,
                description=f"Only these values, comma-separated: {', '.join(allowed)}.",
            )
            for parameter, (_, allowed) in self.choices.items()
        ]
        if self.currency_field:
            parameters.append(
                OpenApiParameter(
                    "currency", OpenApiTypes.STR, description="Only this currency (its code)."
                )
            )
        parameters += [
            OpenApiParameter(
                "created_after",
                OpenApiTypes.STR,
                description="Created at or after this ISO 8601 date or date-time (UTC default).",
            ),
            OpenApiParameter(
                "created_before",
                OpenApiTypes.STR,
                description="Created before this ISO 8601 date or date-time (UTC default).",
            ),
        ]
        return parameters


def choices_of(model: type[Model], field: str) -> tuple[str, ...]:
    choices = getattr(model._meta.get_field(field), "choices", None) or []
    return tuple(str(value) for value, _ in choices)


def _moment(raw: str | None, name: str) -> dt.datetime | None:
    if raw is None or raw == "":
        return None
    # An unescaped "+" of an offset arrives as a space.
    text = raw.strip().replace(" ", "+") if "T" in raw else raw.strip()
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is not None:
                moment = dt.datetime.combine(day, dt.time.min)
        if moment is not None:
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=dt.UTC)
            moment = moment.astimezone(dt.UTC)  # out of range here, not in the database
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise InvalidFilter(
            f"{name} is an ISO 8601 date or date-time such as 2025-01-31 or "
            f"2025-01-31T12:00:00Z, not {raw[:40]!r}."
        )
    return moment
