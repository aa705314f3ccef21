"""The shuffle-quality report (bench/shuffle.py) on a small dataset: the figures move the way
the window says."""

from __future__ import annotations

import pytest

from emberfs.bench import shuffle


def test_shuffle_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert shuffle.main(["--gib", "0.05", "--windows", "1,16"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    rows = {line[:24].strip(): [float(x) for x in line[24:].split()] for line in lines}
    assert rows["no shuffle"][0] == pytest.approx(1.0)
    w1, w16, full = rows["block-shuffled, W=1"], rows["block-shuffled, W=16"], rows["full random"]
    assert abs(w16[0]) < 0.1 and abs(full[0]) < 0.1  # no trace of the file order
    assert w1[1] < w16[1] < full[1]  # more blocks per batch with a larger window
    assert w16[2] < w1[2]
