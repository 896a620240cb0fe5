"""A short attack soak (`make test-long`): honest clients beside every attack of
benchmarks/attackers.py against `layerbridge serve --memory-budget 512`, its process tree
(the classic engine's workers included) held to the budget plus 300 MiB, and back within
50 MiB of its baseline once the attackers' work is done. The full ten minutes:
`python benchmarks/soak.py --attack --minutes 10 --budget-mib 512`."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.attackers import run_attack_soak


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_attack_soak_holds_the_memory_budget(tmp_path: Path) -> None:
    assert run_attack_soak(1.0, 3, 512, tmp_path / "out") == 0, "see the printed report"
