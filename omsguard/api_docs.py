"""The Swagger UI page at /api/docs/, served under the site's Content-Security-Policy.

drf-spectacular's split view serves the script that starts Swagger UI from its own URL
(?script), so the page needs no inline script. Swagger UI's stylesheet draws its icons from
data: URIs, so this page alone also allows data: images. Swagger UI and its assets come from
drf-spectacular-sidecar's static files, so the page works without internet access.
"""

from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.views import SpectacularSwaggerSplitView


@method_decorator(csp_update({"img-src": ["data:"]}), name="dispatch")
class ApiDocsView(SpectacularSwaggerSplitView):
    template_name = "api_docs/swagger_ui.html"
