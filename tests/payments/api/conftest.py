"""Fixtures of the API tests: users with API keys, clients signed in each way, fresh throttles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from payments.services.api_keys import api_key_create
from tests.factories import UserFactory

API = "/payments/api"


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """Throttle counters and lockouts of one test never reach the next (same client address)."""
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture(autouse=True)
def _generous_rates(settings: Any) -> None:
    """Tests that are not about the throttles never meet them (test_throttling.py sets its own
    rates; the production defaults stay in project.settings)."""
    settings.PAYMENTS_THROTTLE_RATES = dict.fromkeys(settings.PAYMENTS_THROTTLE_RATES, "100000/min")


@pytest.fixture
def user() -> Any:
    return UserFactory()


@pytest.fixture
def api_key(user: Any) -> str:
    return api_key_create(user_id=user.pk, name="tests")[1]


@pytest.fixture
def key_client(api_key: str) -> APIClient:
    """A client that presents the user's API key, as an integrator does."""
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key}")


@pytest.fixture
def session_client(user: Any) -> APIClient:
    """A client signed in through the session (with CSRF checks on, as a browser is)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client
