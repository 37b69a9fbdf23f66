from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"

    def ready(self) -> None:
        # Register the receivers: `signals` fills a new item's order version, deadline and
        # approver; `confirmations` asks the customer to confirm a doubtful address;
        # `known_answers` seeds known-answer items beside new items.
        from . import confirmations, known_answers, signals  # noqa: F401
