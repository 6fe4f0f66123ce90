"""The operators' roles as Django groups, installed after every migrate (idempotently).

- viewer: reads everything in the payments admin (manual money and notifications included),
  changes nothing;
- approver: a viewer who approves and rejects withdrawals;
- operator: a viewer who requests manual credits and debits, resolves payments in review
  (a credit waits for a supervisor; a rejection applies at once), reprocesses provider events,
  edits currencies and the host application's webhook endpoints, and redelivers webhooks;
- supervisor: a viewer who gives the second approval of manual money, of crediting a payment
  in review (what was received or the price in full) and of forced withdrawal overrides.

Approver, operator and supervisor may change withdrawals (a note, the payout's hash) and so
request a forced override, which moves nothing until a supervisor approves it.

Nobody approves what they requested themselves, nor money for their own account: the services
refuse it whatever the groups (tests/payments/test_role_matrix.py holds the whole table).
A group's permissions are set to exactly these on every migrate; add people, not permissions.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_VIEWED = (
    "payment",
    "currency",
    "userbalance",
    "transaction",
    "withdrawalrequest",
    "withdrawaloverride",
    "paymentresolution",
    "providerevent",
    "periodicrun",
    "ledgerdrift",
    "receivable",
    "manualadjustment",
    "notification",
    "webhookendpoint",
    "webhookevent",
    "webhookdelivery",
    "webhookattempt",
)
VIEW = tuple(f"view_{model}" for model in _VIEWED)
ROLES: dict[str, tuple[str, ...]] = {
    "viewer": VIEW,
    "approver": (*VIEW, "change_withdrawalrequest", "approve_withdrawalrequest"),
    "operator": (
        *VIEW,
        "change_payment",
        "resolve_payment",
        "change_providerevent",
        "change_currency",
        "change_withdrawalrequest",
        "change_ledgerdrift",
        "add_manualadjustment",
        "request_manualadjustment",
        "add_webhookendpoint",
        "change_webhookendpoint",
        "change_webhookdelivery",
    ),
    "supervisor": (
        *VIEW,
        "change_payment",
        "approve_full_credit",
        "change_withdrawalrequest",
        "override_withdrawalrequest",
        "approve_manualadjustment",
    ),
}


def install_roles(**kwargs: Any) -> list[str]:
    """Create or update the four groups with exactly their permissions; return their names."""
    from django.contrib.auth.models import Group, Permission

    using = kwargs.get("using", "default")
    wanted = {codename for codenames in ROLES.values() for codename in codenames}
    found = {
        p.codename: p
        for p in Permission.objects.using(using).filter(
            content_type__app_label="payments", codename__in=wanted
        )
    }
    missing = wanted - set(found)
    if missing:  # a migrate that has not created them yet (e.g. only some apps migrated)
        logger.info("roles not installed yet: permissions %s missing", sorted(missing))
        return []
    for name, codenames in ROLES.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set([found[c] for c in codenames])
    return list(ROLES)
