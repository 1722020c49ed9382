"""An analysis that fails after the baseline: injected in place of the monitor's, and importable by the
analysis worker process (which unpickles it), so the failure happens where real failures would."""

from __future__ import annotations

from typing import Any

from neuromfa_callback.monitor import _Analysis


class FailingAnalysis(_Analysis):
    """Fails (RuntimeError) for every snapshot after the first; the choice is made in the training process."""

    made = 0

    def __init__(self, jobs: list, compute: bool) -> None:
        super().__init__(jobs, compute)
        FailingAnalysis.made += 1
        self.fail = FailingAnalysis.made > 1

    def __call__(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("injected worker failure")
        return super().__call__()
