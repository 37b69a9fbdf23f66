"""Shared REST API pieces: permissions and pagination.

Kept apart from anything that imports rest_framework.views, because DRF imports this module
while it builds APIView's defaults.
"""

from django.core.paginator import Paginator
from rest_framework import pagination, permissions
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request

from .query_params import reject_repeated_parameters


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django model permissions, with reads requiring the model's `view_` permission."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class Pagination(pagination.PageNumberPagination):
    """Pages of `page_size` rows (default PAGE_SIZE, at most max_page_size).

    A `page` or `page_size` that is not a whole number in range gets a 400 naming the
    parameter and the allowed values, where DRF would give a 404 for the page and the
    default size for page_size. A page past the last one gets a 404 naming the last page.
    An empty value means page 1 or the default size. The HTML pages show the nearest page.
    Either parameter given more than once is a 400 too.
    """

    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request: Request, view=None):
        # QueryDict.get() would silently read the last of `?page=1&page=2`.
        reject_repeated_parameters(
            request.query_params, [self.page_query_param, self.page_size_query_param]
        )
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param, "").strip()
        if not raw:
            return self.page_size
        size = _whole_number(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"Enter a whole number from 1 to {self.max_page_size}."
                    ]
                }
            )
        return size

    def get_page_number(self, request: Request, paginator: Paginator) -> int:
        raw = request.query_params.get(self.page_query_param, "").strip()
        if not raw:
            return 1
        if raw in self.last_page_strings:
            return paginator.num_pages
        number = _whole_number(raw)
        if number is None or number < 1:
            raise ValidationError(
                {self.page_query_param: ["Enter a whole number from 1, or last for the last page."]}
            )
        # num_pages runs the count query that paginator.page() would run anyway, once.
        if number > paginator.num_pages:
            raise NotFound(
                f"Page {number} is past the last page, page {paginator.num_pages}. "
                f"The list has {paginator.count} results."
            )
        return number

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters


def _whole_number(text: str) -> int | None:
    """Return the ASCII digits as an int; None for anything else, such as "1e3" or "²"."""
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return int(text)
    except ValueError:
        # Python converts at most 4,300 digits by default (sys.set_int_max_str_digits).
        return None
