"""icrl.histories.results: the per-episode results format that icrl.ad and icrl.baselines share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icrl.histories import results


def test_the_csv_round_trips_exactly(tmp_path: Path) -> None:
    rows = [
        results.EpisodeResult("AD", 1, t, e, 0.1 * t + 1 / 3 * e)
        for t in range(2)
        for e in range(3)
    ]
    text = results.results_csv_text(rows)
    assert (
        text.splitlines()[0] == ",".join(results.CSV_COLUMNS) == "method,seed,task,episode,return"
    )
    (tmp_path / "r.csv").write_text(text)
    assert results.read_results_csv(tmp_path / "r.csv") == rows  # repr: the same floats come back
    (tmp_path / "bad.csv").write_text("method,seed,task,ep,return\n")
    with pytest.raises(ValueError, match=r"bad\.csv: expected CSV columns method,seed,task"):
        results.read_results_csv(tmp_path / "bad.csv")


def test_mean_ci95_is_the_normal_interval_of_the_finite_values() -> None:
    vals = np.array([0.0, 1.0, 1.0, 2.0, np.nan])
    mean, half = results.mean_ci95(vals)
    finite = vals[:4]
    assert mean == pytest.approx(1.0)
    assert half == pytest.approx(results.Z95 * finite.std(ddof=1) / np.sqrt(4))
    assert results.mean_ci95([3.0]) == (3.0, 0.0)
    assert np.isnan(results.mean_ci95([np.nan])[0])


def test_plot_mean_ci_draws_a_band_in_the_lines_colour() -> None:
    # icrl.histories does not depend on matplotlib; its callers (icrl.ad, icrl.baselines) do
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        line = results.plot_mean_ci(ax, [0, 1], [1.0, 2.0], [0.5, 0.5], label="m", color="tab:red")
        (band,) = ax.collections
        assert line.get_label() == "m"
        assert np.allclose(band.get_facecolor()[0][:3], matplotlib.colors.to_rgb("tab:red"))
        assert band.get_alpha() == 0.25
    finally:
        plt.close(fig)


def test_write_png_writes_whole_files_and_refuses_when_asked(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        ax.plot([0, 1], [0, 1])
        out = results.write_png(fig, tmp_path / "f.png")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(FileExistsError):
            results.write_png(fig, out, overwrite=False)
    finally:
        plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temporary left
