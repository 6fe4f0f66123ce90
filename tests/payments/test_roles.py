"""The operators' roles: four groups with exactly their permissions, installed after migrate."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from payments.roles import ROLES, install_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _codenames(name: str) -> set[str]:
    return set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))


def test_migrate_installs_the_four_roles_with_exactly_their_permissions() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)
    for name, codenames in ROLES.items():
        assert _codenames(name) == set(codenames)


def test_installing_again_resets_a_changed_group_and_adds_nothing() -> None:
    Group.objects.get(name="viewer").permissions.clear()
    assert install_roles() == list(ROLES)
    assert install_roles() == list(ROLES)
    assert _codenames("viewer") == set(ROLES["viewer"])
    assert Group.objects.filter(name__in=ROLES).count() == len(ROLES)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", set()),
        ("approver", {"payments.approve_withdrawalrequest"}),
        (
            "operator",
            {
                "payments.resolve_payment",
                "payments.add_manualadjustment",
                "payments.request_manualadjustment",
            },
        ),
        (
            "supervisor",
            {
                "payments.approve_full_credit",
                "payments.override_withdrawalrequest",
                "payments.approve_manualadjustment",
            },
        ),
    ],
)
def test_each_role_holds_only_its_money_actions(role: str, allowed: set[str]) -> None:
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    actions = {
        "payments.approve_withdrawalrequest",
        "payments.resolve_payment",
        "payments.approve_full_credit",
        "payments.override_withdrawalrequest",
        "payments.settle_payment",
        "payments.add_manualadjustment",
        "payments.request_manualadjustment",
        "payments.approve_manualadjustment",
        "payments.change_manualadjustment",
        "payments.change_notification",
    }
    fresh = type(user).objects.get(pk=user.pk)
    assert {a for a in actions if fresh.has_perm(a)} == allowed
    assert fresh.has_perm("payments.view_transaction")
    assert fresh.has_perm("payments.view_manualadjustment")
    assert fresh.has_perm("payments.view_notification")
    assert not fresh.has_perm("payments.delete_transaction")
