"""run/progress.py: the terminal line per finished task."""

from __future__ import annotations

import io

from halbench.run.progress import Progress


def test_progress_line_counts_and_estimates() -> None:
    stream = io.StringIO()
    progress = Progress(total=4, already=1, stream=stream)
    progress.started()
    progress.started()
    progress.finished("t1", "ok")
    progress.finished("t2", "oom")
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("[halbench] 3/4 trials done (1 failed, 0 running), elapsed ")
    assert "left; t2: oom" in last
