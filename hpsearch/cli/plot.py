"""`hpsearch plot`: PNGs of a study's results (matplotlib with the Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpsearch.cli.options import ResultsDbOpt, StudyArg
from hpsearch.cli.report import err, out
from hpsearch.errors import HpsearchError
from storage import DEFAULT_DB, StorageError


def plot(
    study: StudyArg,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the PNG files.", show_default=False)
    ],
    db: ResultsDbOpt = DEFAULT_DB,
    top: Annotated[int, typer.Option(min=1, help="Trials in the learning-curve plots.")] = 10,
    trial: Annotated[
        int | None,
        typer.Option(
            "--trial",
            help="first_layer.png of this trial (its id) instead of the best and a poor trial.",
        ),
    ] = None,
) -> None:
    """Metric vs each parameter, learning curves, train-val gap, update ratios, activations,
    and the first layer's weights of the best and a poor trial (from kept checkpoints)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise HpsearchError(f"--out {out_dir}: exists and is not a directory")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from hpsearch import plots
    except ImportError as exc:
        raise HpsearchError(f"plot needs matplotlib: pip install matplotlib ({exc})") from None
    from hpsearch.lookup import study_from_arg

    record = study_from_arg(db, study)
    figures, notes = plots.build_figures(plots.load_plot_data(db, record, top))
    try:
        panels = plots.first_layer_panels(db, record, trial, _spec_directory(study))
        figures["first_layer.png"] = plots.first_layer_figure(panels)
    except (HpsearchError, StorageError) as exc:
        if trial is not None:
            raise
        notes.append(f"first_layer.png skipped: {exc}")
    try:
        written = plots.save_figures(figures, out_dir)
    except OSError as exc:
        raise HpsearchError(f"--out {out_dir}: cannot write ({exc.strerror or exc})") from None
    for note in notes:
        err.print(f"note: {note}", markup=False)
    for path in written:
        out.print(str(path), markup=False)


def _spec_directory(study: str) -> Path | None:
    """Where a spec's own trainable module lives (the study named by its spec file)."""
    path = Path(study)
    return path.parent.absolute() if path.suffix == ".toml" and path.is_file() else None


def register(app: typer.Typer) -> None:
    app.command()(plot)
