"""The JSONL export of labelled examples: contents line by line, filters, command and download."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Sku
from guardrails.models import ActionType, Decision, Verdict
from reviews.export import ExportError, day_start, labelled_examples, labelled_examples_jsonl
from reviews.labels import error_label_add
from reviews.models import ErrorLabel, ReviewItem, ReviewKind
from reviews.services import review_item_revise
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
    stock_set,
)
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401
from tests.reviews.conftest import SUBSTITUTION, propose

pytestmark = pytest.mark.django_db


def terms(taxonomy, cause: str, impact: str, action: str) -> dict:
    return {
        "cause_id": taxonomy["cause"][cause].pk,
        "impact_id": taxonomy["impact"][impact].pk,
        "corrective_action_id": taxonomy["corrective_action"][action].pk,
    }


@pytest.fixture
def reviewed(order, agent, locations, label_taxonomy) -> dict:
    """A substitution the AI proposed, an agent revised to the grey tee, and a manager and
    the agent labelled: the manager on the decision, the agent on its review item."""
    Sku.objects.create(
        code="TEE-CLASSIC-GRY-M", title="Classic Cotton T-Shirt - Grey / M", price="19.99"
    )
    stock_set("TEE-CLASSIC-GRY-M", locations["wh-east"], 4)
    decision = propose(
        order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"), rationale="Same tee."
    )
    item = review_item_revise(
        item_id=decision.review_item_id, user=agent, revision={"sku": "TEE-CLASSIC-GRY-M"}
    )
    manager = make_user("morgan", "cs_manager")
    on_decision = error_label_add(
        user=manager,
        decision_id=decision.pk,
        note="White is not a substitute for black.",
        **terms(label_taxonomy, "low_confidence_applied", "customer_delay", "retrain_model"),
    )
    on_item = error_label_add(
        user=agent,
        review_item_id=item.pk,
        **terms(label_taxonomy, "wrong_sku_match", "none", "revise_prompt"),
    )
    decision.refresh_from_db()
    item.refresh_from_db()
    return {"decision": decision, "item": item, "on_decision": on_decision, "on_item": on_item}


def autonomous_decision(order) -> Decision:
    """A decision the engine applied on its own, without review."""
    return Decision.objects.create(
        action=ActionType.objects.get(code="select_carrier"),
        order=order,
        channel=order.channel,
        model_name="carrier-ranker",
        model_version="7",
        before={"carrier_service": "ups/ground"},
        after={"carrier_service": "fedex/2day"},
        confidence=Decimal("0.9712"),
        rationale="Cheapest on-time service.",
        verdict=Verdict.APPLIED,
        facts={"order": {"total": "24.99", "currency": "USD"}},
        applied_at=timezone.now(),
    )


def test_example_from_revised_decision(reviewed):
    decision, item, label = reviewed["decision"], reviewed["item"], reviewed["on_decision"]

    example = next(labelled_examples())

    label.refresh_from_db()
    assert example == {
        "label_id": label.pk,
        "labelled_at": label.labelled_at.isoformat(),
        "action": "substitute_sku",
        "channel": "shop",
        "model": {"name": "gpt-sub", "version": "2024-06"},
        "input": {"before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"}, "facts": decision.facts},
        "ai_proposal": {
            "after": {"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
            "confidence": "0.5000",
            "rationale": "Same tee.",
            "verdict": "queued_for_review",
        },
        "human_decision": {
            "status": "accepted",
            "review_outcome": "disagreed",
            "decision": item.decision,
            "revision": {"sku": "TEE-CLASSIC-GRY-M"},
            "decided_at": item.decided_at.isoformat(),
        },
        "label": {
            "cause": "low_confidence_applied",
            "impact": "customer_delay",
            "corrective_action": "retrain_model",
            "note": "White is not a substitute for black.",
        },
    }
    # The facts are what the engine saw, e.g. the stock of the proposed SKU.
    assert example["input"]["facts"]["action"] == "substitute_sku"
    assert example["input"]["facts"]["stock"]["available"] == 8
    assert item.decision["revised"] is True


def test_item_label_exported_with_decision(reviewed):
    examples = list(labelled_examples())

    assert [example["label_id"] for example in examples] == [
        reviewed["on_decision"].pk,
        reviewed["on_item"].pk,
    ]
    assert examples[1]["ai_proposal"] == examples[0]["ai_proposal"]
    assert examples[1]["human_decision"] == examples[0]["human_decision"]
    assert examples[1]["label"] == {
        "cause": "wrong_sku_match",
        "impact": "none",
        "corrective_action": "revise_prompt",
        "note": "",
    }


def test_autonomous_decision_has_no_human_decision(order, label_taxonomy):
    decision = autonomous_decision(order)
    error_label_add(
        user=make_user("morgan", "cs_manager"),
        decision_id=decision.pk,
        **terms(label_taxonomy, "carrier_data", "failed_delivery", "fix_mapping"),
    )

    (example,) = labelled_examples()

    assert example["human_decision"] is None
    assert example["model"] == {"name": "carrier-ranker", "version": "7"}
    assert example["ai_proposal"]["confidence"] == "0.9712"
    assert example["input"] == {
        "before": {"carrier_service": "ups/ground"},
        "facts": {"order": {"total": "24.99", "currency": "USD"}},
    }


def test_labels_without_ai_decision_left_out(order, agent, label_taxonomy):
    item = ReviewItem.objects.create(
        kind=ReviewKind.UNMAPPED_SKU, order=order, reason="Unknown SKU.", source_data={}
    )
    error_label_add(
        user=agent,
        review_item_id=item.pk,
        **terms(label_taxonomy, "channel_data", "customer_delay", "fix_channel_data"),
    )

    assert list(labelled_examples()) == []


def test_examples_stream_lazily(reviewed):
    examples = labelled_examples()

    assert isinstance(examples, Iterator)
    assert not isinstance(examples, list)


def test_examples_filtered_by_time_and_action(reviewed, order):
    carrier = autonomous_decision(order)
    carrier_label = error_label_add(
        user=make_user("olivia", "ops_manager"),
        decision_id=carrier.pk,
        **{
            "cause_id": reviewed["on_decision"].cause_id,
            "impact_id": reviewed["on_decision"].impact_id,
            "corrective_action_id": reviewed["on_decision"].corrective_action_id,
        },
    )
    ten_days_ago = timezone.now() - timedelta(days=10)
    ErrorLabel.objects.filter(pk=reviewed["on_decision"].pk).update(labelled_at=ten_days_ago)
    since = timezone.now() - timedelta(days=1)

    def label_ids(**filters) -> list[int]:
        return [example["label_id"] for example in labelled_examples(**filters)]

    assert label_ids(since=since) == [reviewed["on_item"].pk, carrier_label.pk]
    assert label_ids(until=since) == [reviewed["on_decision"].pk]
    assert label_ids(action_code="select_carrier") == [carrier_label.pk]
    assert label_ids(action_code="substitute_sku", since=since) == [reviewed["on_item"].pk]


def test_unknown_action_rejected_before_reading(db):
    with pytest.raises(ExportError) as raised:
        labelled_examples(action_code="teleport")

    assert (raised.value.field, raised.value.message) == (
        "action",
        "Unknown action code 'teleport'.",
    )


# --- The command ----------------------------------------------------------------------------


def test_command_writes_jsonl_file(reviewed, tmp_path, capsys):
    path = tmp_path / "examples.jsonl"

    call_command("export_labelled_examples", "--output", str(path))

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    expected = list(labelled_examples())
    assert first == json.loads(json.dumps(expected[0]))
    assert second == json.loads(json.dumps(expected[1]))
    assert first["human_decision"]["revision"] == {"sku": "TEE-CLASSIC-GRY-M"}
    assert first["ai_proposal"]["confidence"] == "0.5000"
    assert not (tmp_path / "examples.jsonl.partial").exists()
    assert f"Wrote 2 labelled examples to {path}." in capsys.readouterr().err


def test_command_writes_stdout_by_default(reviewed, capsys):
    call_command("export_labelled_examples", "--action", "substitute_sku")

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["label_id"] for line in lines] == [
        reviewed["on_decision"].pk,
        reviewed["on_item"].pk,
    ]


def test_command_date_filters_inclusive(reviewed, capsys):
    ErrorLabel.objects.filter(pk=reviewed["on_decision"].pk).update(
        labelled_at=datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    )
    ErrorLabel.objects.filter(pk=reviewed["on_item"].pk).update(
        labelled_at=datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    )

    call_command("export_labelled_examples", "--since", "2026-03-01", "--until", "2026-03-01")

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["label_id"] for line in lines] == [reviewed["on_decision"].pk]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "01/03/2026"], "--since: Invalid date '01/03/2026'; use YYYY-MM-DD."),
        (["--action", "teleport"], "action: Unknown action code 'teleport'."),
        (
            ["--since", "2026-12-05", "--until", "2026-12-01"],
            "--since: 2026-12-05 is after --until (2026-12-01); no label can match, swap the "
            "two dates.",
        ),
    ],
)
def test_command_rejects_bad_filters(db, arguments, message):
    with pytest.raises(CommandError) as raised:
        call_command("export_labelled_examples", *arguments)

    assert str(raised.value) == message


# --- The download ---------------------------------------------------------------------------


def test_download_streams_jsonl(reviewed):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"action": "substitute_sku"})

    assert response.status_code == 200
    assert response.streaming is True
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="labelled-examples.jsonl"'
    lines = b"".join(response.streaming_content).decode("utf-8").splitlines()
    assert [json.loads(line)["label_id"] for line in lines] == [
        reviewed["on_decision"].pk,
        reviewed["on_item"].pk,
    ]


def test_download_needs_export_permission(reviewed, agent):
    client = Client()
    client.force_login(agent)

    response = client.get(reverse("labels:export"))

    assert response.status_code == 403


def test_download_rejects_bad_date(db):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"until": "yesterday"})

    assert response.status_code == 400
    assert response.text == "until: Invalid date 'yesterday'; use YYYY-MM-DD.\n"


def test_download_rejects_since_after_until(reviewed):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"since": "2026-12-05", "until": "2026-12-01"})

    assert response.status_code == 400
    assert response.text == (
        "since: 2026-12-05 is after until (2026-12-01); no label can match, swap the two dates.\n"
    )


def test_download_same_day_range_is_allowed(reviewed):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"since": "2026-03-01", "until": "2026-03-01"})

    assert response.status_code == 200


def test_download_cuts_echoed_invalid_date(db):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"since": "x" * 300})

    assert response.status_code == 400
    assert response.text == f"since: Invalid date {'x' * 40!r}; use YYYY-MM-DD.\n"


# --- Edge values --------------------------------------------------------------------------------


def test_day_start_last_day_is_unbounded():
    assert day_start("9999-12-31", "until", next_day=True) is None
    assert day_start("9999-12-31", "since") == datetime(9999, 12, 31, tzinfo=UTC)
    assert day_start("2026-03-01", "until", next_day=True) == datetime(2026, 3, 2, tzinfo=UTC)


def test_command_until_last_day_exports_all(reviewed, capsys):
    call_command("export_labelled_examples", "--until", "9999-12-31")

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["label_id"] for line in lines] == [
        reviewed["on_decision"].pk,
        reviewed["on_item"].pk,
    ]


def test_download_until_last_day_exports_all(reviewed):
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))

    response = client.get(reverse("labels:export"), {"until": "9999-12-31"})

    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode("utf-8").splitlines()
    assert [json.loads(line)["label_id"] for line in lines] == [
        reviewed["on_decision"].pk,
        reviewed["on_item"].pk,
    ]


def test_line_separators_in_note_escaped(reviewed):
    note = "Crème brûlée\u2028second line\u2029third\u0085fourth"
    ErrorLabel.objects.filter(pk=reviewed["on_decision"].pk).update(note=note)

    text = "".join(labelled_examples_jsonl())

    lines = text.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["label"]["note"] == note
    assert "Crème brûlée\\u2028second line\\u2029third\\u0085fourth" in lines[0]
