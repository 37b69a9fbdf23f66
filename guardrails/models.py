"""The audit log, and the guardrail engine's records: action types, policies and their immutable
versions, decisions with the facts they saw, breakers and the autonomy gate."""

from decimal import Decimal

from django.conf import settings
from django.db import models

from orders.models import ActorKind


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Audit entries are append-only and cannot be updated.")

    def delete(self):
        raise TypeError("Audit entries are append-only and cannot be deleted.")


class AuditEntry(models.Model):
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    actor_label = models.CharField(
        max_length=200, help_text="User name, or the system component that acted."
    )
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=100)
    reason = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs) -> None:
        # This stops the ORM. On PostgreSQL a trigger (migration 0009_audit_append_only) also
        # rejects raw UPDATE and DELETE. NOTE: TRUNCATE is not stopped, and SQLite has no
        # trigger. docs/security/audit-log.md lists what remains.
        if self.pk is not None:
            raise TypeError("Audit entries are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Audit entries are append-only and cannot be deleted.")


# --- The guardrail engine: actions, policies and their versions, decisions, breakers ---------


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Mode(models.TextChoices):
    RECOMMEND_ONLY = "recommend_only", "Recommend only (shown to people, never applied)"
    AUTONOMOUS = "autonomous", "Autonomous within limits"
    NEEDS_APPROVAL = "needs_approval", "Needs approval"
    HARD_BLOCK = "hard_block", "Hard block"


class Verdict(models.TextChoices):
    APPLIED = "applied", "Applied"
    QUEUED_FOR_REVIEW = "queued_for_review", "Queued for review"
    RECOMMENDATION_ONLY = "recommendation_only", "Recommendation only"
    BLOCKED = "blocked", "Blocked"


class SlaBreachAction(models.TextChoices):
    HOLD_ORDER = "hold_order", "Keep the order on hold"
    ESCALATE = "escalate", "Escalate to the escalation role"


class ActionType(models.Model):
    """Something automation may do to an order, e.g. substitute a SKU. Rows ship by migration."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices)
    review_kind = models.CharField(
        max_length=32, help_text="The review queue that queued proposals of this action join."
    )
    has_applier = models.BooleanField(
        default=True,
        help_text=(
            "OMS Guard can carry the change out itself. Actions without an applier (e.g. "
            "splitting an order across carriers) can be approved but never run autonomously."
        ),
    )
    holds_order_while_queued = models.BooleanField(
        default=True, help_text="A queued proposal holds the order until someone decides it."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    """The rules for one action, for every channel (channel empty) or for one channel.

    The rules themselves live in immutable PolicyVersion rows; `live_version` is the one
    that judges decisions, `shadow_version` an optional draft evaluated beside it.
    """

    action = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="policies")
    channel = models.ForeignKey(
        "catalog.Channel",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="policies",
        help_text="Leave empty for the policy every channel uses unless it has its own.",
    )
    live_version = models.ForeignKey(
        "PolicyVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    shadow_version = models.ForeignKey(
        "PolicyVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="A draft evaluated beside the live version; disagreements are recorded.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["action__code", "channel__code"]
        verbose_name_plural = "policies"
        # Two constraints, because NULL channels never collide in a unique index.
        constraints = [
            models.UniqueConstraint(
                fields=["action", "channel"],
                condition=models.Q(channel__isnull=False),
                name="policy_unique_per_channel",
            ),
            models.UniqueConstraint(
                fields=["action"],
                condition=models.Q(channel__isnull=True),
                name="policy_unique_default",
            ),
        ]
        permissions = [
            ("publish_policyversion", "Can publish policy versions and run backtests"),
        ]

    def __str__(self) -> str:
        scope = self.channel.code if self.channel_id else "all channels"
        return f"{self.action.code} ({scope})"


class PolicyVersion(models.Model):
    """One immutable set of rules for a policy. Drafts have no `published_at`.

    Limits read as the product brief states them: an item price must be *under*
    `item_price_under`, the order value *under* `order_value_under` and the confidence
    *above* `confidence_above` for an autonomous action. Empty means no such limit.
    """

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    mode = models.CharField(max_length=32, choices=Mode.choices)
    approver_group = models.ForeignKey(
        "auth.Group",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The role that may approve queued proposals; needed unless hard-blocked.",
    )
    limits_currency = models.CharField(max_length=3, default="USD")
    order_value_under = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    item_price_under = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    confidence_above = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    require_fresh_stock = models.BooleanField(
        default=False, help_text="An autonomous action needs a stock snapshot within its TTL."
    )
    review_sla_minutes = models.PositiveIntegerField(default=60)
    on_sla_breach = models.CharField(
        max_length=16, choices=SlaBreachAction.choices, default=SlaBreachAction.HOLD_ORDER
    )
    escalation_group = models.ForeignKey(
        "auth.Group",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who gets the item when the SLA passes and the rule says escalate.",
    )
    changelog = models.TextField(help_text="What changed and why, for the people who come next.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_version_unique")
        ]

    def __str__(self) -> str:
        state = "" if self.published_at else " (draft)"
        return f"{self.policy} v{self.number}{state}"

    def save(self, *args, **kwargs) -> None:
        # Only the publication stamp may be added to a stored version; its rules never change.
        if self.pk is not None:
            update_fields = set(kwargs.get("update_fields") or ())
            if not update_fields or not update_fields <= {"published_at", "published_by"}:
                raise TypeError("Policy versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)


class CustomerTier(models.TextChoices):
    ANY = "any", "Any customer"
    STANDARD = "standard", "Standard customers"
    PRIORITY = "priority", "Priority customers"


class PolicyBand(models.Model):
    """A value band: limits that replace the version's own for matching orders.

    Bands are tried in `position` order and the first match wins. A band matches when the
    order value lies in [order_value_from, order_value_to), the customer tier matches, and
    the order's margin rate is at least `margin_rate_from` (when set).
    """

    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="bands")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100)
    order_value_from = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    order_value_to = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    customer_tier = models.CharField(
        max_length=16, choices=CustomerTier.choices, default=CustomerTier.ANY
    )
    margin_rate_from = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Lowest order margin rate, 0 to 1, e.g. 0.30 for 30 %.",
    )
    mode = models.CharField(
        max_length=32, choices=Mode.choices, blank=True, help_text="Empty keeps the version's."
    )
    item_price_under = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    confidence_above = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["version", "position", "id"]

    def __str__(self) -> str:
        return self.name


class DecisionOutcome(models.TextChoices):
    UNLABELLED = "unlabelled", "Not labelled"
    CORRECT = "correct", "Correct"
    ERROR = "error", "Error"


class ReviewOutcome(models.TextChoices):
    AGREED = "agreed", "The reviewer agreed"
    DISAGREED = "disagreed", "The reviewer rejected or revised it"


class Decision(models.Model):
    """One proposed action on an order, the verdict and the reasons, with the facts it saw."""

    action = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="decisions")
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="decisions")
    channel = models.ForeignKey(
        "catalog.Channel", on_delete=models.PROTECT, related_name="decisions"
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The API user of the agent; empty for a built-in recommender.",
    )
    model_name = models.CharField(max_length=200)
    model_version = models.CharField(max_length=100)
    before = models.JSONField(help_text="The state the agent saw, e.g. the current address.")
    after = models.JSONField(help_text="The state the agent proposes.")
    confidence = models.DecimalField(max_digits=5, decimal_places=4)
    rationale = models.TextField(blank=True)
    verdict = models.CharField(max_length=32, choices=Verdict.choices)
    reasons = models.JSONField(
        default=list, help_text="Every rule evaluated: rule, outcome, message, data."
    )
    policy_version = models.ForeignKey(
        PolicyVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decisions",
        help_text="Empty when no policy covered the action and channel.",
    )
    facts = models.JSONField(help_text="Everything the engine saw, so the decision can replay.")
    review_item = models.OneToOneField(
        "reviews.ReviewItem",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ai_decision",
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    apply_error = models.TextField(blank=True, help_text="Why applying the change failed.")
    reverted_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(
        max_length=16, choices=DecisionOutcome.choices, default=DecisionOutcome.UNLABELLED
    )
    labelled_at = models.DateTimeField(null=True, blank=True)
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    label_note = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    review_outcome = models.CharField(
        max_length=16,
        choices=ReviewOutcome.choices,
        blank=True,
        help_text="Whether the person who reviewed it agreed with the AI; empty until then.",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    canary = models.ForeignKey(
        "Canary",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decisions",
        help_text="The canary whose arms this decision's order was split into, if any.",
    )
    canary_arm = models.CharField(
        max_length=16,
        choices=[("control", "Control"), ("candidate", "Candidate")],
        blank=True,
        help_text="The arm of the canary the order is in; empty outside canaries.",
    )
    shadow_verdict = models.CharField(
        max_length=32,
        choices=Verdict.choices,
        blank=True,
        help_text="For a shadow canary's candidate: the verdict it would have had. The decision "
        "itself is stored as a recommendation and never applied.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["canary", "canary_arm"], name="decision_canary_arm"),
            models.Index(fields=["review_outcome", "reviewed_at"], name="decision_reviewed"),
            models.Index(fields=["action", "created_at"], name="decision_action_time"),
            models.Index(fields=["channel", "created_at"], name="decision_channel_time"),
            models.Index(fields=["model_name", "created_at"], name="decision_model_time"),
            models.Index(fields=["order", "created_at"], name="decision_order_time"),
        ]
        permissions = [
            ("propose_decision", "Can propose actions through the decisions API"),
            ("revert_decision", "Can revert an applied decision"),
            ("label_decision", "Can label a decision correct or an error"),
        ]

    def __str__(self) -> str:
        return f"{self.action.code} on order {self.order_id}: {self.verdict}"

    @property
    def is_error(self) -> bool:
        """Counts against breakers and the autonomy gate: labelled wrong, or failed to apply."""
        return self.outcome == DecisionOutcome.ERROR or bool(self.apply_error)


class ShadowEvaluation(models.Model):
    """What a shadow (draft) policy version would have decided beside the live one."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="shadows")
    policy_version = models.ForeignKey(
        PolicyVersion, on_delete=models.CASCADE, related_name="shadow_evaluations"
    )
    verdict = models.CharField(max_length=32, choices=Verdict.choices)
    reasons = models.JSONField(default=list)
    agrees = models.BooleanField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.policy_version} on decision {self.decision_id}: {self.verdict}"


class BacktestRun(models.Model):
    """One replay of recorded decisions under a policy version, with the report."""

    policy_version = models.ForeignKey(
        PolicyVersion, on_delete=models.CASCADE, related_name="backtests"
    )
    days = models.PositiveIntegerField()
    decisions_replayed = models.PositiveIntegerField(default=0)
    verdicts_changed = models.PositiveIntegerField(default=0)
    report = models.JSONField(
        default=dict, help_text="Changed counts by action, channel and value band, with examples."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Backtest of {self.policy_version} over {self.days} days"


class BreakerScope(models.TextChoices):
    ACTION = "action", "Action type"
    CHANNEL = "channel", "Channel"
    MODEL = "model", "Model"


class BreakerState(models.TextChoices):
    CLOSED = "closed", "Closed (autonomy allowed)"
    OPEN = "open", "Open (autonomy paused)"
    HALF_OPEN = "half_open", "Half-open (trial)"


class BreakerCause(models.TextChoices):
    MANUAL = "manual", "Opened or closed by hand"
    ERROR_RATE = "error_rate", "Error rate over the threshold"
    UPSTREAM = "upstream", "Upstream degradation reported"
    DECISION_MIX = "decision_mix", "Decision mix drifted from its baseline"
    CONFIDENCE_COLLAPSE = "confidence_collapse", "Confidence collapsed"
    TRIAL_PASSED = "trial_passed", "Half-open trial passed"
    TRIAL_FAILED = "trial_failed", "Half-open trial failed"
    COOL_DOWN = "cool_down", "Cool-down over; trial started"
    RECOVERY = "recovery", "Upstream recovery reported"


class Breaker(models.Model):
    """A switch that takes autonomy away from one action type, channel or model.

    `key` is the action code, the channel code or the model name. While a breaker is open,
    autonomous proposals in its scope go to human review instead.
    """

    scope = models.CharField(max_length=16, choices=BreakerScope.choices)
    key = models.CharField(max_length=200)
    state = models.CharField(
        max_length=16, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    cause = models.CharField(max_length=32, choices=BreakerCause.choices, blank=True)
    cause_detail = models.TextField(blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    trial_started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "key"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="breaker_unique_scope_key")
        ]
        permissions = [
            ("operate_breaker", "Can open and close breakers by hand"),
            ("report_degradation", "Can report upstream degradation and recovery"),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} {self.key}: {self.state}"


class BreakerEvent(models.Model):
    """One state change of a breaker, with its cause. Append-only."""

    breaker = models.ForeignKey(Breaker, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=BreakerState.choices)
    to_state = models.CharField(max_length=16, choices=BreakerState.choices)
    cause = models.CharField(max_length=32, choices=BreakerCause.choices)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="The figures behind the change.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.breaker}: {self.from_state} -> {self.to_state} ({self.cause})"


class AutonomyGate(models.Model):
    """Whether an action type may run autonomously, from its labelled error rate.

    Recomputed when a decision is labelled and by a periodic job; the engine reads the
    stored state, so a decision costs no 30-day count.
    """

    action = models.OneToOneField(ActionType, on_delete=models.CASCADE, related_name="gate")
    suspended = models.BooleanField(default=False)
    error_rate = models.DecimalField(max_digits=7, decimal_places=6, default=0)
    errors = models.PositiveIntegerField(default=0)
    autonomous_decisions = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        state = "suspended" if self.suspended else "allowed"
        return f"Autonomy of {self.action.code}: {state}"


class GuardrailSettings(models.Model):
    """The engine's editable numbers, one row (pk 1). `guardrail_settings()` reads it."""

    breaker_window_minutes = models.PositiveIntegerField(default=60)
    breaker_min_decisions = models.PositiveIntegerField(
        default=20, help_text="No automatic opening on fewer decisions in the window."
    )
    breaker_error_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.05"), help_text="0 to 1."
    )
    breaker_cool_down_minutes = models.PositiveIntegerField(
        default=30, help_text="How long an automatically opened breaker stays open before a trial."
    )
    breaker_trial_decisions = models.PositiveIntegerField(
        default=5, help_text="Decisions let through in a half-open trial before it closes."
    )
    mix_baseline_days = models.PositiveIntegerField(default=7)
    mix_drift_factor = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("3.00"),
        help_text="Open when an action's share of decisions reaches this multiple of baseline.",
    )
    confidence_collapse_drop = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.15"),
        help_text="Open when mean confidence falls this far below its baseline mean.",
    )
    autonomy_window_days = models.PositiveIntegerField(default=30)
    autonomy_max_error_rate = models.DecimalField(
        max_digits=7, decimal_places=6, default=Decimal("0.002"), help_text="0.002 is 0.2 %."
    )
    audit_sample_start_rate = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.10"),
        help_text="Share of autonomous actions sampled for audit before any disagreement data.",
    )
    audit_sample_floor_rate = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.01"),
        help_text="The sampling rate never goes below this.",
    )
    audit_sample_target_disagreement = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.02"),
        help_text="At or above this disagreement rate the start rate applies; below it, less.",
    )
    audit_sample_min_reviews = models.PositiveIntegerField(
        default=50, help_text="Reviewed decisions needed before the rate adapts."
    )
    disagreement_window_days = models.PositiveIntegerField(default=30)
    review_default_sla_minutes = models.PositiveIntegerField(
        default=240, help_text="Deadline of review items that no policy covers."
    )
    claim_minutes = models.PositiveIntegerField(
        default=10, help_text="How long a claimed review item stays assigned."
    )
    address_confirmation_hours = models.PositiveIntegerField(
        default=72, help_text="How long a customer's address confirmation link works."
    )
    known_answer_rate = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.01"),
        help_text="Share of new review items that get a known-answer item seeded beside them, "
        "to measure reviewer accuracy. 0 switches seeding off.",
    )
    calibration_target_precision = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.98"),
        help_text="Threshold calibration looks for the confidence above which at least this "
        "share of reviewed proposals was accepted.",
    )
    calibration_min_reviews = models.PositiveIntegerField(
        default=50, help_text="Reviewed proposals an action and channel need before calibration."
    )
    fix_due_days = models.PositiveIntegerField(
        default=30, help_text="Days a fix in the weekly review backlog has before it is overdue."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "guardrail settings"
        verbose_name_plural = "guardrail settings"

    def __str__(self) -> str:
        return "Guardrail settings"


class SamplingState(models.Model):
    """The audit sampling rate of one action type, adapted to its disagreement rate."""

    action = models.OneToOneField(ActionType, on_delete=models.CASCADE, related_name="sampling")
    rate = models.DecimalField(max_digits=5, decimal_places=4)
    disagreement_rate = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    reviewed = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Audit sampling of {self.action.code}: {self.rate}"


# --- Safe change: versions of what decides, and canaries -------------------------------------


class VersionKind(models.TextChoices):
    MODEL = "model", "AI model"
    PROMPT = "prompt", "Prompt"
    RECOMMENDER = "recommender", "Recommender settings"
    RULE_SET = "rule_set", "Rule set (policy versions)"


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    CANARY = "canary", "In a canary"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class Version(models.Model):
    """One version of something that decides, with its changelog and the failures it fixed.

    For an AI model, a prompt or a built-in recommender, `subject` is the model name decisions
    carry (`Decision.model_name`) and `label` the model version they carry. For a rule set,
    `subject` names the set and `policy_versions` lists its policy versions, at most one per
    policy. While the set is a canary's candidate, they judge the candidate arm's decisions.
    """

    kind = models.CharField(max_length=16, choices=VersionKind.choices)
    subject = models.CharField(
        max_length=200, help_text="The model name decisions carry, or the rule set's name."
    )
    label = models.CharField(
        max_length=100, help_text="The model version decisions carry, or the rule set's version."
    )
    action = models.ForeignKey(
        ActionType,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="versions",
        help_text="The action this version proposes or judges; empty for several.",
    )
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT
    )
    changelog = models.TextField(help_text="What changed and why, for the people who come next.")
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Prompt text or recommender settings, as the agent or recommender reads them.",
    )
    policy_versions = models.ManyToManyField(
        PolicyVersion,
        blank=True,
        related_name="rule_sets",
        help_text="Rule sets only: the policy versions the set publishes, one per policy.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "subject", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject", "label"], name="version_unique_label"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.label}"


class CanaryStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused (inconclusive, or by hand)"
    ROLLED_BACK = "rolled_back", "Rolled back"
    PROMOTED = "promoted", "Promoted"
    STOPPED = "stopped", "Stopped"


class CanaryArm(models.TextChoices):
    CONTROL = "control", "Control"
    CANDIDATE = "candidate", "Candidate"


class Canary(models.Model):
    """A candidate version receiving a share of orders beside the active (control) version.

    Orders are split by a hash of their channel and channel order id with this canary's
    `salt`. The first split is stored in CanaryAssignment, so an order keeps its arm for
    life even when `share` changes.
    """

    name = models.CharField(max_length=200)
    candidate = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="canaries")
    control = models.ForeignKey(
        Version,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The active version it is compared with; empty when none was recorded.",
    )
    action = models.ForeignKey(
        ActionType,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="canaries",
        help_text="Only decisions on this action take part; empty for the version's action.",
    )
    channel = models.ForeignKey(
        "catalog.Channel",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="canaries",
        help_text="Only this channel's orders take part; empty for every channel.",
    )
    share = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.05"),
        help_text="Share of orders sent to the candidate, from 0.01 to 0.05 (1 to 5 %).",
    )
    shadow = models.BooleanField(
        default=False,
        help_text="Record the candidate's decisions without applying them.",
    )
    exclude_priority_skus = models.BooleanField(
        default=False, help_text="Orders with a priority SKU always stay on the control."
    )
    salt = models.CharField(max_length=32, editable=False)
    days = models.PositiveIntegerField(default=14, help_text="How long the canary runs.")
    min_orders_per_arm = models.PositiveIntegerField(
        default=1000,
        help_text="Orders each arm needs before the rollback rule judges; fewer is inconclusive.",
    )
    max_exception_increase_pp = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("0.100"),
        help_text="Roll back when the candidate's fulfilment exception rate exceeds the "
        "control's by more than this many percentage points.",
    )
    status = models.CharField(
        max_length=16, choices=CanaryStatus.choices, default=CanaryStatus.RUNNING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    end_reason = models.TextField(blank=True)
    result = models.JSONField(
        default=dict, blank=True, help_text="The comparison when it ended or was promoted."
    )
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_evaluation = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "canaries"
        indexes = [models.Index(fields=["status"], name="canary_status")]
        permissions = [("operate_canary", "Can start, pause, promote and stop canaries")]

    def __str__(self) -> str:
        return self.name


class CanaryAssignment(models.Model):
    """The arm an order was given in a canary, fixed for the order's life."""

    canary = models.ForeignKey(Canary, on_delete=models.CASCADE, related_name="assignments")
    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, related_name="canary_assignments"
    )
    arm = models.CharField(max_length=16, choices=CanaryArm.choices)
    bucket = models.PositiveIntegerField(help_text="The order's hash bucket, 0 to 9,999.")
    share = models.DecimalField(
        max_digits=5, decimal_places=4, help_text="The canary's share when the order arrived."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["canary", "id"]
        constraints = [
            models.UniqueConstraint(fields=["canary", "order"], name="canary_assignment_unique")
        ]
        indexes = [models.Index(fields=["canary", "arm"], name="canary_assignment_arm")]

    def __str__(self) -> str:
        return f"Order {self.order_id} in {self.canary}: {self.arm}"


class CanaryEventKind(models.TextChoices):
    STARTED = "started", "Started"
    SHARE_CHANGED = "share_changed", "Share changed"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    PROMOTED = "promoted", "Promoted"
    STOPPED = "stopped", "Stopped"


class CanaryEvent(models.Model):
    """One change of a canary's state, with the figures behind it. Append-only."""

    canary = models.ForeignKey(Canary, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=CanaryEventKind.choices)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.canary}: {self.kind}"


class ConfigStamp(models.Model):
    """One row whose token changes with every write to the rows that decisions cache.

    Database triggers (migration 0010_config_stamp) write a new random token on each insert,
    update or delete of the watched tables, whatever makes the change. `guardrails.config_cache`
    compares the token with the one its cached rows were read under.
    """

    token = models.CharField(max_length=36)

    def __str__(self) -> str:
        return f"Configuration stamp {self.token}"
