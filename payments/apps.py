"""App configuration of the payments app."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payments import checks, orm_compat  # noqa: F401 - checks registers system checks

        orm_compat.connect()
