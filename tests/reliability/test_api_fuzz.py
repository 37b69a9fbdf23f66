"""Fuzz every REST API operation from the OpenAPI schema the app serves at /api/schema/.

schemathesis reads the schema and, for every operation, generates requests in two modes:
positive (valid by the schema) and negative (wrong types, missing or unknown fields,
out-of-range numbers, strings that break a pattern, unknown enum values). The requests go in
process to the WSGI application, as a superuser, as an ops manager, as an integration with
a grant for two channels, or without a token, against a database seeded with a row of every
resource (tests/reliability/fuzz_seed.py). Part of the valid requests name existing rows in their
path, query and body, and some carry a NUL byte in a string, so they reach the code behind
the lookups and the database writes.

Then every operation that takes a JSON body gets the same malformed bodies: invalid UTF-8,
truncated JSON, an array or a scalar where an object belongs, an integer of 5,000 digits,
NaN, a NUL byte, and nesting 100,000 levels deep. Each must get a 4xx.

Every response must pass these checks:
- not_a_server_error: no 5xx;
- status_code_conformance: the status is documented for the operation;
- content_type_conformance and response_headers_conformance: as documented;
- response_schema_conformance: the body validates against the documented schema;
- negative_data_rejection (generated requests only): a request that breaks the schema gets a
  4xx, except for the kinds the API accepts on purpose, explained at LENIENT_QUERY_PARAMETERS.

positive_data_acceptance is not used, because a valid request may still name an order that
does not exist, ask for a state change the record is not in, or come from a role without the
permission, and then a 404, 409 or 403 is the right response.
"""

import traceback
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from werkzeug.test import Client

from tests.reliability.figures import figure, sized

from .fuzz_seed import AMAZON, FuzzWorld, fuzz_world_create

SUITE = "fuzz"
SCHEMA_PATH = "/api/schema/"
API_PREFIX = "/api/v1/"

# Generated requests per operation and generation mode. The schema has about 60 operations,
# so "full" sends about 60 x 2 x 10 = 1,200 requests, and "ci" one valid and one invalid
# request per operation, about 120, which take seconds.
EXAMPLES_PER_MODE = sized(full=10, ci=1)
MIN_GENERATED_REQUESTS = sized(full=1000, ci=100)

# Who sends a request. A superuser passes every permission check, so requests reach the
# deepest code. The two roles that use the API follow, and sometimes nobody (no token).
IDENTITIES = ["admin", "admin", "ops", "integration", "integration", "anonymous"]

# Operations left out of the run, with the reason. None is: every operation is fuzzed.
EXCLUDED: dict[str, str] = {}

# negative_data_rejection expects a 4xx for every request that breaks the schema. The API
# accepts three kinds of such requests on purpose, and the check skips a request that breaks
# the schema only in these ways:
# - List endpoints follow DRF's conventions for query parameters: an empty value means no
#   filter, the first page or the default page size. The response is a 200 with defaults,
#   which the API allows for a bad query parameter ("200 with defaults or 400, never 500").
#   A page_size or ordering that is not empty and not valid gets a 400 (docs/api.md), but an
#   empty one still reads as the default.
# - DRF's CharField strips leading and trailing whitespace before it checks max_length, so a
#   string padded with whitespace past maxLength is accepted and stored without the padding.
# - A form body cannot send null, so DRF reads an empty form value of a nullable field as null
#   (HTML forms send "" for "nothing chosen"); schemathesis counts the "" as too short.
LENIENT_QUERY_PARAMETERS = {"page_size", "ordering"}
FORM_MEDIA_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}

MALFORMED_BODIES = {
    "invalid UTF-8": b'{"note": "\xff\xfe"}',
    "truncated JSON": b'{"note": ',
    "array instead of an object": b'[{"note": "x"}]',
    "string instead of an object": b'"note"',
    "integer of 5,000 digits": b'{"order": ' + b"9" * 5000 + b"}",
    "NaN": b'{"confidence": NaN, "quantity": NaN}',
    "NUL byte in a string": b'{"note": "a\\u0000b", "detail": "a\\u0000b"}',
    "nesting 100,000 levels deep": b"[" * 100_000,
}


def negative_data_rejection(ctx, response, case):
    """schemathesis' negative_data_rejection, minus the three tolerated kinds explained above."""
    # schemathesis records what a negative case broke. Without that record the check runs.
    mutations = case.meta.phase.data.mutations if case.meta is not None else ()
    if mutations and all(_tolerated(mutation, case) for mutation in mutations):
        return None
    return checks.negative_data_rejection(ctx, response, case)


RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
GENERATED_REQUEST_CHECKS = [*RESPONSE_CHECKS, negative_data_rejection]


@dataclass
class FuzzTally:
    """What a run sent and got back, and every distinct check failure with its report."""

    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    exercised: set[str] = field(default_factory=set)
    failed_responses: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def count(self, operation_label: str, status: int) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.exercised.add(operation_label)

    def fail(self, key: str, report: str) -> None:
        self.failed_responses += 1
        self.failures.setdefault(key, report)

    def answered(self, low: int, high: int) -> int:
        return sum(number for status, number in self.statuses.items() if low <= status < high)


@pytest.fixture
def fuzz_world(transactional_db) -> FuzzWorld:
    # Transactional: the seed's webhook orders are processed on commit, as in production, and
    # a view that recovers from an IntegrityError must not poison a test-wide transaction.
    return fuzz_world_create()


@pytest.fixture
def server_tracebacks():
    """Collect the traceback of every exception a request raised, to report with its 500."""
    collected: list[str] = []

    def collect(sender, request=None, **kwargs):
        collected.append(traceback.format_exc())

    got_request_exception.connect(collect, weak=False)
    yield collected
    got_request_exception.disconnect(collect)


def test_api_fuzz_no_server_errors_or_schema_violations(fuzz_world, server_tracebacks, settings):
    # Rate limits have their own suite, and here they would cut the run short at random.
    settings.OMSGUARD_RATE_LIMIT_API = ""
    app = WSGIHandler()
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, app)
    # The test sets the Authorization header itself, per identity.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [operation for operation in operations if operation.label not in EXCLUDED]

    generated = FuzzTally()
    for operation in fuzzed:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, fuzz_world, generated)
    malformed = FuzzTally()
    for operation in fuzzed:
        _send_malformed_bodies(operation, Client(app), fuzz_world, malformed)
    _record_figures(operations, generated, malformed)

    failures = {**generated.failures, **malformed.failures}
    assert not failures, _failure_report(failures, server_tracebacks)
    assert generated.answered(500, 600) == 0
    assert malformed.answered(500, 600) == 0
    assert generated.exercised == {operation.label for operation in fuzzed}
    assert generated.requests >= MIN_GENERATED_REQUESTS


def _fuzz_operation(operation, mode: GenerationMode, world: FuzzWorld, tally: FuzzTally) -> None:
    """Send EXAMPLES_PER_MODE generated requests to one operation and check every response."""

    # Derandomized and without shrinking or a database, so a run is repeatable and bounded;
    # a failure is reported with its curl command instead of being minimised.
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def send(case, data):
        identity = data.draw(st.sampled_from(IDENTITIES))
        if mode == GenerationMode.POSITIVE and data.draw(st.booleans()):
            _use_existing_rows(case, world, data)
        if mode == GenerationMode.POSITIVE and data.draw(st.integers(0, 3)) == 0:
            _add_nul_byte(case.body, data)
        headers = _auth_headers(world, identity)

        response = case.call(headers=headers)
        tally.count(operation.label, response.status_code)
        try:
            case.validate_response(response, checks=GENERATED_REQUEST_CHECKS, headers=headers)
        except FailureGroup as group:
            titles = ", ".join(sorted({failure.title for failure in group.exceptions}))
            tally.fail(f"{operation.label} [{mode.value}, {identity}] {titles}", str(group))

    send()


def _send_malformed_bodies(operation, client: Client, world: FuzzWorld, tally: FuzzTally) -> None:
    """POST each malformed JSON body to an operation that reads JSON; each must get a 4xx."""
    if "application/json" not in operation.get_request_payload_content_types():
        return
    case = operation.Case(
        path_parameters=_existing_path_parameters(operation.path, world),
        media_type="application/json",
    )
    for number, (name, body) in enumerate(MALFORMED_BODIES.items()):
        # A fresh Idempotency-Key, so operations that require one go on to read the body.
        headers = {
            **_auth_headers(world, "admin"),
            "Content-Type": "application/json",
            "Idempotency-Key": f"fuzz-malformed-{operation.label}-{number}",
        }
        response = client.open(
            case.formatted_path, method=operation.method.upper(), data=body, headers=headers
        )
        tally.count(operation.label, response.status_code)
        key = f"{operation.label} [malformed body: {name}]"
        if not 400 <= response.status_code < 500:
            tally.fail(key, f"Expected a 4xx, got {response.status_code}.")
            continue
        try:
            case.validate_response(response, checks=RESPONSE_CHECKS, headers=headers)
        except FailureGroup as group:
            tally.fail(key, str(group))


def _auth_headers(world: FuzzWorld, identity: str) -> dict[str, str]:
    if identity == "anonymous":
        return {}
    return {"Authorization": f"Token {world.tokens[identity]}"}


def _use_existing_rows(case, world: FuzzWorld, data) -> None:
    """Swap generated ids and codes for existing ones, so the request gets past the lookups.

    Only values of the same JSON type are swapped, so a valid request stays valid.
    """
    for name in case.path_parameters:
        choices = _path_choices(case.path, name, world)
        if choices:
            case.path_parameters[name] = data.draw(st.sampled_from(choices))
    for name, value in list(case.query.items()):
        choices = [item for item in world.values.get(name, []) if _same_type(item, value)]
        if choices:
            case.query[name] = data.draw(st.sampled_from(choices))
    _swap_body_values(case.body, world, data)


def _swap_body_values(node, world: FuzzWorld, data) -> None:
    if isinstance(node, list):
        for item in node:
            _swap_body_values(item, world, data)
        return
    if not isinstance(node, dict):
        return
    for name, value in node.items():
        choices = [item for item in world.values.get(name, []) if _same_type(item, value)]
        if choices:
            node[name] = data.draw(st.sampled_from(choices))
        else:
            _swap_body_values(value, world, data)


def _add_nul_byte(body, data) -> None:
    """Append a NUL byte to one string in the body: valid JSON, and PostgreSQL rejects it."""
    containers = list(_string_slots(body))
    if containers:
        container, key = data.draw(st.sampled_from(containers))
        container[key] += "\x00"


def _string_slots(node):
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        if isinstance(value, str):
            yield node, key
        else:
            yield from _string_slots(value)


def _same_type(candidate, value) -> bool:
    # bool is an int in Python but not in JSON.
    return type(candidate) is type(value) and not isinstance(value, bool)


def _path_choices(path: str, name: str, world: FuzzWorld) -> list:
    if name == "channel_code":
        # The Amazon channel first: the only kind whose marketplace endpoint reads the body.
        return sorted(world.values["channel"], key=lambda code: code != AMAZON)
    if name == "order_id":
        return world.ids["orders"]
    resource = path.removeprefix(API_PREFIX).split("/")[0]
    return world.ids.get(resource, []) if name == "id" else []


def _existing_path_parameters(path: str, world: FuzzWorld) -> dict:
    parameters = {}
    for name in ("id", "order_id", "channel_code"):
        if "{" + name + "}" in path:
            parameters[name] = _path_choices(path, name, world)[0]
    return parameters


def _tolerated(mutation, case) -> bool:
    if mutation.parameter_location == ParameterLocation.QUERY:
        return (
            mutation.parameter in LENIENT_QUERY_PARAMETERS
            or _query_value_read(case.query.get(mutation.parameter)) == ""
        )
    if mutation.parameter_location != ParameterLocation.BODY:
        return False
    value = _value_at(case.body, mutation.path)
    if "maxLength" in mutation.keywords and isinstance(value, str) and value != value.strip():
        return True
    return "minLength" in mutation.keywords and value == "" and case.media_type in FORM_MEDIA_TYPES


def _value_at(node, path) -> object:
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _query_value_read(value) -> object:
    """Return the value Django reads for a query parameter: the last of repeated ones."""
    if isinstance(value, list):
        return value[-1] if value else ""
    if isinstance(value, dict) and not value:
        return ""
    return value


def _record_figures(operations: list, generated: FuzzTally, malformed: FuzzTally) -> None:
    figure(SUITE, "operations in the schema", len(operations))
    figure(SUITE, "operations exercised", len(generated.exercised))
    figure(SUITE, "generated requests sent", generated.requests)
    figure(SUITE, "generated requests answered 2xx", generated.answered(200, 300))
    figure(SUITE, "malformed-body requests sent", malformed.requests)
    figure(
        SUITE,
        "responses with a 5xx status",
        generated.answered(500, 600) + malformed.answered(500, 600),
    )
    figure(
        SUITE,
        "responses failing a check (schema violations)",
        generated.failed_responses + malformed.failed_responses,
    )


def _failure_report(failures: dict[str, str], tracebacks: list[str]) -> str:
    report = "\n\n".join(f"{key}\n{message}" for key, message in sorted(failures.items()))
    if tracebacks:
        report += "\n\nServer tracebacks:\n" + "\n".join(dict.fromkeys(tracebacks))
    return report
