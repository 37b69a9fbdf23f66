"""Exception queue items that wait for a person."""

from django.conf import settings
from django.db import models

from orders.models import Order, OrderLine


class ReviewKind(models.TextChoices):
    UNMAPPED_SKU = "unmapped_sku", "Unmapped SKU"
    ADDRESS = "address", "Address"
    CARRIER_CODE = "carrier_code", "Unknown carrier code"
    OUT_OF_STOCK = "out_of_stock", "Out of stock"
    DELIVERY_FAILED = "delivery_failed", "Unprocessable delivery"
    SUBSTITUTION = "substitution", "Substitution"
    ROUTING = "routing", "Unusual routing"
    AI_ACTION = "ai_action", "AI proposal"
    HIGH_VALUE = "high_value", "High value"
    PRIORITY_CUSTOMER = "priority_customer", "Priority customer"
    AUDIT_SAMPLE = "audit_sample", "Audit sample"
    BIDI_TEXT = "bidi_text", "Bidirectional text"


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    RESOLVED = "resolved", "Resolved by another decision"


class ReviewItem(models.Model):
    kind = models.CharField(max_length=32, choices=ReviewKind.choices)
    status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    # Empty only for an unprocessable delivery, which never became an order.
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="review_items"
    )
    delivery = models.ForeignKey(
        "orders.Delivery",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="review_items",
        help_text="The unprocessable delivery, for items of that kind.",
    )
    order_line = models.ForeignKey(
        OrderLine, on_delete=models.CASCADE, null=True, blank=True, related_name="review_items"
    )
    reason = models.TextField(help_text="Why the item is in the queue, in a sentence.")
    source_data = models.JSONField(help_text="The channel data the item is about, as received.")
    proposal = models.JSONField(
        default=dict, blank=True, help_text="What automation proposes, e.g. candidate SKUs."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="review_decisions",
    )
    decision = models.JSONField(null=True, blank=True, help_text="What the reviewer decided.")
    decision_note = models.TextField(blank=True)
    revision = models.JSONField(
        null=True,
        blank=True,
        help_text="The reviewer's corrected value, stored beside the AI's proposal.",
    )

    # Routing and context, copied when the item opens so the queue filters need no joins.
    action_code = models.CharField(
        max_length=64, blank=True, help_text="The AI action of the proposal, if any."
    )
    confidence = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="The AI's confidence."
    )
    approver_group = models.CharField(
        max_length=150,
        blank=True,
        help_text="The role that may decide; empty means anyone with the decide permission.",
    )
    order_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Order.version when the item opened; a newer one is stale."
    )

    # Service level: deadlines are stored in UTC.
    due_at = models.DateTimeField(null=True, blank=True, help_text="Decide by this time (UTC).")
    sla_minutes = models.PositiveIntegerField(null=True, blank=True)
    on_sla_breach = models.CharField(
        max_length=16, blank=True, help_text="hold_order or escalate, from the policy."
    )
    sla_breached_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.CharField(
        max_length=150, blank=True, help_text="The role the item was escalated to."
    )
    escalated_at = models.DateTimeField(null=True, blank=True)

    # Claiming: an agent takes the item for a few minutes so others skip it.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="claimed_review_items",
    )
    claimed_until = models.DateTimeField(null=True, blank=True)

    # Known-answer items test the reviewer: deciding one changes no order.
    known_answer = models.ForeignKey(
        "KnownAnswer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="seeded_items",
        help_text="Set on a known-answer item seeded to measure reviewer accuracy.",
    )
    known_answer_correct = models.BooleanField(
        null=True, blank=True, help_text="Whether the reviewer gave the known answer."
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "kind", "created_at"]),
            models.Index(fields=["status", "due_at"], name="review_item_open_due"),
            models.Index(fields=["status", "assignee"], name="review_item_open_assignee"),
            # Partial indexes over open items only, each matching a queue query exactly: the
            # first page of every queue reads 25 index entries instead of sorting all open
            # items, and the per-kind summary is an index-only scan (due_at is included).
            models.Index(
                fields=["created_at", "id"],
                name="review_item_open_created",
                condition=models.Q(status=ReviewStatus.OPEN),
            ),
            models.Index(
                fields=["kind", "created_at", "id"],
                name="review_item_open_kind",
                include=["due_at"],
                condition=models.Q(status=ReviewStatus.OPEN),
            ),
            models.Index(
                fields=["due_at", "created_at", "id"],
                name="review_item_open_by_due",
                condition=models.Q(status=ReviewStatus.OPEN),
            ),
            # The item page's "similar past decisions": the last 20 decided items of a kind and
            # action, newest first, read from the index instead of sorting the kind's history.
            models.Index(
                fields=["kind", "action_code", "-decided_at", "-id"],
                name="review_item_decided_similar",
                condition=models.Q(
                    status__in=[ReviewStatus.ACCEPTED, ReviewStatus.REJECTED],
                    known_answer__isnull=True,
                ),
            ),
        ]
        permissions = [("decide_reviewitem", "Can accept or reject review items")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == ReviewStatus.OPEN


class ConfirmationAnswer(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed the proposed address"
    CORRECTED = "corrected", "Corrected the address"


class AddressConfirmation(models.Model):
    """A one-click request to the customer to confirm or correct a low-confidence address.

    The emailed link carries a signed token naming this row's `nonce`; it expires at
    `expires_at` and works once.
    """

    review_item = models.ForeignKey(
        ReviewItem, on_delete=models.CASCADE, related_name="address_confirmations"
    )
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="address_confirmations")
    email = models.EmailField()
    proposed_address = models.JSONField(help_text="The address the customer is asked about.")
    nonce = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=16, choices=ConfirmationAnswer.choices, blank=True)
    corrected_address = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sent_at", "created_at"], name="confirmation_unsent")]

    def __str__(self) -> str:
        return f"Address confirmation for order {self.order_id}"


# --- The feedback loop: error labels, the fixes backlog, known-answer items ------------------


class LabelKind(models.TextChoices):
    CAUSE = "cause", "Cause"
    IMPACT = "impact", "Impact"
    CORRECTIVE_ACTION = "corrective_action", "Corrective action"


class LabelTerm(models.Model):
    """One choice of the error taxonomy: a cause, an impact or a corrective action.

    Ops managers edit the taxonomy in the admin. Terms are switched off rather than deleted,
    so old labels keep their meaning.
    """

    kind = models.CharField(max_length=32, choices=LabelKind.choices)
    code = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    weight = models.PositiveSmallIntegerField(
        default=1,
        help_text="Impacts only: how bad it is, 1 (minor) upwards. Ranks the weekly review.",
    )
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "code"], name="label_term_unique_code")
        ]

    def __str__(self) -> str:
        return self.name


class ErrorLabel(models.Model):
    """A person's classification of an error on a decision or a review item."""

    decision = models.ForeignKey(
        "guardrails.Decision",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="error_labels",
    )
    review_item = models.ForeignKey(
        ReviewItem,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="error_labels",
    )
    cause = models.ForeignKey(LabelTerm, on_delete=models.PROTECT, related_name="+")
    impact = models.ForeignKey(LabelTerm, on_delete=models.PROTECT, related_name="+")
    corrective_action = models.ForeignKey(LabelTerm, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True)
    fix = models.ForeignKey(
        "FixItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="labels",
        help_text="The backlog entry that fixes it.",
    )
    fixed_in = models.ForeignKey(
        "guardrails.Version",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fixed_labels",
        help_text="The model or rule-set version that fixed it.",
    )
    labelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    labelled_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-labelled_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decision__isnull=False) | models.Q(review_item__isnull=False),
                name="error_label_has_target",
            )
        ]
        permissions = [
            ("export_labelled_examples", "Can export labelled examples for retraining"),
        ]

    def __str__(self) -> str:
        if self.decision_id:
            return f"Error label on decision {self.decision_id}"
        return f"Error label on review item {self.review_item_id}"


class FixStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    WONT_FIX = "wont_fix", "Won't fix"


class FixItem(models.Model):
    """One entry of the prioritised fixes backlog the weekly review produces."""

    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    action = models.ForeignKey(
        "guardrails.ActionType",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="fix_items",
    )
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    cause = models.ForeignKey(
        LabelTerm, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    priority = models.PositiveIntegerField(
        default=0, help_text="Higher first: the summed impact weight of its labelled errors."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="fix_items",
    )
    due_on = models.DateField()
    status = models.CharField(max_length=16, choices=FixStatus.choices, default=FixStatus.OPEN)
    fixed_by_version = models.ForeignKey(
        "guardrails.Version",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fix_items",
    )
    resolution = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "due_on", "id"]
        permissions = [("view_weekly_review", "Can see the weekly review and its CSV")]

    def __str__(self) -> str:
        return self.title


class KnownAnswerChoice(models.TextChoices):
    ACCEPT = "accept", "Accept"
    REJECT = "reject", "Reject"


class KnownAnswer(models.Model):
    """A review case whose right answer is settled, seeded into queues to check reviewers.

    Usually copied from a decided item a manager confirmed; the seeded items carry the copy's
    data, never a live order, so deciding one changes nothing.
    """

    kind = models.CharField(max_length=32, choices=ReviewKind.choices)
    source_item = models.ForeignKey(
        ReviewItem,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="known_answers",
        help_text="The decided item this case was copied from.",
    )
    reason = models.TextField()
    source_data = models.JSONField()
    proposal = models.JSONField(default=dict, blank=True)
    action_code = models.CharField(max_length=64, blank=True)
    confidence = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    expected = models.CharField(max_length=16, choices=KnownAnswerChoice.choices)
    explanation = models.TextField(
        help_text="Why this is the right answer; shown to the reviewer after they decide."
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"Known answer ({self.get_kind_display()}): {self.expected}"
