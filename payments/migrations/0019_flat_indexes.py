"""Indexes that keep lists and sweeps flat in data size: the admin's default order of payments
and of provider events (newest first, then the primary key), and the payments whose status
moved lately (reconciliation's incremental pass). On PostgreSQL they are built CONCURRENTLY,
so a large table keeps taking writes while they build."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexWithoutLock(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL; a plain AddIndex elsewhere (SQLite)."""

    def database_forwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, *args)
        else:
            migrations.AddIndex.database_forwards(self, app_label, schema_editor, *args)

    def database_backwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, *args)
        else:
            migrations.AddIndex.database_backwards(self, app_label, schema_editor, *args)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [("payments", "0018_ledger_statement_checks")]

    operations = [
        AddIndexWithoutLock(
            model_name="payment",
            index=models.Index(fields=["created_at", "id"], name="payment_created_id"),
        ),
        AddIndexWithoutLock(
            model_name="payment",
            index=models.Index(fields=["status_changed_at"], name="payment_status_changed"),
        ),
        AddIndexWithoutLock(
            model_name="providerevent",
            index=models.Index(fields=["received_at", "id"], name="event_received_id"),
        ),
    ]
