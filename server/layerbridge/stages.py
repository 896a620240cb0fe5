"""What each job stage is called where people read it: the CLI's progress, the plug-ins.

The server sends short stage names in ``progress`` messages (shared/PROTOCOL.md); this table
is the one place that says them in words. The GIMP plug-in gets a copy of this module with
the client; the Photoshop panel's ``src/stages.js`` holds the same table, and its tests check
that the two agree.
"""

from __future__ import annotations

STAGES: dict[str, str] = {
    "queued": "Waiting in the server's queue",
    "start": "Starting",
    "caption": "Describing the image",
    "encode": "Encoding",
    "denoise": "Generating",
    "decode": "Decoding",
    "background": "Finding the background",
    "regions": "Finding regions",
    "text": "Finding text",
    "order": "Ordering the layers",
    "merge": "Merging alike parts",
    "peel": "Separating layers",
    "fill": "Filling hidden areas",
    "seams": "Tidying seams",
    "alpha": "Refining edges",
    "save": "Saving",
    "done": "Finishing",
}


def stage_text(stage: str, step: int | None = None, steps: int | None = None) -> str:
    """``peel`` as "Separating layers"; with model steps, "Generating (step 3 of 20)"."""
    text = STAGES.get(stage) or stage.replace("_", " ").capitalize() or "Working"
    if steps:
        text += f" (step {step or 0} of {steps})"
    return text


def remaining_seconds(
    fraction: float, elapsed_s: float, step: int | None = None, steps: int | None = None
) -> float | None:
    """An estimate of the time left, only where the engine counts model steps (the one
    progress that runs at an even pace); None elsewhere, rather than a guess that jumps."""
    if not steps or not step or elapsed_s <= 0 or fraction <= 0.0:
        return None
    return max(0.0, elapsed_s * (1.0 - fraction) / fraction)


def duration_text(seconds: float) -> str:
    """About 40 s, about 3 min."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"
