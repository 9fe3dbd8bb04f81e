"""Messages shared across screens: what a poll's worker thread read, handed to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from console.backend import Overview


@dataclass
class OverviewLoaded(Message):
    """A poll's result: the overview, what the screen read besides it (`extra`) and the request it
    was read for. A newer one replaces one still waiting unless each carries news of its own."""

    overview: Overview
    extra: Any = None
    request: Any = None
    replaceable: bool = True

    def can_replace(self, message: Message) -> bool:
        return self.replaceable and isinstance(message, OverviewLoaded)


@dataclass
class LoadFailed(Message):
    """A poll failed (e.g. the database is locked); the next poll is scheduled anyway."""

    error: str
