"""Checkpoints on the driver's side: where a trial's files go, what a retry restores, and
which files retention keeps (hpsearch/retention.py decides, this module deletes).

Files are written to the artifact store first (temporary name, then rename) and recorded in
the `checkpoints` table afterwards, all files of one checkpoint in one transaction: a crash in
between leaves files no row names, never a row naming a half-written file. Pruning deletes the
rows first and the files after, for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace

from hpsearch.registry import CHECKPOINT_DIR, RESTORE_DIR, Trainable, checkpoint_keywords
from hpsearch.retention import Kept, to_keep
from hpsearch.runtime.worker import Checkpointed, Drawn, Event
from hpsearch.spec import StudySpec
from storage import (
    ArtifactError,
    ArtifactStore,
    Batch,
    CheckpointRecord,
    Mode,
    Status,
    Store,
    default_location,
    latest_files,
)

PRUNE_SECONDS = 1.0  # retention runs at most this often while a stage goes

EpochValues = list[tuple[int, float | None]]  # (epoch, metric value) of a trial's epochs so far


def checkpointing_wanted(spec: StudySpec, fn: Trainable) -> bool:
    """The spec keeps checkpoints (`keep_trials` > 0) and the trainable writes them."""
    return spec.checkpoints.keep_trials > 0 and CHECKPOINT_DIR in checkpoint_keywords(fn)


def artifact_location(db: str, artifacts: str | None) -> str:
    """`--artifacts`, else the directory beside a SQLite file (a server database needs one)."""
    return artifacts if artifacts else default_location(db)


class Checkpointing:
    """A stage's checkpoints: saved as events arrive, restored on resume, pruned as it goes."""

    def __init__(self, spec: StudySpec, fn: Trainable, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self.study = spec.name
        self.metric = spec.metric
        self.mode = Mode(spec.mode)
        self.keep_trials = spec.checkpoints.keep_trials
        self.keep_epochs = spec.checkpoints.keep_epochs
        self.restores = RESTORE_DIR in checkpoint_keywords(fn)
        self._pruned_at = time.monotonic()

    # -- before the run: the tasks ask for checkpoints, resumed trials restore theirs --------
    def prepare(
        self,
        store: Store,
        stage_id: int,
        tasks: Iterable[Drawn],
        histories: dict[int, EpochValues],
    ) -> Iterator[Drawn]:
        """The tasks with checkpointing on, as they are drawn: each trial that has a checkpoint
        is given its latest (when the trainable restores), and its metric history up to it
        goes to `histories`."""
        latest: dict[int, list[CheckpointRecord]] = {}
        if self.restores:  # retention keeps this small: a few trials' last epochs
            for record in store.stage_checkpoints(stage_id):
                latest.setdefault(record.trial_id, []).append(record)
        for task in tasks:
            if task is None:  # none drawn yet
                yield task
                continue
            task = replace(task, checkpoint=True)
            newest = latest_files(latest.get(task.trial_id, []))
            content = self._read(newest)
            if content is not None:
                last = newest[0]
                task = replace(task, restore=content, restore_epoch=last.epoch)
                histories[task.trial_id] = store.metric_lineage(
                    task.trial_id, self.metric, last.attempt, last.epoch
                )
            yield task

    def _read(self, files: list[CheckpointRecord]) -> dict[str, bytes] | None:
        """The files' content, or None: none, or one missing or changed on disk (never used:
        the trial starts again at epoch 1)."""
        if not files:
            return None
        try:
            return {f.name: self.artifacts.read(f.uri, f.sha256) for f in files}
        except ArtifactError:
            return None

    # -- during the run ------------------------------------------------------------------------
    def save(self, stage_id: int, events: Iterable[Event], batch: Batch) -> None:
        """Write the checkpoints among `events` to the store at once and their rows to `batch`
        (committed with the epoch's metrics: a driver that dies first leaves files, no row)."""
        for event in events:
            if isinstance(event, Checkpointed):
                key = f"{self.study}/{stage_id}/{event.trial_id}/{event.attempt}/{event.epoch}"
                stored = self.artifacts.put(key, event.files)
                batch.checkpoint(event.trial_id, event.attempt, event.epoch, stored)

    def prune_due(self) -> bool:
        return time.monotonic() - self._pruned_at >= PRUNE_SECONDS

    def prune(self, store: Store, stage_id: int) -> int:
        """Delete the stage's checkpoint files retention does not keep (rows, then files);
        returns how many files went."""
        self._pruned_at = time.monotonic()
        valued = store.checkpoint_values(stage_id, self.metric)
        if not valued:
            return 0
        final = store.final_results(r.trial_id for r, _ in valued)
        finished_best = {
            t: (value if status == Status.COMPLETED else None)
            for t, (status, value) in final.items()
        }
        keep = to_keep(
            {Kept(r.trial_id, r.attempt, r.epoch, value) for r, value in valued},
            finished_best,
            self.mode,
            keep_trials=self.keep_trials,
            keep_epochs=self.keep_epochs,
        )
        kept = {(k.trial_id, k.attempt, k.epoch) for k in keep}
        doomed = [r.uri for r, _ in valued if (r.trial_id, r.attempt, r.epoch) not in kept]
        if doomed:
            store.delete_checkpoints(doomed)
            self.artifacts.delete(doomed)
        return len(doomed)
