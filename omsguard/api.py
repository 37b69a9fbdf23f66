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
    page_size_query_param = "page_size"
    max_page_size = 500
