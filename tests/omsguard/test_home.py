"""The landing page sends each role to its work."""

import pytest
from django.urls import reverse

from tests.conftest import make_user


@pytest.mark.django_db
def test_anonymous_visitor_goes_to_login(client):
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_agent_lands_on_the_queue(client, agent):
    client.force_login(agent)

    response = client.get(reverse("home"))

    assert response["Location"] == reverse("reviews:queue")


@pytest.mark.django_db
def test_leadership_lands_on_the_dashboard(client):
    client.force_login(make_user("lee", "leadership"))

    response = client.get(reverse("home"))

    assert response["Location"] == reverse("dashboard:index")
    assert client.get(response["Location"]).status_code == 200


@pytest.mark.django_db
def test_login_continues_to_the_role_landing_page(client):
    make_user("lee", "leadership")

    response = client.post(reverse("login"), {"username": "lee", "password": "pw-lee"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("dashboard:index")


def test_favicon_redirects_to_the_icon(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"].endswith("omsguard/favicon.svg")
    assert finders.find("omsguard/favicon.svg")


@pytest.mark.django_db
def test_pages_link_the_icon(client):
    page = client.get(reverse("login"))

    assert 'rel="icon"' in page.content.decode()
