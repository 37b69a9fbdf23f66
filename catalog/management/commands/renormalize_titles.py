from django.core.management.base import BaseCommand

from catalog.services import sku_titles_renormalize


class Command(BaseCommand):
    help = (
        "Recompute every SKU's normalised title. Run it after changing the fold table in "
        "catalog/normalize.py."
    )

    def handle(self, *args, **options) -> None:
        changed = sku_titles_renormalize()
        self.stdout.write(f"{changed} normalised titles changed.")
