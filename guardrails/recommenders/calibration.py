"""Confidence for a substitute: a prior curve over similarity, calibrated by past reviews.

The prior maps a similarity score (0-1) to an acceptance probability with a logistic curve.
Where people already reviewed enough proposals of the built-in recommender in the same
similarity bucket (tenths: 0.9-1.0 is bucket 9), the observed acceptance rate pulls the
prior towards it: p = (prior * PRIOR_WEIGHT + accepted) / (PRIOR_WEIGHT + reviewed).
"""

import math
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q

from guardrails.models import Decision
from reviews.models import ReviewStatus

SUBSTITUTION_MODEL_NAME = "omsguard-substitution"
SUBSTITUTION_MODEL_VERSION = "1"
BUCKETS = 10


@dataclass(frozen=True)
class Calibration:
    bucket: int
    prior: Decimal
    confidence: Decimal
    reviewed: int
    accepted: int
    calibrated: bool

    def as_dict(self) -> dict:
        return {
            "bucket": self.bucket,
            "prior": str(self.prior),
            "reviewed": self.reviewed,
            "accepted": self.accepted,
            "calibrated": self.calibrated,
        }


def similarity_bucket(similarity: float) -> int:
    return min(int(similarity * BUCKETS), BUCKETS - 1)


def prior_confidence(similarity: float) -> float:
    midpoint = settings.OMSGUARD_SUBSTITUTION_PRIOR_MIDPOINT
    steepness = settings.OMSGUARD_SUBSTITUTION_PRIOR_STEEPNESS
    return 1.0 / (1.0 + math.exp(-steepness * (similarity - midpoint)))


class Calibrator:
    """Calibrates confidences; reads each bucket's review counts once per instance."""

    def __init__(self) -> None:
        self._counts: dict[int, tuple[int, int]] = {}

    def calibrate(self, similarity: float) -> Calibration:
        bucket = similarity_bucket(similarity)
        prior = prior_confidence(similarity)
        reviewed, accepted = self._bucket_counts(bucket)

        calibrated = reviewed >= settings.OMSGUARD_SUBSTITUTION_CALIBRATION_MIN_DECISIONS
        confidence = prior
        if calibrated:
            weight = settings.OMSGUARD_SUBSTITUTION_CALIBRATION_PRIOR_WEIGHT
            confidence = (prior * weight + accepted) / (weight + reviewed)
        return Calibration(
            bucket=bucket,
            prior=_probability(prior),
            confidence=_probability(confidence),
            reviewed=reviewed,
            accepted=accepted,
            calibrated=calibrated,
        )

    def _bucket_counts(self, bucket: int) -> tuple[int, int]:
        if bucket not in self._counts:
            self._counts[bucket] = bucket_review_counts(bucket)
        return self._counts[bucket]


def bucket_review_counts(bucket: int) -> tuple[int, int]:
    """Return (reviewed, accepted) of the built-in recommender's proposals in the bucket."""
    decided = (ReviewStatus.ACCEPTED, ReviewStatus.REJECTED)
    counts = Decision.objects.filter(
        action__code="substitute_sku",
        model_name=SUBSTITUTION_MODEL_NAME,
        facts__recommendation__similarity_bucket=bucket,
        review_item__status__in=decided,
    ).aggregate(
        reviewed=Count("id"),
        accepted=Count("id", filter=Q(review_item__status=ReviewStatus.ACCEPTED)),
    )
    return counts["reviewed"], counts["accepted"]


def _probability(value: float) -> Decimal:
    return Decimal(str(round(min(max(value, 0.0), 1.0), 4)))
