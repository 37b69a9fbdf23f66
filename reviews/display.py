"""Role and queue names as review pages and messages write them inside a sentence."""

# The role groups created by the role migrations, as people call them.
ROLE_LABELS = {"cs_agent": "CS agent", "cs_manager": "CS manager", "ops_manager": "Ops manager"}


def role_label(group_name: str) -> str:
    """Return the name people use for a role group ("CS manager"), or the group name itself."""
    return ROLE_LABELS.get(group_name, group_name)


def mid_sentence(label: str) -> str:
    """Lower-case a label's words for use inside a sentence, keeping acronyms such as SKU or AI."""
    words = str(label).split(" ")
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in words)
