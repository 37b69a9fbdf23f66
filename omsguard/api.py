"""Shared REST API pieces: permissions and pagination.

Kept apart from anything that imports rest_framework.views, because DRF imports this module
while it builds APIView's defaults.
"""

from rest_framework import pagination, permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django model permissions, with reads requiring the model's `view_` permission."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class Pagination(pagination.PageNumberPagination):
    """Pages of `page_size` rows (default PAGE_SIZE, at most max_page_size).

    An invalid page (not a number, below 1, or past the last page) gets 404 with the API's
    error body, as DRF decides; the HTML pages show the nearest page instead. A page_size
    that is not a positive integer means the default size, and a larger one the maximum.
    """

    invalid_page_message = "Invalid page {page_number!r:.40}: {message}."
    page_size_query_param = "page_size"
    max_page_size = 500
