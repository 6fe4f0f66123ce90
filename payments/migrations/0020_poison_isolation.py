"""What keeps one failing provider call from blocking the rest: a withdrawal's payout and a
currency's terms each remember their consecutive failures, when to try again and the last
error, so the sweeps back them off one by one and an operator sees which item is failing.

Adding a column with a constant default is a catalogue change on PostgreSQL 11+ (no rewrite)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("payments", "0019_flat_indexes")]

    operations = [
        migrations.AddField(
            model_name="currency",
            name="terms_failures",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Consecutive syncs NowPayments did not give this coin's terms.",
            ),
        ),
        migrations.AddField(
            model_name="currency",
            name="terms_last_error",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="currency",
            name="terms_retry_at",
            field=models.DateTimeField(
                blank=True, help_text="The sync keeps the stored terms until then.", null=True
            ),
        ),
        migrations.AddField(
            model_name="withdrawalrequest",
            name="payout_attempts",
            field=models.PositiveIntegerField(
                default=0, help_text="Consecutive failed calls to NowPayments for this payout."
            ),
        ),
        migrations.AddField(
            model_name="withdrawalrequest",
            name="payout_last_error",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="withdrawalrequest",
            name="payout_retry_at",
            field=models.DateTimeField(
                blank=True, help_text="The payout sweeps leave it alone until then.", null=True
            ),
        ),
    ]
