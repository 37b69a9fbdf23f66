"""Which recommender class runs, from settings, so a deployment can plug in its own."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .base import Recommender

SETTINGS_BY_KIND = {
    "substitution": "OMSGUARD_SUBSTITUTION_RECOMMENDER",
    "carrier": "OMSGUARD_CARRIER_RECOMMENDER",
}


def recommender_get(kind: str) -> Recommender:
    """Instantiate the recommender class the setting for `kind` names."""
    setting = SETTINGS_BY_KIND[kind]
    path = getattr(settings, setting)
    try:
        recommender_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"{setting} = {path!r} cannot be imported: {error}. Use a dotted path to a class."
        ) from error

    recommender = recommender_class()
    if not isinstance(recommender, Recommender):
        raise ImproperlyConfigured(
            f"{setting} = {path!r} has no model_name, model_version and recommend()."
        )
    return recommender
