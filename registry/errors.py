"""Errors a user can act on; the CLI prints each as one line."""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error the registry raises on purpose."""


class ModelNotFound(RegistryError):
    """No model of that name."""


class VersionNotFound(RegistryError):
    """The model exists but not that version or alias."""


class DeploymentNotChosen(RegistryError):
    """Labels (or another per-deployment action) without a deployment that could be chosen for them."""


class InvalidReference(RegistryError):
    """A `name`, `name:3` or `name@alias` reference that cannot be parsed."""


class InvalidName(RegistryError):
    """A model, alias or tag name (or a metric value) that is not allowed."""


class NotAModel(RegistryError):
    """A file or object that is not a scikit-learn style model."""


class PickleRefused(RegistryError):
    """A pickle/joblib file offered without `trust_pickle=True` (the CLI's `--trust-pickle`).

    The message names the Python argument; `cli_message` names the command-line flag instead."""

    PYTHON, CLI = "trust_pickle=True", "--trust-pickle"

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(self._message(self.PYTHON))

    def _message(self, option: str) -> str:
        return (
            f"{self.path} is a pickle: loading it runs any code it contains. If you trust who made it, "
            f"pass {option} (it is converted to the safe skops format on the way in)"
        )

    @property
    def cli_message(self) -> str:
        return self._message(self.CLI)


class ArtifactError(RegistryError):
    """An artifact is missing, corrupt, tampered with or holds untrusted types."""


class ArtifactDamaged(ArtifactError):
    """A stored artifact that is missing, or whose bytes no longer match its sha256; `reason` says which."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReferenceMismatch(RegistryError):
    """A reference sample whose columns do not match the model's input."""


class VersionInUse(RegistryError):
    """A version that a deployment or alias still holds."""


class DatabaseError(RegistryError):
    """The registry database is locked, read-only, unreachable or too new."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer modeldeck."""


class SupervisorError(RegistryError):
    """A serving action refused or failed; `status` is its HTTP status, `log_tail` the worker's last lines."""

    def __init__(self, message: str, status: int = 400, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.log_tail = log_tail or []


class ObjectiveError(RegistryError):
    """An objective, silence or webhook that cannot be stored as given (the message says which part)."""
