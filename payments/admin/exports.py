"""Streamed CSV exports of the admin changelists (``CsvExportMixin``) and the columns each has.

``/admin/payments/<model>/export/csv/?<the changelist's query string>`` answers the rows the
changelist shows for that query string (its filters, search, date hierarchy and ordering; all
pages), one ``values_list`` query read through a server-side cursor 2,000 rows at a time, so
the memory it takes does not grow with the number of rows.

Cells: amounts as exact decimals (``-12.50``, never floats or a locale's format), datetimes in
ISO 8601 UTC, related rows by their natural keys (username, currency code, internal ids) joined
in the same query. Text that a spreadsheet would run as a formula (starting with ``= + - @``, a
tab or a carriage return) gets a leading ``'``; numbers, ``-12.50`` among them, do not.

Server-side cursors: the response streams after the view has returned, outside any request
transaction, so Django declares the cursor ``WITH HOLD`` (PostgreSQL keeps its result on the
server for the session) and the export needs no transaction when it talks to PostgreSQL
directly. Behind PgBouncer in transaction pooling mode a cursor must not outlive its
transaction: there the export must run inside ``transaction.atomic()`` (or the database set
``DISABLE_SERVER_SIDE_CURSORS``, which makes the client buffer the whole result instead).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup, DisallowedModelAdminToField
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db.models import DecimalField, ExpressionWrapper, F
from django.db.models.expressions import Combinable
from django.http import HttpRequest, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2000  # rows fetched from the server-side cursor at a time
FLUSH_BYTES = 64 * 1024  # a response chunk: this much CSV text, so a row is not a network write


@dataclass(frozen=True)
class Column:
    """One CSV column: its header and what ``values_list`` reads (a lookup or an expression)."""

    header: str
    source: str | Combinable


def _fee_total() -> Combinable:
    return F("network_fee_usd") + F("service_fee_usd")


def _final_amount() -> Combinable:
    return ExpressionWrapper(
        F("amount_usd") - F("network_fee_usd") - F("service_fee_usd"),
        output_field=DecimalField(max_digits=12, decimal_places=2),
    )


TRANSACTION_COLUMNS = (
    Column("id", "id"),
    Column("created_at", "created_at"),
    Column("user", "user__username"),
    Column("user_id", "user_id"),
    Column("transaction_type", "transaction_type"),
    Column("amount_usd", "amount_usd"),
    Column("balance_after", "balance_after"),
    Column("sequence", "sequence"),
    Column("payment", "payment__internal_payment_id"),
    Column("withdrawal_request", "withdrawal_request__internal_withdrawal_id"),
    Column("idempotency_key", "idempotency_key"),
    Column("description", "description"),
)
PAYMENT_COLUMNS = (
    Column("internal_payment_id", "internal_payment_id"),
    Column("id", "id"),
    Column("created_at", "created_at"),
    Column("user", "user__username"),
    Column("user_id", "user_id"),
    Column("status", "status"),
    Column("amount_usd", "amount_usd"),
    Column("currency", "currency__code"),
    Column("pay_amount", "pay_amount"),
    Column("actual_amount", "actual_amount"),
    Column("actual_amount_usd", "actual_amount_usd"),
    Column("credited_usd", "credited_usd"),
    Column("provider_payment_id", "provider_payment_id"),
    Column("pay_address", "pay_address"),
    Column("pay_extra_id", "pay_extra_id"),
    Column("transaction_hash", "transaction_hash"),
    Column("review_reason", "review_reason"),
    Column("expires_at", "expires_at"),
    Column("completed_at", "completed_at"),
)
WITHDRAWAL_COLUMNS = (
    Column("internal_withdrawal_id", "internal_withdrawal_id"),
    Column("id", "id"),
    Column("created_at", "created_at"),
    Column("user", "user__username"),
    Column("user_id", "user_id"),
    Column("status", "status"),
    Column("amount_usd", "amount_usd"),
    Column("network_fee_usd", "network_fee_usd"),
    Column("service_fee_usd", "service_fee_usd"),
    Column("total_fee_usd", ExpressionWrapper(_fee_total(), output_field=DecimalField())),
    Column("final_amount_usd", _final_amount()),
    Column("currency", "currency__code"),
    Column("wallet_address", "wallet_address"),
    Column("wallet_extra_id", "wallet_extra_id"),
    Column("transaction_hash", "transaction_hash"),
    Column("admin_user", "admin_user__username"),
    Column("provider_payout_id", "provider_payout_id"),
    Column("approved_at", "approved_at"),
    Column("processing_at", "processing_at"),
    Column("completed_at", "completed_at"),
    Column("rejected_at", "rejected_at"),
    Column("cancelled_at", "cancelled_at"),
    Column("failed_at", "failed_at"),
    Column("rejection_reason", "rejection_reason"),
    Column("failure_reason", "failure_reason"),
)
# By model (``app_label.model_name``); an admin may name its own in ``csv_columns`` instead.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "payments.transaction": TRANSACTION_COLUMNS,
    "payments.payment": PAYMENT_COLUMNS,
    "payments.withdrawalrequest": WITHDRAWAL_COLUMNS,
}

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _text(value: Any) -> str:
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


# By exact type (one lookup a cell: an export formats millions); a subclass by its base;
# anything else is text.
_CELL: dict[type, Callable[[Any], str]] = {
    type(None): lambda value: "",
    bool: lambda value: "true" if value else "false",
    Decimal: lambda value: format(value, "f"),  # str() without its exponent form (1E-18)
    int: str,
    datetime: _datetime,
    date: date.isoformat,
    str: _text,
}


def _subclass(value: Any) -> str:
    for kind, cell in _CELL.items():  # bool before int, datetime before date
        if isinstance(value, kind):
            return cell(value)
    return _text(value)


def csv_cell(value: Any) -> str:
    """One value as CSV text: exact decimals, ISO 8601 UTC datetimes, formula-safe text."""
    return _CELL.get(type(value), _subclass)(value)


def csv_stream(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The CSV document (header row first) as UTF-8 chunks of about ``FLUSH_BYTES``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quotes where needed, CRLF line ends
    writer.writerow(header)
    for row in rows:
        writer.writerow(map(csv_cell, row))
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def _why(exc: Exception) -> str:
    """What is wrong with the filters, in a sentence (without Django's list of every field)."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
    text = " ".join(cause.messages) if isinstance(cause, ValidationError) else str(cause)
    return text.split(" Choices are:")[0].strip()


_ERROR_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}<ul class="messagelist"><li class="error">{{ message }}</li></ul>
<p><a href="{{ changelist_url }}">Back to the list</a></p>{% endblock %}"""


class CsvExportMixin(admin.ModelAdmin):
    """Adds ``export/csv/`` to a ModelAdmin: the filtered changelist as a streamed CSV file.

    Put it first among the admin's bases. The columns are ``csv_columns`` or, when that is
    empty, this module's ``COLUMNS`` entry for the model.
    """

    csv_columns: tuple[Column, ...] = ()

    def get_csv_columns(self) -> tuple[Column, ...]:
        columns = self.csv_columns or COLUMNS.get(self.opts.label_lower, ())
        if not columns:
            raise ImproperlyConfigured(f"No CSV columns for {self.opts.label_lower}.")
        return columns

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_export_csv"
        export = path("export/csv/", self.admin_site.admin_view(self.export_csv_view), name=name)
        return [export, *super().get_urls()]

    def export_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist's rows for this query string (every page) as a CSV attachment."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        params = request.GET.copy()  # the list's filters, without its page
        for param in (PAGE_VAR, ERROR_FLAG):
            params.pop(param, None)
        request.GET = QueryDict(params.urlencode())
        try:
            changelist = self.get_changelist_instance(request)
            queryset = changelist.get_queryset(request)
        except (
            IncorrectLookupParameters,
            DisallowedModelAdminLookup,
            DisallowedModelAdminToField,
        ) as exc:
            return self._export_refused(request, exc)
        columns = self.get_csv_columns()
        rows = queryset.values_list(*(c.source for c in columns)).iterator(chunk_size=CHUNK_ROWS)
        logger.info(
            "csv export model=%s user=%s params=%s",
            self.opts.label_lower,
            request.user.pk,
            sorted(request.GET),
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(
            csv_stream([c.header for c in columns], rows),
            content_type="text/csv; charset=utf-8",
        )
        filename = f"{self.opts.model_name}-{stamp}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def _export_refused(self, request: HttpRequest, exc: Exception) -> TemplateResponse:
        detail = _why(exc) or "a filter value is not valid"
        message = (
            f"Nothing was exported: the list's filters are not valid ({detail}). "
            "Go back to the list, choose the filters there and export again."
        )
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        return TemplateResponse(
            request,
            engines["django"].from_string(_ERROR_PAGE),
            {
                **self.admin_site.each_context(request),
                "title": f"Export {self.opts.verbose_name_plural} as CSV",
                "opts": self.opts,
                "message": message,
                "changelist_url": url,
            },
            status=400,
        )
