"""Every credit of a payment in review needs a second operator, not only a credit in full.

Before this, crediting the received amount was applied by the operator who asked for it, so
rows decided that way exist: on PostgreSQL the new CHECK is added NOT VALID (enforced on every
new or changed row, the old decisions kept as they were made). SQLite, the embedded demo,
keeps the model state only, as for the other guards it does not get.
"""

from django.db import migrations, models

NEW = "resolution_credit_second_operator"
OLD = "resolution_full_credit_second_operator"
TABLE = "payments_paymentresolution"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {OLD}", params=None)
    schema_editor.execute(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT {NEW} CHECK (decided_by_id IS NULL "
        "OR action = 'reject' OR decided_by_id <> requested_by_id) NOT VALID",
        params=None,
    )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {NEW}", params=None)
    schema_editor.execute(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT {OLD} CHECK (decided_by_id IS NULL "
        "OR action <> 'credit_full' OR decided_by_id <> requested_by_id) NOT VALID",
        params=None,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0014_address_lookup_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="paymentresolution", name=OLD),
                migrations.AddConstraint(
                    model_name="paymentresolution",
                    constraint=models.CheckConstraint(
                        condition=models.Q(decided_by__isnull=True)
                        | models.Q(action="reject")
                        | ~models.Q(decided_by=models.F("requested_by")),
                        name=NEW,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
