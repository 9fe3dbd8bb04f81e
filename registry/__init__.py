"""modeldeck's registry: versioned, checksummed, safe storage of scikit-learn models.

Importing this package is cheap: scikit-learn, pandas and skops load only when a model is
registered or loaded, and nothing here imports Textual.

>>> from registry import Registry
>>> reg = Registry()
>>> reg.register(model, "iris", reference=X_train, alias="champion")
"""

from registry.core import Registry, SklearnVersionWarning
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
from registry.info import EventInfo, History, ModelInfo, StateAt, VersionInfo
from registry.refs import Ref, parse_ref
from registry.store import Settings

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
    "parse_ref",
]
