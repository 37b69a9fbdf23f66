"""The interface every recommender implements, and the result it returns."""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from guardrails.models import Decision


class RecommendationError(ValueError):
    """Invalid input for a recommender; `status` is the HTTP status the API returns."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


@dataclass
class Recommendation:
    """Ranked candidates, the one proposed, and the decision the guardrails made on it.

    `decision` is None when nothing was proposed; `explanation` then says why.
    """

    action_code: str
    candidates: list[dict] = field(default_factory=list)
    chosen: dict | None = None
    confidence: Decimal | None = None
    decision: Decision | None = None
    explanation: str = ""
    model_name: str = ""
    model_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the API returns."""
        return {
            "action": self.action_code,
            "model": {"name": self.model_name, "version": self.model_version},
            "explanation": self.explanation,
            "confidence": str(self.confidence) if self.confidence is not None else None,
            "chosen": self.chosen,
            "candidates": self.candidates,
            "decision": _decision_summary(self.decision),
        }


@runtime_checkable
class Recommender(Protocol):
    """A pluggable recommender: the settings name a class with this shape by dotted path.

    Substitution recommenders take `recommend(*, order_line, quantity_short)`, carrier
    recommenders `recommend(*, order)`. Both return a Recommendation after proposing the
    chosen candidate through decision_propose.
    """

    model_name: str
    model_version: str

    def recommend(self, **inputs: Any) -> Recommendation: ...


def _decision_summary(decision: Decision | None) -> dict | None:
    if decision is None:
        return None
    return {
        "id": decision.pk,
        "verdict": decision.verdict,
        "reasons": decision.reasons,
        "review_item": decision.review_item_id,
        "policy_version": decision.policy_version_id,
        "applied_at": decision.applied_at.isoformat() if decision.applied_at else None,
    }
