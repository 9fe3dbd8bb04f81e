"""The Registry: register, find, load, alias, tag, archive and delete model versions."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func
from sqlmodel import Session, col, select

from registry import history as ledger
from registry import queries, reads, writes
from registry.actor import current_actor
from registry.artifacts import ArtifactStore, load_model
from registry.blobs import SharedArtifactStore, store_blob
from registry.capture import Captured, capture
from registry.errors import ArtifactDamaged, DeploymentNotChosen, InvalidName, VersionInUse, VersionNotFound
from registry.info import EventInfo, History, ModelInfo, VersionInfo, VersionSummary
from registry.reference import ReferenceSample, decode, read_reference
from registry.refs import Ref, check_alias, check_model_name, parse_ref
from registry.schema import (
    Deployment,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    VersionTag,
    utcnow,
)
from registry.store import Database, Settings, driver_runner, lock_artifact, runner

if TYPE_CHECKING:
    from registry.calibration import Calibration
    from registry.multivariate_profile import MultivariateProfile
    from registry.profile import Profile


class SklearnVersionWarning(UserWarning):
    """A model is loaded under a different scikit-learn version than it was registered with."""


class Registry:
    """Versioned, checksummed model storage on SQLite (default) or PostgreSQL.

    >>> reg = Registry()                       # $MODELDECK_HOME, or the user data dir
    >>> v = reg.register(model, "churn", reference=X_train, alias="champion")
    >>> reg.load("churn@champion").predict(X)
    """

    def __init__(
        self,
        home: str | Path | None = None,
        db_url: str | None = None,
        *,
        settings: Settings | None = None,
        upgrade: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env(home, db_url)
        self.db = Database(self.settings, upgrade=upgrade)
        self.artifacts = (
            ArtifactStore(self.settings.artifacts_dir)
            if self.settings.is_sqlite
            else SharedArtifactStore(self.settings.artifacts_dir, self.db)
        )

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ register
    def register(
        self,
        estimator: Any,
        name: str,
        *,
        reference: Any | None = None,
        reference_labels: Any | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        alias: str | Iterable[str] | None = None,
        source: str = "",
        parent: int | None = None,
    ) -> VersionInfo:
        """Store a fitted estimator as the next version of `name` and return that version.

        `reference` (DataFrame or array, the training data or a sample of it, or the path of a CSV
        or `.npy` file holding it) is checked against the model's input, sampled to at most 10,000
        rows and stored with the model's predictions. `reference_labels` (one true class per
        reference row) calibrates a classifier's estimated performance on live traffic; give
        labelled rows the model was not trained on (a validation set), or the estimate is optimistic.
        """
        check_model_name(name)
        aliases = [alias] if isinstance(alias, str) else list(alias or [])
        for a in aliases:
            check_alias(a)
        captured = capture(estimator, read_reference(reference), reference_labels)
        return self.add_version(
            captured,
            name,
            description=description,
            tags=tags,
            metrics=metrics,
            aliases=aliases,
            source=source,
            parent=parent,
        )

    def add_version(
        self,
        captured: Captured,
        name: str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        aliases: Iterable[str] = (),
        source: str = "",
        parent: int | None = None,
    ) -> VersionInfo:
        """Store captured artifacts and commit the version row, aliases, tags and ledger entry.

        Artifacts are written first (content-addressed, so a crash leaves at most an unreferenced
        file); the rows are one transaction, so a version is either complete or invisible.
        """
        check_model_name(name)
        self.db.check_writable()  # before any artifact is written
        aliases = list(aliases)  # read once, even when given as an iterator
        blobs: dict[str, bytes] = {}  # by sha256
        new_here, shas = [], []
        for data in (captured.model_bytes, captured.reference_bytes, captured.profile_bytes):
            sha, written = self.artifacts.cache(data) if data else (None, False)
            shas.append(sha)
            if sha is not None and data is not None:
                blobs[sha] = data
                if written:
                    new_here.append(sha)
        artifact_sha, reference_sha, profile_sha = shas
        if isinstance(self.artifacts, SharedArtifactStore) and new_here:  # so likely new to the database
            self.artifacts.store_missing({sha: blobs[sha] for sha in new_here})  # before the transaction
        actor = current_actor()
        values = {
            "artifact_sha256": artifact_sha,
            "artifact_size": len(captured.model_bytes),
            "artifact_format": "skops",
            "trusted_types": captured.trusted_types,
            "estimator_class": captured.estimator_class,
            "params": captured.params,
            "python_version": captured.python_version,
            "sklearn_version": captured.sklearn_version,
            "numpy_version": captured.numpy_version,
            "signature": captured.signature,
            "output": captured.output,
            "metrics": {k: _check_metric(k, v) for k, v in (metrics or {}).items()},
            "description": description,
            "reference_sha256": reference_sha,
            "reference_rows": captured.reference_rows,
            "profile_sha256": profile_sha,
            "source": source,
            "origin": captured.origin,
            "parent_version": parent,
            "created_by": actor,
        }
        tag_values = {_check_tag_key(key): str(value) for key, value in (tags or {}).items()}
        detail = {"sha256": artifact_sha, "source": source, "origin": captured.origin}
        row = self._commit_version(name, values, tag_values, detail, blobs, aliases, parent)
        return queries.version_info(name, row, sorted(set(aliases)), tag_values)

    def _commit_version(
        self,
        name: str,
        values: dict[str, Any],
        tag_values: dict[str, str],
        detail: dict[str, Any],
        blobs: Mapping[str, bytes],
        aliases: Iterable[str],
        parent: int | None,
    ) -> dict[str, Any]:
        """The version's rows and aliases in one transaction, committed only while its blobs are
        stored (their locks held, so no delete can discard them before it commits); its row."""
        actor = values["created_by"]
        shared = isinstance(self.artifacts, SharedArtifactStore)  # PostgreSQL: blobs in the database too
        with self.db.driver_write() as raw:
            if shared:  # one round trip: the blobs' locks, then the rows
                row, gone = writes.register_postgres(raw, name, values, tag_values, detail, list(blobs))
                for sha in gone:  # a delete took them since `store_missing` (rare): stored again here
                    store_blob(raw, sha, blobs[sha])
            else:  # BEGIN IMMEDIATE's writer lock covers the model and the blobs
                row = writes.register_sqlite(raw, name, values, tag_values, detail)
            _check_parent(raw, shared, name, parent, row)
            # A delete may have discarded this host's copy since `cache` above; the blobs' locks are
            # held now, so put it back before the row commits.
            _ensure_stored(self.artifacts, blobs)
            for alias in aliases:
                if shared:
                    writes.move_alias_postgres(raw, name, alias, Ref(name, version=row["version"]), actor)
                else:
                    target = (row["id"], row["version"])
                    writes.move_alias_sqlite(raw, (row["model_id"], name), alias, target, actor)
        return row

    def register_file(
        self,
        path: str | Path,
        name: str,
        *,
        trust_pickle: bool = False,
        trust_types: Iterable[str] = (),
        reference: Any | None = None,
        **options: Any,
    ) -> VersionInfo:
        """Register a model file: `.skops`, or (only with `trust_pickle`) pickle, joblib or MLflow."""
        from registry.model_files import read_model_file

        estimator = read_model_file(Path(path), trust_pickle=trust_pickle, trust_types=tuple(trust_types))
        options.setdefault("source", str(Path(path).resolve()))
        return self.register(estimator, name, reference=reference, **options)

    # ------------------------------------------------------------------ read
    def get(self, ref: str | Ref) -> VersionInfo:
        """The version a reference (`name`, `name:3`, `name@alias`) points at."""
        parsed = _as_ref(ref)
        with self.db.reads() as run:
            return reads.get_version(run, parsed)

    def load(self, ref: str | Ref) -> Any:
        """The fitted estimator of a version, after its sha256 matches the registry."""
        info = self.get(ref)
        what = f"model {info.name!r} version {info.version}"
        data = self.artifacts.get(info.artifact_sha256, what)
        estimator = load_model(data, info.trusted_types, what)
        import sklearn

        if info.sklearn_version != sklearn.__version__:
            warnings.warn(
                f"{what} was registered with scikit-learn {info.sklearn_version}; "
                f"loading it under {sklearn.__version__} may change its predictions",
                SklearnVersionWarning,
                stacklevel=2,
            )
        return estimator

    def feedback(self, labels: Any, deployment: str | None = None) -> dict[str, Any]:
        """Store ground truth for earlier predictions of `deployment`, by request id (the
        `X-Request-ID` of the response): one `{"request_id", "row", "label"}` or
        `{"request_id", "labels": [...]}`, or a list of them. Without `deployment`, the home's only
        deployment. Returns `{"accepted", "duplicates", "unknown"}` (see `registry.outcomes`), with
        `"invalid"` and `"invalid_reason"` when some were not stored (a regressor's non-numeric labels).
        ValueError (naming the field) for a malformed entry; DeploymentNotChosen when `deployment` is
        unknown, or omitted while the home has not exactly one deployment."""
        from registry.outcomes import NOT_A_NUMBER, OutcomeStore, is_number, parse_labels

        parsed = parse_labels(labels)
        name, model, version = self._feedback_deployment(deployment)
        invalid = 0
        if self.get(f"{model}:{version}").output.get("kind") != "classification":
            valid = [label for label in parsed if is_number(label.value)]
            invalid, parsed = len(parsed) - len(valid), valid
        with OutcomeStore.of(self.settings.home) as store:
            counts: dict[str, Any] = store.add_labels(parsed, name)
        if invalid:
            counts.update(invalid=invalid, invalid_reason=f"{NOT_A_NUMBER} ({model} is a regressor)")
        return counts

    def _feedback_deployment(self, deployment: str | None) -> tuple[str, str, int]:
        """(name, model, serving version) of the deployment labels are for."""
        from registry.deployments import list_deployments

        known = {d.name: (d.name, d.model, d.version) for d in list_deployments(self)}
        if deployment is None:
            if len(known) == 1:
                return next(iter(known.values()))
            which = f"one of {', '.join(known)}" if known else "none is deployed"
            raise DeploymentNotChosen(
                f"say which deployment the labels are for: --deployment NAME (deployment= in Python; {which})"
            )
        if deployment not in known:
            raise DeploymentNotChosen(f"no deployment named {deployment!r} (labels are kept per deployment)")
        return known[deployment]

    def reference(self, ref: str | Ref) -> ReferenceSample | None:
        """The stored reference sample of a version (checksum-verified), or None if it has none."""
        info = self.get(ref)
        if info.reference_sha256 is None:
            return None
        return decode(self.artifacts.get(info.reference_sha256, f"reference sample of {info.ref}"))

    def profile(self, ref: str | Ref) -> Profile | None:
        """The drift profile of a version: the stored one, else fitted on its reference sample (versions
        registered before profiles existed, or whose profile is of an older format; a stored one without
        multivariate drift gets it from the sample); None when the version has no reference sample.
        ArtifactDamaged ("reference sample of iris:2 is damaged (sha256 mismatch)") when it has one
        that cannot be used."""
        from registry.profile import OutdatedProfile, Profile

        info = self.get(ref)
        try:
            if info.profile_sha256 is not None:
                try:
                    profile = Profile.from_bytes(
                        self.artifacts.get(info.profile_sha256, f"drift profile of {info.ref}")
                    )
                except OutdatedProfile:  # stored by an older modeldeck: refit it, as below
                    pass
                else:
                    if profile.multivariate is None:  # stored before multivariate drift, or none possible
                        profile.multivariate = self._multivariate(ref)
                    return profile
            sample = self.reference(ref)
            return None if sample is None else Profile.fit(sample, info.signature, info.output)
        except ArtifactDamaged as exc:
            reason = exc.reason
        except Exception as exc:  # intact bytes that numpy or json cannot read
            reason = f"unreadable: {exc}"
        raise ArtifactDamaged(f"reference sample of {info.ref} is damaged ({reason})", reason)

    def _multivariate(self, ref: str | Ref) -> MultivariateProfile | None:
        """The multivariate drift profile of a version whose stored profile has none, fitted on its
        reference sample; None when it has no usable sample (the rest of its drift profile still serves)."""
        from registry.multivariate_profile import fit_reference

        try:
            sample = self.reference(ref)
        except Exception as exc:  # damaged or unreadable: only this signal is missing
            logging.getLogger("modeldeck.registry").warning("no multivariate drift for %s: %s", ref, exc)
            return None
        return None if sample is None else fit_reference(sample, self.get(ref).signature)

    def calibration(self, ref: str | Ref) -> Calibration | None:
        """The calibration of a version's estimated performance, stored with its reference sample;
        None when it has none (no reference, no labels, or no `predict_proba`)."""
        from registry.calibration import Calibration

        sample = self.reference(ref)
        return None if sample is None else Calibration.from_arrays(sample.extra)

    def list_models(self, include_archived: bool = False) -> list[ModelInfo]:
        """Every model, with its number of (non-archived) versions, newest version and aliases."""
        with self.db.reads() as run:
            return reads.list_models(run, include_archived)

    def versions(self, name: str, include_archived: bool = False) -> list[VersionSummary]:
        """Summaries of the versions of a model, oldest first; archived ones only if asked."""
        with self.db.reads() as run:
            return reads.list_versions(run, name, include_archived)

    # ------------------------------------------------------------------ change
    def set_alias(self, name: str, alias: str, version: int | str, reason: str = "") -> VersionInfo:
        """Point `alias` at `version` (a number or another alias) of `name`, atomically.

        `reason` is kept in the ledger with who moved it and when."""
        check_alias(alias)
        target = parse_ref(f"{name}:{version}" if str(version).isdigit() else f"{name}@{version}")
        actor = current_actor()
        if not self.settings.is_sqlite:  # the row lock, then one statement: round trips cost
            with self.db.driver_write() as raw:
                run = driver_runner(raw)
                if not writes.lock_model_postgres(raw, name):
                    reads.model_id(run, name)  # raises ModelNotFound naming the known models
                found = writes.move_alias_postgres(raw, name, alias, target, actor, reason)
                if found is None:
                    raise reads.not_found(run, target)
                info = found  # an archived target was not moved, and is refused below
                if info.archived:
                    raise VersionInUse(f"{name}:{info.version} is archived; restore it before aliasing it")
        else:
            with self.db.write() as session:
                conn = session.connection()
                model_id, _ = writes.lock_model(conn, name)
                version_id, info = reads.find_version(runner(conn), target)
                if info.archived:
                    raise VersionInUse(f"{name}:{info.version} is archived; restore it before aliasing it")
                target_row = (version_id, info.version)
                writes.move_alias(conn, (model_id, name), alias, target_row, actor, reason)
        info.aliases = sorted({*info.aliases, alias})
        return info

    def remove_alias(self, name: str, alias: str, reason: str = "") -> None:
        """Delete an alias; the version it pointed at is untouched."""
        with self.db.write() as session:
            model = _lock_model(session, name)
            existing = session.get(ModelAlias, (model.id, alias))
            if existing is None:
                raise queries.not_found(session.connection(), Ref(name, alias=alias))
            old = session.get(ModelVersion, existing.version_id)
            session.delete(existing)
            _record(
                session,
                name,
                ledger.ALIAS_REMOVED,
                current_actor(),
                alias=alias,
                from_version=old.version if old else None,
                reason=reason,
            )

    def tag(self, ref: str, tags: Mapping[str, str], remove: Iterable[str] = ()) -> None:
        """Set and remove tags: on a version for `name:3`/`name@alias`, on the model for `name`."""
        parsed = _as_ref(ref)
        remove = list(remove)
        with self.db.write() as session:
            model = _lock_model(session, parsed.name)
            owner: dict[str, Any]
            table: type[ModelTag] | type[VersionTag]
            if parsed.version is None and parsed.alias is None:
                owner, table, version = {"model_id": model.id}, ModelTag, None
            else:
                row = _resolve(session, parsed)
                owner, table, version = {"version_id": row.id}, VersionTag, row.version
            for key, value in tags.items():
                session.merge(table(key=_check_tag_key(key), value=str(value), **owner))
            for key in remove:
                existing = session.get(table, (*owner.values(), key))
                if existing is not None:
                    session.delete(existing)
            _record(
                session,
                parsed.name,
                ledger.TAGGED,
                current_actor(),
                to_version=version,
                detail={"set": dict(tags), "removed": remove},
            )

    def describe(self, name: str, description: str) -> None:
        """Set a model's description."""
        with self.db.write() as session:
            model = _lock_model(session, name)
            model.description = description
            model.updated_at = utcnow()
            session.add(model)

    def archive(self, ref: str, restore: bool = False, reason: str = "") -> VersionInfo:
        """Hide a version (`name:3`) from listings, deleting nothing; `restore=True` shows it again.

        Archiving an archived version (or restoring a visible one) changes nothing and records nothing."""
        parsed = _as_ref(ref)
        if parsed.version is None:
            raise VersionNotFound(
                f"say which version to {'restore' if restore else 'archive'}, e.g. {parsed.name}:3"
            )
        with self.db.write() as session:
            model = _lock_model(session, parsed.name)
            row = _resolve(session, parsed, include_archived=True)
            if (row.archived_at is not None) != restore:  # already as asked
                return queries.get_version(session.connection(), parsed, include_archived=True)
            if not restore:
                holders = _holders(session, model, row)
                if holders:
                    raise VersionInUse(f"cannot archive {model.name}:{row.version}: held by {holders}")
            row.archived_at = None if restore else utcnow()
            session.add(row)
            _record(
                session,
                model.name,
                ledger.RESTORED if restore else ledger.ARCHIVED,
                current_actor(),
                from_version=row.version,
                reason=reason,
            )
        return self.get(f"{model.name}:{row.version}")

    def delete(self, ref: str, reason: str = "") -> None:
        """Delete one version (`name:3`); refused while a deployment or alias holds it."""
        parsed = _as_ref(ref)
        if parsed.version is None:
            raise VersionNotFound(f"delete takes NAME:VERSION (not a name or an alias), e.g. {parsed.name}:3")
        with self.db.write() as session:
            model = _lock_model(session, parsed.name)
            row = _resolve(session, parsed, include_archived=True)
            holders = _holders(session, model, row)
            if holders:
                raise VersionInUse(f"cannot delete {model.name}:{row.version}: held by {holders}")
            blobs = [row.artifact_sha256, row.reference_sha256, row.profile_sha256]
            session.execute(delete(VersionTag).where(col(VersionTag.version_id) == row.id))
            session.execute(delete(ModelVersion).where(col(ModelVersion.id) == row.id))
            _record(
                session,
                model.name,
                ledger.DELETED,
                current_actor(),
                from_version=row.version,
                reason=reason,
                detail={"sha256": row.artifact_sha256},
            )
        self._discard_unreferenced([b for b in blobs if b])

    def _discard_unreferenced(self, blobs: list[str]) -> None:
        for sha in blobs:
            with self.db.write() as session:
                lock_artifact(session, sha, exclusive=True)
                used = session.exec(
                    select(func.count()).where(
                        (ModelVersion.artifact_sha256 == sha)
                        | (ModelVersion.reference_sha256 == sha)
                        | (ModelVersion.profile_sha256 == sha)
                    )
                ).one()
                if not used:  # in this transaction, which holds the lock until the rows are gone
                    self.artifacts.discard(sha, session.connection())

    # ------------------------------------------------------------------ ledger
    def history(self, name: str, at: datetime | str | None = None) -> History:
        """The ledger of `name` up to `at` (default: now) and the state it leaves: which versions
        existed, where each alias pointed and which version each deployment was serving."""
        moment = ledger.parse_time(at) if isinstance(at, str) else (at or utcnow())
        moment = moment.astimezone(UTC)  # a naive datetime is taken as local time
        with self.db.reads() as run:
            return reads.history(run, name, moment)

    def recent_events(self, limit: int = 200) -> list[EventInfo]:
        """The newest `limit` ledger events of every model, newest first."""
        with self.db.reads() as run:
            return reads.recent_events(run, limit)

    def record_event(self, name: str, kind: str, **fields: Any) -> None:
        """Append an event to the ledger (used by the serving supervisor)."""
        with self.db.write() as session:
            _record(session, name, kind, fields.pop("actor", None) or current_actor(), **fields)

    def export(self, ref: str, path: str | Path) -> Path:
        """Write one version to a single archive file; see `registry.transfer`."""
        from registry.transfer import export_version

        return export_version(self, ref, Path(path))

    def import_(
        self,
        path: str | Path,
        name: str | None = None,
        trust_types: Iterable[str] = (),
        keep_number: bool = False,
    ) -> VersionInfo:
        """Register an exported archive as the next version here, after verifying every checksum;
        with `keep_number`, under the number it had where it was exported (refused when this model
        already reached it), so its answers and metrics name the same version."""
        from registry.transfer import import_version

        return import_version(
            self, Path(path), name=name, trust_types=tuple(trust_types), keep_number=keep_number
        )


# ---------------------------------------------------------------------- helpers
def _as_ref(ref: str | Ref) -> Ref:
    return ref if isinstance(ref, Ref) else parse_ref(ref)


def _check_tag_key(key: str) -> str:
    if not key or len(key) > 128 or not key.isprintable() or "=" in key:
        raise InvalidName(f"bad tag key {key!r}: 1-128 printable characters, no '='")
    return key


def _check_metric(key: str, value: float) -> float:
    """A metric's value as a float; a NaN or infinity (which JSON cannot hold) is refused, naming it."""
    number = float(value)
    if not math.isfinite(number):
        raise InvalidName(f"metric {key!r} is {number}: a metric must be a finite number")
    return number


def _lock_model(session: Session, name: str) -> RegisteredModel:
    """The model row, locked for this transaction (PostgreSQL; SQLite's writer lock covers it)."""
    model = session.get(RegisteredModel, writes.lock_model(session.connection(), name)[0])
    assert model is not None
    return model


def _resolve(session: Session, ref: Ref, include_archived: bool = False) -> ModelVersion:
    """The version row a reference points at, in this session."""
    row = session.get(ModelVersion, queries.version_id(session.connection(), ref, include_archived))
    assert row is not None
    return row


def _holders(session: Session, model: RegisteredModel, row: ModelVersion) -> str:
    """Which aliases and deployments hold a version, as a phrase ('' if none)."""
    aliases = session.exec(select(ModelAlias.alias).where(ModelAlias.version_id == row.id)).all()
    deployments = session.exec(
        select(Deployment.name).where(
            (Deployment.version_id == row.id) | (Deployment.standby_version_id == row.id)
        )
    ).all()
    parts = [f"alias {a!r}" for a in sorted(aliases)] + [f"deployment {d!r}" for d in sorted(deployments)]
    return ", ".join(parts)


def _check_parent(raw: Any, postgres: bool, name: str, parent: int | None, row: dict[str, Any]) -> None:
    """Refuse (inside the registering transaction, on its driver connection `raw`, which then keeps
    nothing) a parent that is not an existing earlier version of the model (a deleted one is not)."""
    if parent is None:
        return
    query = "SELECT 1 FROM model_version WHERE model_id = ? AND version = ?"
    if not (0 < parent < row["version"] and driver_runner(raw, postgres)(query, (row["model_id"], parent))):
        raise VersionNotFound(f"parent version {parent} of {name!r} does not exist")


def _ensure_stored(artifacts: ArtifactStore, blobs: Mapping[str, bytes]) -> None:
    """Put back in this host's files any blob a concurrent delete discarded, inside the registering
    transaction (whose locks keep another delete from discarding it again before the row commits)."""
    for sha, data in blobs.items():
        artifacts.ensure(sha, data)


def _record(target: Session | Connection, name: str, kind: str, actor: str, **fields: Any) -> None:
    """Append to the ledger inside the caller's transaction."""
    writes.record(target.connection() if isinstance(target, Session) else target, name, kind, actor, **fields)


__all__ = ["Registry", "SklearnVersionWarning", "current_actor"]
