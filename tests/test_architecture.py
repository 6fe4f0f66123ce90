"""The import rules of DESIGN.md §2, checked on the source: direction, the adapter, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("payments", "workers", "project")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(*packages: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports (at any depth, lazily or not), resolved to known modules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
                break
    return found


MODULES = _sources(*PRODUCT)
GRAPH = {name: _imports(path, set(MODULES)) - {name} for name, path in MODULES.items()}


def test_models_import_nothing_above_them() -> None:
    for name, imported in GRAPH.items():
        if name.startswith("payments.models"):
            above = {m for m in imported if not m.startswith(("payments.models", "payments.money"))}
            assert not above, f"{name} imports {sorted(above)}"


def test_only_the_declared_adapter_wires_models_to_services() -> None:
    wiring = [
        name
        for name, path in MODULES.items()
        if "connect_orm_handler(" in path.read_text() and not name.startswith("payments.models")
    ]
    assert wiring == ["payments.orm_compat"]


def test_the_core_never_imports_workers() -> None:
    interface = (
        "payments.admin",
        "payments.api",
        "payments.webhooks",
        "payments.views",
        "payments.pages",
        "payments.qr",
    )
    for name, imported in GRAPH.items():
        if name.startswith("payments") and not name.startswith(interface):
            workers = {m for m in imported if m.startswith("workers")}
            assert not workers, f"{name} (core) imports {sorted(workers)}"


def test_the_provider_client_has_no_orm() -> None:
    for name, path in MODULES.items():
        if name.startswith("payments.services.providers"):
            text = path.read_text()
            assert "payments.models" not in text, f"{name} uses the models"
            assert "django.db.models" not in text, f"{name} uses the ORM"


def test_the_sandbox_imports_nothing_from_the_product() -> None:
    for path in (ROOT / "sandbox").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & set(PRODUCT), f"{path.relative_to(ROOT)} imports {roots}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle_among_the_products_modules() -> None:
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


# --- one writer per aggregate ---------------------------------------------------------------

OWNERS = {
    "Payment": ("payments.services.deposits",),
    "WithdrawalRequest": ("payments.services.withdrawals.lifecycle",),
    "WithdrawalOverride": ("payments.services.withdrawals.overrides",),
    "Transaction": ("payments.ledger",),
    "UserBalance": ("payments.ledger", "payments.models.balance"),
    "LedgerDrift": ("payments.services.findings",),
    "ProviderEvent": ("payments.services.events",),
    "Receivable": ("payments.services.deposits.reverse",),
    "PaymentResolution": ("payments.services.deposits.review",),
    "ManualAdjustment": ("payments.services.manual",),
    "Notification": ("payments.services.notifications",),
    "ApiKey": ("payments.services.api_keys",),
    "IdempotencyRecord": ("payments.services.idempotency",),
    "WebhookEndpoint": ("payments.services.host_webhooks",),
    "WebhookEvent": ("payments.services.host_webhooks",),
    "WebhookDelivery": ("payments.services.host_webhooks",),
    "WebhookAttempt": ("payments.services.host_webhooks",),
}
TABLES = {
    "payments_payment": "Payment",
    "payments_withdrawalrequest": "WithdrawalRequest",
    "payments_transaction": "Transaction",
    "payments_userbalance": "UserBalance",
    "payments_ledgerdrift": "LedgerDrift",
    "payments_providerevent": "ProviderEvent",
    "payments_manualadjustment": "ManualAdjustment",
    "payments_notification": "Notification",
    "payments_apikey": "ApiKey",
    "payments_idempotencyrecord": "IdempotencyRecord",
    "payments_webhookendpoint": "WebhookEndpoint",
    "payments_webhookevent": "WebhookEvent",
    "payments_webhookdelivery": "WebhookDelivery",
    "payments_webhookattempt": "WebhookAttempt",
}
WRITES = {"create", "bulk_create", "update", "bulk_update", "delete", "get_or_create"}
WRITES |= {"update_or_create", "select_for_update"}
SQL_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(payments_\w+)", re.I)


def _writes(tree: ast.AST) -> set[str]:
    """The aggregates a module writes: ORM write calls on a model, or SQL naming its table."""
    found: set[str] = set()
    for node in ast.walk(tree):
        call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if call and node.func.attr in WRITES:  # type: ignore[attr-defined]
            receiver: ast.AST = node.func.value  # type: ignore[attr-defined]
            while isinstance(receiver, ast.Call | ast.Attribute):
                receiver = receiver.func if isinstance(receiver, ast.Call) else receiver.value
            if isinstance(receiver, ast.Name) and receiver.id in OWNERS:
                found.add(receiver.id)
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "table" and isinstance(value, ast.Constant):
                    found.add(TABLES.get(str(value.value), ""))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {TABLES.get(t, "") for t in SQL_WRITE.findall(node.value)}
    return found - {""}


def test_each_aggregate_has_exactly_one_writer() -> None:
    for name, path in MODULES.items():
        for model in _writes(ast.parse(path.read_text(), str(path))):
            assert name.startswith(OWNERS[model]), f"{name} writes {model}"


def test_the_writer_check_sees_a_second_writer() -> None:
    sample = """
Payment._base_manager.filter(pk=1).update(status="completed")
LedgerDrift.objects.create(kind="x")
cursor.execute("UPDATE payments_withdrawalrequest SET status = 'approved'")
update_rows(table="payments_userbalance", key=("user_id", "bigint"), columns=[], rows=[])
"""
    assert _writes(ast.parse(sample)) == {
        "Payment",
        "LedgerDrift",
        "WithdrawalRequest",
        "UserBalance",
    }
