"""A canary's or shadow's state in words, for `modeldeck status` and the console alike."""

from __future__ import annotations

from typing import Any


def rollout_headline(deployment: Any) -> str:
    """'canary of iris:3 at 25% (step 2 of 4: 5% 25% 50% 100%), next check in 12 s', or a shadow's."""
    rollout = deployment["rollout"]
    candidate = f"{deployment['model']}:{rollout['version']}"
    stage = "" if rollout["stage"] == "running" else f", {rollout['stage']}"
    if rollout["mode"] == "shadow":
        return f"shadow of {candidate}: a copy of every request to version {deployment['version']}{stage}"
    steps = " ".join(f"{w:g}%" for w in rollout["steps"])
    return (
        f"canary of {candidate} at {rollout['weight']:g}% (step {rollout['step']} of "
        f"{len(rollout['steps'])}: {steps}), next check in {rollout['next_check']:.0f} s{stage}"
    )


def traffic_text(rollout: Any) -> str:
    """What the serving workers did for the candidate: '1,204 forwarded · 3 answered here instead' or
    '9,870 copies · 12 dropped (queue full)'; '' before the first count."""
    counts = rollout.get("traffic") or {}
    if not counts:
        return ""
    if rollout["mode"] == "shadow":
        parts = [f"{counts.get('mirrored', 0):,} copies"]
        if counts.get("dropped"):
            parts.append(f"{counts['dropped']:,} dropped (queue full)")
        if counts.get("mirror_failed"):
            parts.append(f"{counts['mirror_failed']:,} lost")
    else:
        parts = [f"{counts.get('forwarded', 0):,} forwarded"]
        if counts.get("fallbacks"):
            parts.append(f"{counts['fallbacks']:,} answered by the serving version instead")
    return " · ".join(parts)


def check_lines(rollout: Any) -> list[tuple[str, str, str]]:
    """(check, verdict, why) of each check, in the analysis' order."""
    return [(check["name"], check["verdict"], check["why"]) for check in rollout["checks"]]
