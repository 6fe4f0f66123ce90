"""manage.py install_schedules: create the default beat schedules that are missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workers.schedules import install_schedules


class Command(BaseCommand):
    help = "Create the default periodic tasks that are missing; existing ones stay as they are."

    def handle(self, *args: Any, **options: Any) -> None:
        created = install_schedules()
        if created:
            self.stdout.write(self.style.SUCCESS(f"Installed: {', '.join(created)}."))
        else:
            self.stdout.write("All default schedules are installed already.")
