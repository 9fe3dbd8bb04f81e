"""`modeldeck export`: one version to an archive (`export REF FILE`), or to KServe (`export kserve REF`).

`kserve` as the first word picks the KServe export; anything else is the archive export's REF, so a
model named kserve is still exported with `modeldeck export kserve:3 FILE` (or `kserve@latest`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from console import output

KSERVE = "kserve"
#: The archive export's name as a command: never typed (see `_ExportGroup`), so it hides no model name.
_ARCHIVE = "archive"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class _ExportGroup(TyperGroup):
    """The `export` group: `kserve ...` is its subcommand, any other first word the archive's REF."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: the Context of typer's own click
        if args and args[0] != KSERVE and args[0] not in ctx.help_option_names:
            args = [_ARCHIVE, *args]
        return super().parse_args(ctx, args)


class _ArchiveCommand(TyperCommand):
    """The archive export, whose usage reads `export [OPTIONS] REF FILE` (its name is never typed)."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        parent = ctx.parent.command_path if ctx.parent is not None else "export"
        formatter.write_usage(parent, " ".join(self.collect_usage_pieces(ctx)))


export_app = typer.Typer(
    cls=_ExportGroup,
    name="export",
    help=(
        "Write one version to an archive (export REF FILE|DIR), or for KServe (export kserve REF). "
        "A model named kserve: export kserve:VERSION FILE."
    ),
    subcommand_metavar="REF FILE | kserve REF [OPTIONS]",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _run(action: Any) -> Any:
    from console.cli import _run as run_with_registry

    return run_with_registry(action)


@export_app.command(_ARCHIVE, hidden=True, cls=_ArchiveCommand)
def export_archive(
    ref: Annotated[str, typer.Argument(metavar="REF")],
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    json_out: JsonFlag = False,
) -> None:
    """Write one version (artifact, reference, metadata, checksums) to a single archive FILE."""
    written = _run(lambda reg: reg.export(ref, file))
    if json_out:
        output.print_json({"ref": ref, "file": str(written)})
    else:
        output.out.print(f"exported {ref} to {written}")


@export_app.command(KSERVE)
def export_kserve(
    ref: Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME:VERSION or NAME@ALIAS")],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Directory to write (default ./MODEL-vVERSION-kserve)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="InferenceService name (default: the model's).")
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Take memory and a canary's share from this deployment only."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(metavar="IMAGE", help="Image the manifest runs (default NAME:vVERSION).")
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Install this modeldeck wheel in the image, not the index's."),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a KServe InferenceService, a Dockerfile running `modeldeck serve` and the version's archive."""
    from console.kserve_export import export_kserve as write

    done = _run(lambda reg: write(reg, ref, out, name=name, deployment=deployment, image=image, wheel=wheel))
    if json_out:
        output.print_json(done)
        return
    where = done["dir"]
    output.say(f"exported {done['ref']} for KServe to {where}: {', '.join(done['files'])}")
    memory = done["memory"]
    output.say(f"memory: request {memory['request']}, limit {memory['limit']} ({memory['source']})")
    if done["canary_traffic_percent"] is not None:
        output.say(f"canaryTrafficPercent: {done['canary_traffic_percent']}")
    for note in done["notes"]:
        output.warn(f"note: {note}")
    output.say(
        f"next: docker build -t {done['image']} {where} && docker push {done['image']} && "
        f"kubectl apply -f {Path(where) / 'inferenceservice.yaml'}"
    )


def register(app: typer.Typer) -> None:
    """Add `export` (the archive, and `export kserve`) to the `modeldeck` command."""
    app.add_typer(export_app)
