"""Stalled trials: running, but no epoch arrived for 10x the median epoch time.

The median comes from finished trials (their seconds per epoch), and the gap counts from a
trial's start or its last epoch as the driver received them. A gap under `FLOOR_SECONDS` never
counts: epochs arrive in batches (every 50 ms per worker, and commits every 0.25 s).
"""

from __future__ import annotations

import statistics
from collections import deque

FACTOR = 10.0
FLOOR_SECONDS = 5.0


class StallWatch:
    def __init__(self) -> None:
        self._seen: dict[int, float] = {}  # running trial -> when its last sign of life came
        self._epoch_seconds: deque[float] = deque(maxlen=1000)  # of recently finished trials

    def alive(self, trial_id: int, now: float) -> None:
        """The trial started or sent an epoch."""
        self._seen[trial_id] = now

    def ended(self, trial_id: int, seconds: float, epochs: int) -> None:
        """The trial ended (or its worker was lost) after `epochs` epochs in `seconds`."""
        self._seen.pop(trial_id, None)
        if epochs:
            self._epoch_seconds.append(seconds / epochs)

    def stalled(self, now: float) -> tuple[int, float] | None:
        """(how many trials are stalled, the longest gap in seconds), or None."""
        if not self._seen or not self._epoch_seconds:
            return None
        longest = now - min(self._seen.values())
        if longest <= FLOOR_SECONDS:
            return None
        limit = max(FACTOR * statistics.median(self._epoch_seconds), FLOOR_SECONDS)
        gaps = [now - seen for seen in self._seen.values() if now - seen > limit]
        return (len(gaps), longest) if gaps else None
