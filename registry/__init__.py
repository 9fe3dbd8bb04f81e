"""modeldeck's registry: versioned, checksummed, safe storage of scikit-learn models.

Importing this package is cheap: scikit-learn, pandas and skops load only when a model is
registered or loaded, and nothing here imports Textual.

>>> import registry
>>> registry.register(model, "iris", reference=X_train, alias="champion")   # the default home
>>> registry.load("iris@champion")
"""

from typing import TYPE_CHECKING, Any

from registry.errors import (
    ArtifactError,
    DatabaseError,
    InvalidName,
    InvalidReference,
    ModelNotFound,
    NotAModel,
    PickleRefused,
    ReferenceMismatch,
    RegistryError,
    SchemaTooNew,
    VersionInUse,
    VersionNotFound,
)
from registry.info import EventInfo, History, ModelInfo, StateAt, VersionInfo, VersionSummary
from registry.refs import Ref, parse_ref
from registry.settings import Settings

if TYPE_CHECKING:
    from registry.core import Registry, SklearnVersionWarning

#: Names whose modules load on first use: `registry.core` brings SQLAlchemy and SQLModel, which the
#: CLI's read verbs and the console's first screen do without (see `registry.reader`).
_LAZY = {"Registry": "registry.core", "SklearnVersionWarning": "registry.core"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


_default: "Registry | None" = None


def default_registry() -> "Registry":
    """The registry of `$MODELDECK_HOME` / `$MODELDECK_DB_URL`, opened once per process."""
    global _default
    if _default is None:
        from registry.core import Registry

        _default = Registry()
    return _default


def register(estimator: Any, name: str, **options: Any) -> VersionInfo:
    """`Registry.register` on the default registry: all a notebook needs after `fit`."""
    return default_registry().register(estimator, name, **options)


def load(ref: str) -> Any:
    """`Registry.load` on the default registry (`name`, `name:3` or `name@alias`)."""
    return default_registry().load(ref)


__all__ = [
    "ArtifactError",
    "DatabaseError",
    "EventInfo",
    "History",
    "InvalidName",
    "InvalidReference",
    "ModelInfo",
    "ModelNotFound",
    "NotAModel",
    "PickleRefused",
    "Ref",
    "ReferenceMismatch",
    "Registry",
    "RegistryError",
    "SchemaTooNew",
    "Settings",
    "SklearnVersionWarning",
    "StateAt",
    "VersionInUse",
    "VersionInfo",
    "VersionNotFound",
    "VersionSummary",
    "default_registry",
    "load",
    "parse_ref",
    "register",
]
