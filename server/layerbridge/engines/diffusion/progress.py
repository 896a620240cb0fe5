"""Progress and cancel for one pipeline run, through the pipelines' step callback."""

from __future__ import annotations

from typing import Any

from layerbridge.engines.base import JobContext

#: Fractions of one pipeline run given to each stage, for progress reports.
STAGE_SPANS = {"caption": (0.0, 0.05), "encode": (0.05, 0.1), "denoise": (0.1, 0.95),
               "decode": (0.95, 1.0)}



class StageProgress:
    """Maps one pipeline run's stages and steps into ``[lo, hi]`` of the job's progress and
    checks for cancel at every step (the pipeline's ``callback_on_step_end``)."""

    def __init__(self, ctx: JobContext, lo: float, hi: float, steps: int) -> None:
        self.ctx, self.lo, self.hi, self.steps = ctx, lo, hi, steps

    def _at(self, fraction: float) -> float:
        return self.lo + (self.hi - self.lo) * fraction

    def stage(self, name: str) -> None:
        """Announce the start of a stage (caption, encode, denoise, decode), then check cancel."""
        self.ctx.check_cancelled()
        self.ctx.progress(self._at(STAGE_SPANS[name][0]), name)

    def on_step_end(self, pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        """Report the finished step; raise JobCancelled out of the pipeline on cancel, so the
        job stops within one step and skips the decode."""
        lo, hi = STAGE_SPANS["denoise"]
        done = step + 1
        self.ctx.progress(self._at(lo + (hi - lo) * done / self.steps), "denoise", done,
                          self.steps)
        self.ctx.check_cancelled()
        if done == self.steps:
            self.stage("decode")
        return {}
