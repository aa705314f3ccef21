"""Table tests of the pure rules behind truncate-safe length reports.

`judge_report` (metaserver/ops/session.py): what a writer's (length, truncate_version)
report may do to the stored (length, truncate_version). `stored_end` and
`recovered_length` (client/_datapath.py): the length a writer recovers from storage once
its report was refused as stale.
"""

from __future__ import annotations

import pytest

from emberfs.client._datapath import recovered_length, stored_end
from emberfs.common import errors
from emberfs.metaserver.ops.session import Report, judge_report

GROW, KEEP, STALE = Report.GROW, Report.KEEP, Report.STALE

# (stored length, stored version, reported length, reported version) -> outcome
REPORTS = [
    ((100, 0, 50, 0), GROW),  # current view: max(stored, reported) keeps 100
    ((100, 0, 100, 0), GROW),
    ((100, 0, 500, 0), GROW),  # current view may grow the file
    ((0, 3, 7, 3), GROW),
    ((100, 2, 50, 1), KEEP),  # stale but not past the stored length: nothing to grow
    ((100, 2, 100, 1), KEEP),
    ((100, 5, 0, 0), KEEP),
    ((100, 2, 101, 1), STALE),  # stale and past it: would undo the truncate
    ((0, 1, 8 * 65536, 0), STALE),  # the open-time length of a file truncated to 0
]


@pytest.mark.parametrize(("case", "outcome"), REPORTS, ids=[str(c) for c, _ in REPORTS])
def test_judge_report(case: tuple[int, int, int, int], outcome: Report) -> None:
    assert judge_report(*case) is outcome


@pytest.mark.parametrize("case", [(100, 0, 10, 1), (100, 4, 100, 5)], ids=str)
def test_a_report_from_a_version_not_yet_made_is_refused(case: tuple[int, int, int, int]) -> None:
    with pytest.raises(errors.FailedPrecondition, match="truncate version"):
        judge_report(*case)


CS = 1024

# (each chain's last chunk or None, chunk size) -> end of the bytes storage holds
ENDS = [
    (([], CS), 0),
    (([None, None], CS), 0),
    (([(0, 0)], CS), 0),
    (([(0, 10)], CS), 10),
    (([(3, CS)], CS), 4 * CS),
    (([(2, 5), None, (5, 1)], CS), 5 * CS + 1),  # striped: the furthest chain wins
    (([(7, 1), (6, CS)], CS), 7 * CS + 1),
]


@pytest.mark.parametrize(("case", "end"), ENDS, ids=[str(c) for c, _ in ENDS])
def test_stored_end(case: tuple[list[tuple[int, int] | None], int], end: int) -> None:
    assert stored_end(*case) == end


# (storage end, end of the writer's own writes) -> length it reports again
RECOVERED = [
    ((65636, 4), 4),  # wrote inside what survived: the truncate's length stands (max on the server)
    ((3 * CS + 3, 3 * CS + 3), 3 * CS + 3),  # wrote past the new end after the truncate
    ((CS, 8 * CS), CS),  # its bytes past the new end were removed by the truncate
    ((8 * CS, 0), 0),  # wrote nothing: others' bytes are theirs to report
]


@pytest.mark.parametrize(("case", "length"), RECOVERED, ids=[str(c) for c, _ in RECOVERED])
def test_recovered_length(case: tuple[int, int], length: int) -> None:
    assert recovered_length(*case) == length
