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


def check_lines(rollout: Any) -> list[tuple[str, str, str]]:
    """(check, verdict, why) of each check, in the analysis' order."""
    return [(check["name"], check["verdict"], check["why"]) for check in rollout["checks"]]
