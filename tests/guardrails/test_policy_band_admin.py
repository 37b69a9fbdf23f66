"""The value-band table of a policy version scrolls inside its own box in the admin.

Measuring the layout needs a browser, so these tests check the two parts that produce it. The
admin pages link the stylesheet, and the stylesheet makes the band table a scrolling block.
"""

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from guardrails.defaults import default_policies_load
from guardrails.models import PolicyVersion
from tests.conftest import ensure_role_groups
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db

STYLESHEET = "omsguard/admin-policy-bands.css"


@pytest.fixture
def ops_client(client):
    ensure_role_groups()
    default_policies_load()
    client.force_login(make_staff_user("olivia", "ops_manager"))
    return client


def stylesheet_rules() -> dict[str, str]:
    path = finders.find(STYLESHEET)
    assert path, f"{STYLESHEET} is missing from the static files"
    with open(path, encoding="utf-8") as file:
        css = re.sub(r"/\*.*?\*/", "", file.read(), flags=re.DOTALL)
    return {
        selector.strip(): " ".join(body.split())
        for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)
    }


def test_add_page_links_band_stylesheet(ops_client):
    response = ops_client.get(reverse("admin:guardrails_policyversion_add"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="bands-group"' in html
    assert f'href="/static/{STYLESHEET}"' in html


def test_change_page_links_band_stylesheet(ops_client):
    version = PolicyVersion.objects.filter(bands__isnull=False).first()

    response = ops_client.get(reverse("admin:guardrails_policyversion_change", args=[version.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="bands-group"' in html
    assert f'href="/static/{STYLESHEET}"' in html


def test_band_table_scrolls_inside_its_box():
    rule = stylesheet_rules()["#bands-group .tabular table"]

    # A table element ignores overflow; as a block it scrolls instead of widening the page.
    assert "display: block;" in rule
    assert "max-width: 100%;" in rule
    assert "overflow-x: auto;" in rule
