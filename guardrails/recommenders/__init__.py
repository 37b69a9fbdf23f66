"""Built-in recommenders: substitutes for short lines and carrier selection.

Each ends in `guardrails.services.decision_propose`, so its proposals are judged by the same
policies as any external agent's.
"""
