"""Messages shared across screens."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from console.backend import Overview


@dataclass
class OverviewLoaded(Message):
    """A fresh overview arrived (only the newest one waiting in a queue matters)."""

    overview: Overview

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OverviewLoaded)


@dataclass
class LoadFailed(Message):
    """A poll failed (e.g. the database is locked); the next poll is scheduled anyway."""

    error: str
