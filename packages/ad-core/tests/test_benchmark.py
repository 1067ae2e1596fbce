"""The GPU benchmark script runs end to end on CPU at tiny sizes."""

from __future__ import annotations

import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def test_throughput_benchmark_runs_tiny_on_cpu(capsys) -> None:
    main = runpy.run_path(str(SCRIPT), run_name="benchmark")["main"]
    main(["--size", "tiny", "--device", "cpu", "--contexts", "32", "64", "--iters", "1",
          "--warmup", "0", "--eval-rollouts", "2", "--eval-episodes", "1",
          "--family", "ReacherGoal", "--sync"])  # fmt: skip
    out = capsys.readouterr().out
    for backbone in ("mamba", "transformer"):
        assert f"{backbone}: AD model" in out
        assert f"{backbone}: in-context eval of 2 rollouts × 1 episodes" in out
    assert out.count("| 64 | 1 |") == 2
