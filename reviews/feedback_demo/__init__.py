"""The feedback loop on top of the invented demo history: versions, canaries, error labels, a
fixes backlog and known-answer checks, so the rollout, weekly review and backlog pages show
believable figures.

Only `manage.py seed_demo` calls this, after monitoring.demo has loaded the history. What it
writes, all of it invented:

- A Version of "demo-history-agent" per model version its decisions carry: the first
  activated directly, each later one promoted at the end of a 14-day canary that ran just
  before its first decision. The candidate arm's decisions in that canary get the new
  version's label, because a model canary sends those orders to the candidate. Active
  versions of the two built-in recommenders.
- A running canary of a draft candidate, started CANARY_DAYS_AGO days ago. The history's
  orders of those days are assigned through `canary_assign`, and their agent decisions are
  tagged with the canary and arm, the candidate arm's relabelled to the candidate. Its salt
  is picked so that the rollback rule judges it healthy (see versions.running_canary_load).
- Error labels from the default taxonomy on the history's errors and disagreements of the
  last LABEL_DAYS days, and on rejected review items without an AI decision.
- Up to three fixes, each from the heaviest fitting group of one week's labels: one done in
  time by the candidate, one overdue and one open.
- Three known-answer cases copied from decided history items, known-answer items the
  agent and the manager decided this week and last, and one still open in the queue.

The versions, canaries, fixes and cases go through their services. Those stamp the current
time and write audit entries at that time, so the rows' timestamps are moved into the past
afterwards with queryset updates (the audit entries keep the time of seeding). Labels, the
decision fields a label sets, and known-answer items are written directly, like the
history, because their services stamp the current time. Those rows get no audit entries.
The first version of the agent marks a loaded demo, and a second run adds nothing.
"""

import logging
import random
from datetime import datetime, timedelta
from importlib import import_module

from django.apps import apps as django_apps
from django.db import transaction
from django.utils import timezone

from guardrails import rollouts
from guardrails.models import Canary, CanaryAssignment, Decision, Version
from monitoring.demo import HISTORY_MODEL_NAME, HistoryStaff, demo_history_period
from reviews.models import LabelTerm

from .known_answers import known_answers_load
from .labels import LABEL_DAYS, done_group_pick, fixes_load, label_groups, labels_load
from .versions import built_in_versions_load, candidate_create, running_canary_load, versions_load

logger = logging.getLogger(__name__)

RANDOM_SEED = 20261206
CANARY_DAYS_AGO = 10


def demo_feedback_load(*, staff: HistoryStaff, now: datetime | None = None) -> dict[str, int]:
    """Write the feedback-loop demo on top of the loaded history, once; return the counts.

    Returns an empty dict when it is already loaded. Raises LookupError without the history.
    Evaluates the canaries once at the end, as the periodic task would.
    """
    now = now or timezone.now()
    if Version.objects.filter(subject=HISTORY_MODEL_NAME).exists():
        return {}
    period = demo_history_period()
    if period is None:
        raise LookupError("No demo history exists; run seed_demo without --no-history first.")
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - invented demo data, not security
    _taxonomy_ensure()

    with transaction.atomic():
        counts = _load(staff=staff, rng=rng, now=now, history_start=period[0])
    rollouts.canaries_evaluate(now=now)
    logger.info("demo feedback loop written", extra=counts)
    return counts


def demo_canary_running() -> Canary | None:
    """Return the demo's running or paused canary of the history's agent, if any."""
    return (
        Canary.objects.filter(
            candidate__subject=HISTORY_MODEL_NAME, status__in=rollouts.OPEN_STATUSES
        )
        .select_related("candidate", "control")
        .order_by("-started_at", "-pk")
        .first()
    )


def _load(
    *, staff: HistoryStaff, rng: random.Random, now: datetime, history_start: datetime
) -> dict[str, int]:
    canary_start = (now - timedelta(days=CANARY_DAYS_AGO)).replace(
        minute=0, second=0, microsecond=0
    )
    versions_load(staff=staff, history_start=history_start)
    built_in_versions_load(staff=staff, since=history_start)

    labels = labels_load(staff=staff, rng=rng, since=now - timedelta(days=LABEL_DAYS))
    done_group = done_group_pick(label_groups(labels), done_at=canary_start - timedelta(hours=1))
    candidate = candidate_create(staff=staff, label=f"{canary_start:%Y-%m-%d}", fixes=done_group)
    canary = running_canary_load(staff=staff, candidate=candidate, start=canary_start, now=now)
    # Grouped again: the canary gave the candidate arm's decisions the candidate's label.
    fixes = fixes_load(
        staff=staff,
        groups=label_groups(labels),
        done_key=done_group.key if done_group else None,
        candidate=candidate,
        now=now,
    )
    known_answers, items = known_answers_load(staff=staff, rng=rng, now=now)
    return {
        "versions": Version.objects.count(),
        "canaries": Canary.objects.count(),
        "canary_assignments": CanaryAssignment.objects.filter(canary=canary).count(),
        "canary_decisions": Decision.objects.filter(canary=canary).count(),
        "error_labels": len(labels),
        "fix_items": fixes,
        "known_answers": known_answers,
        "known_answer_items": items,
    }


def _taxonomy_ensure() -> None:
    """Load the default label taxonomy when its rows are missing, e.g. after a test flush."""
    if LabelTerm.objects.exists():
        return
    migration = import_module("reviews.migrations.0010_label_taxonomy_and_roles")
    migration.load_label_taxonomy(django_apps, None)
