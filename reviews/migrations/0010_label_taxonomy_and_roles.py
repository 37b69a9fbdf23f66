"""Load the default error taxonomy and grant the feedback-loop permissions to the roles.

Terms are created when missing, by kind and code, so a term an ops manager already renamed,
reweighted or switched off is left as it is. Reversing deletes only the default terms that
no error label uses: labels are history and keep their terms.
"""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

# (code, name, description); the order is the order of the choices in the labelling form.
DEFAULT_CAUSES = [
    (
        "wrong_sku_match",
        "Wrong SKU match",
        "The channel's product was matched to the wrong SKU of the catalogue.",
    ),
    (
        "stale_stock",
        "Stale stock figures",
        "The decision used stock levels that were out of date.",
    ),
    (
        "bad_address_parse",
        "Address parsed wrongly",
        "The address was split or normalised into the wrong fields.",
    ),
    (
        "low_confidence_applied",
        "Low-confidence proposal applied",
        "A proposal with low confidence was applied when it should have gone to review.",
    ),
    (
        "policy_gap",
        "Policy gap",
        "No guardrail policy covered the case, or its thresholds let the error through.",
    ),
    (
        "carrier_data",
        "Carrier data",
        "Carrier rates, services or tracking data were wrong or missing.",
    ),
    (
        "channel_data",
        "Channel data",
        "The sales channel sent wrong or incomplete order data.",
    ),
    (
        "reviewer_error",
        "Reviewer error",
        "A person in the review queue decided wrongly.",
    ),
    ("other", "Other", "None of the above; say what happened in the note."),
]

# (code, name, weight, description); the weight ranks errors in the weekly review.
DEFAULT_IMPACTS = [
    ("none", "No impact", 0, "Caught before it affected the customer or the business."),
    ("customer_delay", "Customer delay", 2, "The order shipped or arrived later than promised."),
    ("lost_margin", "Lost margin", 2, "The order cost more than it should, e.g. a dearer carrier."),
    (
        "failed_delivery",
        "Failed delivery",
        3,
        "The parcel could not be delivered and came back or was lost.",
    ),
    (
        "wrong_item_shipped",
        "Wrong item shipped",
        4,
        "The customer received a different item or quantity than ordered.",
    ),
    ("chargeback", "Chargeback", 5, "The customer disputed the payment or was refunded."),
]

DEFAULT_CORRECTIVE_ACTIONS = [
    (
        "retrain_model",
        "Retrain the model",
        "Add the example to the training data and train a new model version.",
    ),
    (
        "revise_prompt",
        "Revise the prompt",
        "Change the AI agent's prompt or instructions and release a new version.",
    ),
    (
        "change_policy",
        "Change the policy",
        "Adjust a guardrail policy, e.g. raise a confidence threshold.",
    ),
    (
        "fix_mapping",
        "Fix a mapping",
        "Correct a SKU, carrier or other mapping in the admin.",
    ),
    (
        "fix_channel_data",
        "Fix the channel data",
        "Ask the channel or its connector to send correct data.",
    ),
    (
        "reviewer_coaching",
        "Coach the reviewer",
        "Go through the case with the reviewer who decided it.",
    ),
    ("none", "No action", "The error needs no change, e.g. a one-off."),
]

ROLE_PERMISSIONS = {
    "cs_agent": [
        "reviews.add_errorlabel",
        "reviews.view_errorlabel",
        "reviews.view_labelterm",
    ],
    "cs_manager": [
        "reviews.add_errorlabel",
        "reviews.view_errorlabel",
        "reviews.view_labelterm",
        "reviews.view_fixitem",
        "reviews.view_weekly_review",
        "reviews.view_knownanswer",
        "reviews.add_knownanswer",
    ],
    "ops_manager": [
        "reviews.view_labelterm",
        "reviews.add_labelterm",
        "reviews.change_labelterm",
        "reviews.add_errorlabel",
        "reviews.view_errorlabel",
        "reviews.view_fixitem",
        "reviews.add_fixitem",
        "reviews.change_fixitem",
        "reviews.view_weekly_review",
        "reviews.export_labelled_examples",
        "reviews.view_knownanswer",
        "reviews.add_knownanswer",
        "reviews.change_knownanswer",
    ],
    "leadership": ["reviews.view_weekly_review", "reviews.view_fixitem"],
}


def _term(kind: str, code: str, name: str, description: str, weight: int, index: int) -> dict:
    # Positions step by 10 so an ops manager can slot a new term between two defaults.
    return {
        "kind": kind,
        "code": code,
        "name": name,
        "description": description,
        "weight": weight,
        "position": index * 10,
    }


def _default_terms() -> list[dict]:
    terms = []
    for position, (code, name, description) in enumerate(DEFAULT_CAUSES):
        terms.append(_term("cause", code, name, description, 1, position))
    for position, (code, name, weight, description) in enumerate(DEFAULT_IMPACTS):
        terms.append(_term("impact", code, name, description, weight, position))
    for position, (code, name, description) in enumerate(DEFAULT_CORRECTIVE_ACTIONS):
        terms.append(_term("corrective_action", code, name, description, 1, position))
    return terms


def load_label_taxonomy(apps, schema_editor):
    """Create the default label terms that are missing; existing terms stay as edited."""
    LabelTerm = apps.get_model("reviews", "LabelTerm")
    for term in _default_terms():
        LabelTerm.objects.get_or_create(kind=term.pop("kind"), code=term.pop("code"), defaults=term)


def unload_label_taxonomy(apps, schema_editor):
    """Delete the default label terms that no error label uses."""
    LabelTerm = apps.get_model("reviews", "LabelTerm")
    ErrorLabel = apps.get_model("reviews", "ErrorLabel")
    used = set()
    for field in ("cause_id", "impact_id", "corrective_action_id"):
        used.update(ErrorLabel.objects.values_list(field, flat=True))
    for term in _default_terms():
        LabelTerm.objects.filter(kind=term["kind"], code=term["code"]).exclude(pk__in=used).delete()


def grant_feedback_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_feedback_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("guardrails", "0007_versions_and_canaries"),
        ("reviews", "0009_feedback_loop"),
    ]

    operations = [
        migrations.RunPython(load_label_taxonomy, unload_label_taxonomy),
        migrations.RunPython(grant_feedback_permissions, revoke_feedback_permissions),
    ]
