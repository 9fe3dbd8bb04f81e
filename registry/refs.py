"""Model references (`name`, `name:3`, `name@champion`) and the rules for names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidName, InvalidReference

LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: a model name and at most one of a version number or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(text: str) -> Ref:
    """Parse `name`, `name:3` or `name@alias`; plain `name` and `name@latest` mean the newest version."""
    text = text.strip()
    if "@" in text:
        name, _, alias = text.partition("@")
        check_model_name(name)
        if alias == LATEST:
            return Ref(name)
        check_alias(alias, allow_latest=True)
        return Ref(name, alias=alias)
    if ":" in text:
        name, _, version = text.partition(":")
        check_model_name(name)
        if not (version.isascii() and version.isdigit()) or int(version) < 1:
            raise InvalidReference(
                f"bad reference {text!r}: the version after ':' must be a number from 1 up"
            )
        return Ref(name, version=int(version))
    check_model_name(text)
    return Ref(text)


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidName(
            f"bad model name {name!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def check_alias(alias: str, allow_latest: bool = False) -> str:
    if alias == LATEST and not allow_latest:
        raise InvalidName("'latest' is reserved: it always means the newest version")
    if not _ALIAS.match(alias):
        raise InvalidName(f"bad alias {alias!r}: start with a letter; then letters, digits, '.', '_' or '-'")
    return alias
