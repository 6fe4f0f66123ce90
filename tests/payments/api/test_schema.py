"""The OpenAPI schema and its documentation pages: served to anyone, every operation with its
error responses and security, the docs from this site's own static files only, and every API
view with IdempotentMixin first in its bases."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from payments.api.idempotency import IdempotentMixin
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict[str, Any]:
    response = APIClient().get(f"{API}/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    return yaml.safe_load(response.content)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def test_the_schema_lists_every_operation(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Payments API"
    found = {(method.upper(), path) for path, method, _ in _operations(schema)}
    assert found == {
        ("GET", "/payments/api/balance/"),
        ("GET", "/payments/api/currencies/"),
        ("GET", "/payments/api/currencies/{code}/"),
        ("GET", "/payments/api/payments/"),
        ("POST", "/payments/api/payments/"),
        ("GET", "/payments/api/payments/{id}/"),
        ("GET", "/payments/api/transactions/"),
        ("GET", "/payments/api/transactions/{id}/"),
        ("GET", "/payments/api/withdrawals/"),
        ("POST", "/payments/api/withdrawals/"),
        ("GET", "/payments/api/withdrawals/{id}/"),
        ("POST", "/payments/api/withdrawals/{id}/cancel/"),
        ("GET", "/payments/api/withdrawals/quote/"),
    }


def test_every_operation_documents_its_errors_and_security(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert schemes["cookieAuth"]["in"] == "cookie"
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        for status in ("400", "401", "403", "404", "429"):
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error", (path, method, status)
        assert "Retry-After" in responses["429"]["headers"]
        assert {"bearerAuth": []} in operation["security"], (path, method)
        assert operation["summary"], (path, method)
        if method == "post":
            assert {"409", "413", "415"} <= set(responses), (path, method)
            names = [p["name"] for p in operation["parameters"]]
            assert "Idempotency-Key" in names, path


def test_lists_document_their_filters_and_paging(schema):
    def params(path: str) -> set[str]:
        return {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}

    paging = {"page", "page_size", "created_after", "created_before"}
    assert params("/payments/api/payments/") >= paging | {"status", "currency"}
    assert params("/payments/api/withdrawals/") >= paging | {"status", "currency"}
    assert params("/payments/api/transactions/") >= paging | {"type"}
    assert params("/payments/api/withdrawals/quote/") >= {"currency", "amount_usd"}


def test_deposits_show_what_was_received(schema):
    payment = schema["components"]["schemas"]["Payment"]["properties"]
    assert {"actual_amount", "actual_amount_usd", "credited_amount_usd", "review_reason"} <= set(
        payment
    )


def test_the_schema_is_also_json(db):
    response = APIClient().get(f"{API}/schema/?format=json")
    assert response.status_code == 200
    assert response.json()["paths"]


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_the_docs_load_only_this_sites_files(page):
    response = APIClient().get(f"{API}/{page}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/payments/api/schema/" in html
    assert not re.search(r"https?://", html), "an external URL in the docs page"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the page loads its script"
    for url in assets:
        assert url.startswith("/static/"), url
        assert finders.find(url.removeprefix("/static/")), f"{url} is not among our static files"


def test_the_api_root_leads_to_the_docs(db):
    response = APIClient().get(f"{API}/")
    assert (response.status_code, response["Location"]) == (302, f"{API}/docs/")


def _api_views(patterns: list[Any]) -> list[type]:
    views = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            views += _api_views(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            cls = getattr(entry.callback, "cls", None)
            module = getattr(cls, "__module__", "")
            if cls is not None and module.startswith("payments.api"):
                views.append(cls)
    return views


def test_every_api_view_lists_idempotent_mixin_first():
    views = set(_api_views(get_resolver().url_patterns))
    assert len(views) >= 5
    for view in views:
        if view.__module__ == "payments.api.schema":
            continue  # the documentation pages: GET only, no API operation
        assert view.__bases__[0] is IdempotentMixin, view
