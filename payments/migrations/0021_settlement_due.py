"""The payments due for settlement, kept by the database: the settle sweep reads only those.

The sweep's query for completed payments without their deposit scanned every payment, every
few seconds: 8.5 ms at 10,000 postings, 632 ms at 1,000,000. ``payments_settlementdue`` holds
one row per completed payment not credited yet, and on PostgreSQL triggers keep it whoever
writes, so the sweep's cost follows the payments due, not the ledger's size:

- ``payments_payment_due_*`` (AFTER INSERT / UPDATE OF status, per row, only when the status
  enters or leaves ``completed``): a payment becoming completed without a deposit gets its
  row; one leaving completed (refunded before it was credited) loses it.
- ``payments_transaction_settlement_due`` (AFTER INSERT, once per statement over its new
  postings): a DEPOSIT removes its payment's row, one DELETE for a whole settlement batch.
- ``payments_settlementdue_frozen``: the rows are never updated (moving one to another payment
  would hide a payment from the sweep). The application role cannot DELETE them either
  (``db_roles``: every payments table is a money table unless listed), so the row functions
  run as the owner (SECURITY DEFINER, with a pinned search_path).
- ``payments_settlement_due_rebuild()`` recomputes the rows from the payments and the ledger
  (after a bulk load with triggers off); the migration runs it once to fill the table.

SQLite (the embedded demo) gets the table only; its sweep reads the payments as before.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

_DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp"
_DEPOSITED = """EXISTS (SELECT 1 FROM public.payments_transaction t
                  WHERE t.payment_id = {payment} AND t.transaction_type = 'deposit')"""

PG_FORWARD = f"""
CREATE OR REPLACE FUNCTION public.payments_settlement_due_payment() RETURNS trigger
LANGUAGE plpgsql {_DEFINER} SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    IF NEW.status = 'completed' THEN
        IF NOT {_DEPOSITED.format(payment="NEW.id")} THEN
            INSERT INTO public.payments_settlementdue (payment_id, due_since)
            VALUES (NEW.id, now()) ON CONFLICT (payment_id) DO NOTHING;
        END IF;
    ELSE
        DELETE FROM public.payments_settlementdue WHERE payment_id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payments_payment_due_insert
    AFTER INSERT ON public.payments_payment
    FOR EACH ROW WHEN (NEW.status = 'completed')
    EXECUTE FUNCTION public.payments_settlement_due_payment();

CREATE TRIGGER payments_payment_due_status
    AFTER UPDATE OF status ON public.payments_payment
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
                       AND (NEW.status = 'completed' OR OLD.status = 'completed'))
    EXECUTE FUNCTION public.payments_settlement_due_payment();

CREATE OR REPLACE FUNCTION public.payments_settlement_due_settled() RETURNS trigger
LANGUAGE plpgsql {_DEFINER} SET enable_seqscan = off SET enable_hashjoin = off
    SET enable_mergejoin = off AS $$
BEGIN
    DELETE FROM public.payments_settlementdue d
     USING new_postings n
     WHERE n.transaction_type = 'deposit' AND n.payment_id IS NOT NULL
       AND d.payment_id = n.payment_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payments_transaction_settlement_due
    AFTER INSERT ON public.payments_transaction
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_settlement_due_settled();

CREATE OR REPLACE FUNCTION public.payments_settlementdue_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payments_settlementdue rows are kept by the database: never updated'
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER payments_settlementdue_frozen
    BEFORE UPDATE ON public.payments_settlementdue
    FOR EACH ROW EXECUTE FUNCTION public.payments_settlementdue_frozen();

CREATE OR REPLACE FUNCTION public.payments_settlement_due_rebuild() RETURNS bigint
LANGUAGE plpgsql {_DEFINER} AS $$
DECLARE
    due bigint;
BEGIN
    DELETE FROM public.payments_settlementdue d
     WHERE NOT EXISTS (SELECT 1 FROM public.payments_payment p
                        WHERE p.id = d.payment_id AND p.status = 'completed')
        OR {_DEPOSITED.format(payment="d.payment_id")};
    INSERT INTO public.payments_settlementdue (payment_id, due_since)
    SELECT p.id, coalesce(p.completed_at, now()) FROM public.payments_payment p
     WHERE p.status = 'completed' AND NOT {_DEPOSITED.format(payment="p.id")}
    ON CONFLICT (payment_id) DO NOTHING;
    SELECT count(*) INTO due FROM public.payments_settlementdue;
    RETURN due;
END;
$$;

SELECT public.payments_settlement_due_rebuild();
"""

PG_BACKWARD = """
DROP TRIGGER IF EXISTS payments_payment_due_insert ON public.payments_payment;
DROP TRIGGER IF EXISTS payments_payment_due_status ON public.payments_payment;
DROP TRIGGER IF EXISTS payments_transaction_settlement_due ON public.payments_transaction;
DROP TRIGGER IF EXISTS payments_settlementdue_frozen ON public.payments_settlementdue;
DROP FUNCTION IF EXISTS public.payments_settlement_due_payment();
DROP FUNCTION IF EXISTS public.payments_settlement_due_settled();
DROP FUNCTION IF EXISTS public.payments_settlementdue_frozen();
DROP FUNCTION IF EXISTS public.payments_settlement_due_rebuild();
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0020_poison_isolation")]

    operations = [
        migrations.CreateModel(
            name="SettlementDue",
            fields=[
                (
                    "payment",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="payments.payment",
                    ),
                ),
                ("due_since", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "payment due for settlement",
                "verbose_name_plural": "payments due for settlement",
            },
        ),
        migrations.RunPython(forward, backward),
    ]
