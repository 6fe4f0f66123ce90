"""App configuration of the payments app."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from payments import checks, orm_compat, roles  # noqa: F401 - checks registers checks

        orm_compat.connect()
        post_migrate.connect(roles.install_roles, sender=self, dispatch_uid="payments.roles")
