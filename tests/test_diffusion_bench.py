"""`python benchmarks/bench_gpu.py --dry-run`: the GPU benchmark builds and runs every variant
with tiny configs on CPU and prints its table, so it cannot rot between GPU runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_dry_run_prints_the_table() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--dry-run", "--layers", "2",
                          "--steps", "4"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert "speed-up" in header and "alpha IoU" in header and "skipped" in header
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 1:]}
    assert set(rows) == {"stock", "fbcache", "dbcache", "compile", "fp8", "all"}
    assert rows["stock"][2] == "1.00x" and rows["stock"][4:6] == ["8", "0"]
    # the cached variants ran and skipped forwards (2 per step with true CFG)
    for variant in ("fbcache", "dbcache"):
        computed, skipped = int(rows[variant][4]), int(rows[variant][5])
        assert computed + skipped == 2 * 4 and skipped > 0
        assert 0.0 <= float(rows[variant][6]) <= 1.0
    assert "skipped" in " ".join(rows["fp8"])  # no torchao / no Ada GPU here: said so


def test_without_a_gpu_it_says_so() -> None:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    run = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and "--dry-run" in run.stderr
