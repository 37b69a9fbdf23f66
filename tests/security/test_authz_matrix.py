"""Every role against every row of the authorization matrix (tests/security/authz_matrix.py),
and a check that every URL accepting an unsafe method has a row or a stated exemption.

The matrix's data is built once per module, inside a transaction that is rolled back at the
end. Each test runs in a savepoint of that transaction, so every request meets the same state.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.views.generic import RedirectView

from omsguard.celery import app as celery_app

from .authz_matrix import (
    ADMIN_GENERIC_SUFFIXES,
    EXEMPT_ROUTES,
    EXEMPT_URL_NAMES,
    READ_ONLY_URL_NAMES,
    ROWS,
    Outcome,
    Role,
    Row,
    Surface,
)
from .authz_world import EFFECTS, LISTED, REQUESTS, Call, World, world_build

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The statuses an allowed request that cannot show its effect may return (Row.reaches_only).
REACHED_STATUSES = frozenset({200, 201, 202, 204, 302, 400, 409, 422})


# --- The world, once per module -------------------------------------------------------------


@contextmanager
def _rolled_back() -> Iterator[None]:
    """Open a transaction for the module and roll it back at the end, whatever happens."""
    atomic = transaction.atomic()
    # Marked like TestCase's own blocks, so `atomic(durable=True)` inside a test still works.
    atomic._from_testcase = True
    atomic.__enter__()
    try:
        yield
    finally:
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


@contextmanager
def _deterministic() -> Iterator[None]:
    """Run tasks in-process and switch off random audit and known-answer sampling.

    The root conftest does the same per test, but module fixtures run before it.
    """
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("guardrails.sampling.random", _NeverDraws())
        patch.setattr("reviews.known_answers.random", _NeverDraws())
        try:
            yield
        finally:
            celery_app.conf.task_always_eager = previous


class _NeverDraws:
    def random(self) -> float:
        return 0.999999


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    media = tmp_path_factory.mktemp("authz-media")
    with (
        django_db_blocker.unblock(),
        _rolled_back(),
        override_settings(SECURE_SSL_REDIRECT=False, MEDIA_ROOT=media),
        _deterministic(),
    ):
        yield world_build()


# --- Sending a row's request ----------------------------------------------------------------


def _send(row: Row, call: Call, user: User | None, token: str | None) -> HttpResponse:
    client = Client()
    headers = dict(call.headers)
    if user is not None:
        if row.surface is Surface.API:
            headers["Authorization"] = f"Token {token}"
        else:
            client.force_login(user)

    if row.method == "GET":
        return client.get(call.path, headers=headers)
    send = getattr(client, row.method.lower())
    if call.form:
        return send(call.path, data=call.body or {}, headers=headers)
    return send(
        call.path,
        data=json.dumps(call.body or {}),
        content_type="application/json",
        headers=headers,
    )


def _redirects_to(response: HttpResponse, url_name: str) -> bool:
    return response.status_code == 302 and response["Location"].startswith(reverse(url_name))


def _shown(response: HttpResponse) -> str:
    return f"{response.status_code}: {response.content[:600]!r}"


# --- Outcomes ---------------------------------------------------------------------------------


def _check_allowed(row: Row, response: HttpResponse, world: World, user: User | None) -> None:
    assert not _redirects_to(response, "login"), _shown(response)
    assert not _redirects_to(response, "admin:login"), _shown(response)
    if row.reaches_only:
        assert response.status_code in REACHED_STATUSES, _shown(response)
        return
    assert response.status_code < 400, _shown(response)
    if row.key in LISTED:
        assert LISTED[row.key](world, response), "the channel's object is missing from the list"
    if row.key in EFFECTS:
        assert EFFECTS[row.key](world, response, user), f"no effect; {_shown(response)}"


def _check_denied(
    row: Row, role: Role, response: HttpResponse, world: World, user: User | None
) -> None:
    if row.surface is Surface.API:
        assert response.status_code == (401 if user is None else 403), _shown(response)
        if role is Role.INTEGRATION_OTHER and row.other_channel_code:
            assert response.json()["error"]["code"] == row.other_channel_code
    elif row.surface is Surface.UI:
        if user is None:
            assert _redirects_to(response, "login"), _shown(response)
        else:
            assert response.status_code == 403, _shown(response)
    elif user is None or not user.is_staff:
        assert _redirects_to(response, "admin:login"), _shown(response)
    else:
        # A staff user without the permission: 403, or the admin refuses the action with a
        # message on the list page (200) or after a redirect. The effect check below decides.
        assert response.status_code in (200, 302, 403), _shown(response)
    if row.key in EFFECTS:
        assert not EFFECTS[row.key](world, response, user), "a denied request changed data"


def _check_hidden(row: Row, response: HttpResponse, world: World, user: User | None) -> None:
    if row.key in LISTED:
        assert response.status_code == 200, _shown(response)
        assert not LISTED[row.key](world, response), "another channel's object is listed"
        return
    assert response.status_code == 404, _shown(response)
    if row.key in EFFECTS:
        assert not EFFECTS[row.key](world, response, user), "a hidden object was changed"


CASES = [pytest.param(row, role, id=f"{row.key}-{role.value}") for row in ROWS for role in Role]


@pytest.mark.django_db
@pytest.mark.parametrize(("row", "role"), CASES)
def test_role_against_row(world: World, row: Row, role: Role) -> None:
    user = world.users.get(role)
    response = _send(row, REQUESTS[row.key](world), user, world.tokens.get(role))

    outcome = row.outcome(role)
    if outcome is Outcome.ALLOW:
        _check_allowed(row, response, world, user)
    elif outcome is Outcome.HIDDEN:
        _check_hidden(row, response, world, user)
    else:
        _check_denied(row, role, response, world, user)


def test_every_row_allows_some_role() -> None:
    # Each row's allowed role proves its request valid, so a denial is a denial and not a bad
    # request. A row that only superusers may use needs a superuser check of its own.
    superuser_only = [row.key for row in ROWS if not row.allow]

    assert superuser_only == []


# --- Completeness -----------------------------------------------------------------------------


def _url_patterns(
    resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str | None, URLPattern]]:
    """Yield (route, namespaced name, pattern) for every URL pattern, recursively."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace) if part)
            yield from _url_patterns(pattern, route, inner)
            continue
        name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
        yield route, name, pattern


def _methods(callback) -> set[str] | None:
    """Return the HTTP methods a view accepts, or None when its code does not declare them."""
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    actions = getattr(callback, "actions", None)
    if view_class is not None and actions:
        # A DRF router route: the viewset's methods mapped to actions on this URL.
        return {method.upper() for method in actions if method in view_class.http_method_names}
    if view_class is not None:
        return {
            method.upper() for method in view_class.http_method_names if hasattr(view_class, method)
        }
    return _decorated_methods(callback)


def _decorated_methods(view) -> set[str] | None:
    """Read the method list of require_http_methods (require_POST, require_GET) anywhere in
    the view's chain of decorators, which functools.wraps links by __wrapped__."""
    while view is not None:
        code = getattr(view, "__code__", None)
        if code is not None and "request_method_list" in code.co_freevars:
            cell = view.__closure__[code.co_freevars.index("request_method_list")]
            return {method.upper() for method in cell.cell_contents}
        view = getattr(view, "__wrapped__", None)
    return None


def _exemption(route: str, name: str | None, pattern: URLPattern) -> str:
    """Return why the pattern needs no row, or "" when it needs one."""
    if name in EXEMPT_URL_NAMES:
        return EXEMPT_URL_NAMES[name]
    if route in EXEMPT_ROUTES:
        return EXEMPT_ROUTES[route]
    if name and name.startswith("admin:") and name.endswith(ADMIN_GENERIC_SUFFIXES):
        return "generic admin view, guarded by the model's permissions"
    if getattr(pattern.callback, "view_class", None) is RedirectView:
        # The admin's old object URLs: every method only redirects.
        return "redirect only"
    return ""


def test_every_unsafe_url_has_a_row_or_exemption() -> None:
    covered = {(row.url_name, row.method) for row in ROWS}
    names_with_rows = {row.url_name for row in ROWS}
    missing = []
    for route, name, pattern in _url_patterns():
        if _exemption(route, name, pattern):
            continue
        methods = _methods(pattern.callback)
        if methods is None:
            if name not in READ_ONLY_URL_NAMES and name not in names_with_rows:
                missing.append(
                    f"{route} ({name}): methods unknown; add a row, or list it as "
                    "read-only in READ_ONLY_URL_NAMES"
                )
            continue
        for method in sorted(methods & UNSAFE_METHODS):
            if (name, method) not in covered:
                missing.append(f"{method} {route} ({name})")

    listing = "\n".join(missing)
    assert missing == [], f"URLs that change state without a row in authz_matrix.py:\n{listing}"


def test_rows_match_urls_requests_and_effects() -> None:
    patterns = {name: pattern for _, name, pattern in _url_patterns() if name}
    keys = [row.key for row in ROWS]

    assert len(keys) == len(set(keys)), "row keys repeat"
    assert set(REQUESTS) == set(keys)
    for row in ROWS:
        assert row.url_name in patterns, f"{row.key}: no URL named {row.url_name}"
        methods = _methods(patterns[row.url_name].callback)
        assert methods is None or row.method in methods, f"{row.key}: {row.method} not accepted"
        changes = row.method in UNSAFE_METHODS
        if changes and not row.reaches_only:
            assert row.key in EFFECTS, f"{row.key}: a write needs an effect to check"
        assert not (row.hidden & row.allow), f"{row.key}: a role is both allowed and hidden"


def test_read_only_names_are_current() -> None:
    patterns = {name: pattern for _, name, pattern in _url_patterns() if name}

    for name in READ_ONLY_URL_NAMES:
        assert name in patterns, f"READ_ONLY_URL_NAMES lists {name}, which no URL has"
        methods = _methods(patterns[name].callback)
        assert methods is None or not methods & UNSAFE_METHODS, f"{name} accepts {methods}"
