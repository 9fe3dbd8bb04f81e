"""The `/` filter of the list views: a regex (case-insensitive), `!` in front excludes what it matches."""

from __future__ import annotations

import re
from collections.abc import Iterable


def matches(pattern: str, texts: Iterable[str]) -> bool:
    """Whether any of `texts` matches `pattern`; a pattern that is not a valid regex is a plain substring."""
    if not pattern:
        return True
    invert = pattern.startswith("!")
    body = pattern[1:] if invert else pattern
    try:
        found = any(re.search(body, text, re.IGNORECASE) for text in texts)
    except re.error:
        found = any(body.lower() in text.lower() for text in texts)
    return found != invert
