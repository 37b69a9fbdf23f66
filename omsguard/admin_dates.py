"""The admin site, with change lists that reject an out-of-range date drill-down.

Django 5.2's change list computes the end of a `date_hierarchy` year, month or day outside its
own ValueError check. So `?created_at__year=9999` (the last year Python dates allow) raised an
uncaught ValueError or OverflowError, and the page failed with a server error. A row dated far
in the future makes the admin itself offer that link. Here every registered admin, the
third-party ones included (periodic tasks, login attempts), treats such a date like any other
invalid lookup. It redirects to the unfiltered list with `?e=1`, which shows that the filter was
invalid.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest


class BoundedDateChangeList(ChangeList):
    def get_filters(self, request: HttpRequest):
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error


class DateHierarchyBoundsMixin:
    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return BoundedDateChangeList


class BoundedDatesAdminSite(admin.AdminSite):
    """Admin site that registers each ModelAdmin as a subclass using BoundedDateChangeList."""

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, DateHierarchyBoundsMixin):
            admin_class = type(
                admin_class.__name__,
                (DateHierarchyBoundsMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        super().register(model_or_iterable, admin_class, **options)


class BoundedDatesAdminConfig(AdminConfig):
    """App config that replaces django.contrib.admin, making the site above the default."""

    default_site = "omsguard.admin_dates.BoundedDatesAdminSite"
