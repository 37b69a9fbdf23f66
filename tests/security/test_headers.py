"""The Content-Security-Policy on pages, API responses and the admin, and templates without
inline code that the policy would block."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.conftest import make_user

# The whole policy, directive by directive. A source added in settings must be added here too.
EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Only the Swagger UI page also allows data: images, for the icons in its stylesheet.
API_DOCS_POLICY = EXPECTED_POLICY | {"img-src": ["'self'", "data:"]}

# Inline code that the policy blocks: <style> elements, style attributes, <script> elements
# without a src, and on* event handler attributes.
INLINE_CODE = {
    "<style> element": re.compile(r"<style[\s>]", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "inline <script>": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=\s*[\"']", re.IGNORECASE),
    "hx-on attribute": re.compile(r"\shx-on[:-]", re.IGNORECASE),
}
# An email is read in a mail client, never served under the policy, and mail clients need
# inline styles.
NOT_SERVED_TEMPLATES = {"reviews/confirm/email.html"}


def policy_of(response) -> dict[str, list[str]]:
    """Parse the Content-Security-Policy header into directive -> sources."""
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_policy(response, expected: dict[str, list[str]] = EXPECTED_POLICY) -> None:
    assert "Content-Security-Policy" in response, f"no policy on {response.status_code}"
    assert policy_of(response) == expected
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="root-pass-123"))
    return client


@pytest.mark.django_db
def test_login_page_has_policy(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert_policy(response)


@pytest.mark.django_db
def test_queue_page_and_htmx_fragment_have_policy(client, agent):
    client.force_login(agent)

    page = client.get(reverse("reviews:queue"))
    fragment = client.get(reverse("reviews:queue"), HTTP_HX_REQUEST="true")

    assert page.status_code == 200
    assert_policy(page)
    assert fragment.status_code == 200
    assert_policy(fragment)


@pytest.mark.django_db
def test_not_found_page_has_policy(client, agent):
    client.force_login(agent)

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert_policy(response)


@pytest.mark.django_db
def test_api_responses_have_policy(client):
    integration = make_user("ivy", "integration")
    token = Token.objects.create(user=integration)

    listed = client.get(reverse("order-list"), HTTP_AUTHORIZATION=f"Token {token.key}")
    without_token = client.get(reverse("order-list"))
    schema = client.get(reverse("schema"))

    assert listed.status_code == 200
    assert_policy(listed)
    assert without_token.status_code == 401
    assert_policy(without_token)
    assert schema.status_code == 200
    assert_policy(schema)


@pytest.mark.django_db
def test_admin_pages_have_policy(client, superuser_client):
    login = client.get(reverse("admin:login"))
    index = superuser_client.get(reverse("admin:index"))
    change_list = superuser_client.get(reverse("admin:auth_user_changelist"))

    for response in (login, index, change_list):
        assert response.status_code == 200
        assert_policy(response)


@pytest.mark.django_db
def test_api_docs_allow_data_images_only(client):
    page = client.get(reverse("api-docs"))
    html = page.content.decode()
    script_url = re.search(r'<script src="([^"]*\?[^"]*script[^"]*)"', html)

    assert page.status_code == 200
    assert_policy(page, API_DOCS_POLICY)
    assert not INLINE_CODE["inline <script>"].search(html)
    assert not INLINE_CODE["<style> element"].search(html)
    assert script_url, "the page loads Swagger UI's start script from a URL"
    script = client.get(script_url.group(1).replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


@pytest.mark.django_db
def test_htmx_config_forbids_eval_and_inline_styles(client):
    html = client.get(reverse("login")).content.decode()
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    css = (Path(settings.BASE_DIR) / "static" / "omsguard" / "app.css").read_text()

    assert meta, "base.html sets htmx's configuration"
    config = json.loads(meta.group(1))
    assert config["allowEval"] is False
    assert config["includeIndicatorStyles"] is False
    assert ".htmx-request .htmx-indicator" in css


def served_templates() -> list[tuple[str, Path]]:
    """Every HTML template of the project, by its name relative to a templates directory."""
    roots = [Path(settings.BASE_DIR) / "templates"]
    roots += sorted(Path(settings.BASE_DIR).glob("*/templates"))
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.html")):
            name = path.relative_to(root).as_posix()
            if name not in NOT_SERVED_TEMPLATES:
                found.append((name, path))
    return found


def test_templates_have_no_inline_code():
    offences = []
    for name, path in served_templates():
        text = path.read_text()
        for kind, pattern in INLINE_CODE.items():
            offences += [f"{name}: {kind}: {match.group(0)!r}" for match in pattern.finditer(text)]

    assert served_templates(), "the template folders were found"
    assert offences == []
