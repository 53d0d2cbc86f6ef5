"""Study spec validation: every rule names the file, the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.space import Choice, Numeric
from hpsearch.spec import load_spec

GOOD = """
name = "s"
trainable = "noop"
metric = "val_acc"
mode = "max"

[fixed]
hidden = 100

[space]
lr = { type = "loguniform", low = 1e-6, high = 1e1 }
dropout = { type = "uniform", low = 0.0, high = 0.7, min = 0.0, max = 0.95 }
batch = { type = "lograndint", low = 16, high = 512 }
layers = { type = "randint", low = 1, high = 3 }
update = { type = "choice", values = ["sgd", "adam"] }

[coarse]
trials = 100
epochs = 3

[fine]
trials = 30
epochs = 20
top = 10
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_spec_parses_every_type(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "s" and spec.metric == "val_acc" and spec.mode == "max"
    assert spec.fixed == {"hidden": 100}
    dims = spec.space.dimensions
    assert dims["lr"] == Numeric("loguniform", 1e-6, 10.0)
    assert dims["dropout"] == Numeric("uniform", 0.0, 0.7, 0.0, 0.95)
    assert dims["batch"] == Numeric("lograndint", 16, 512)
    assert dims["update"] == Choice(("sgd", "adam"))
    assert (spec.coarse.trials, spec.coarse.epochs) == (100, 3)
    assert (spec.fine.trials, spec.fine.epochs, spec.fine.top) == (30, 20, 10)
    assert list(dims) == ["lr", "dropout", "batch", "layers", "update"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'lr = { type = "loguniform", low = 1e-6',
            'lr = { type = "loguniform", low = 0.0',
            "study.toml: space.lr: loguniform needs low > 0, got low=0.0",
        ),
        (
            "low = 16, high = 512",
            "low = 600, high = 512",
            "study.toml: space.batch: needs low < high, got low=600 high=512",
        ),
        (
            'values = ["sgd", "adam"]',
            "values = []",
            "study.toml: space.update: choice needs a non-empty list `values`",
        ),
        ("trials = 100", "trails = 100", "study.toml: coarse.trails: unknown key"),
        ("trials = 100", "trials = 0", "study.toml: coarse.trials: must be > 0, got 0"),
        ("epochs = 3", "epochs = -2", "study.toml: coarse.epochs: must be > 0, got -2"),
        ("epochs = 3", 'epochs = "3"', "study.toml: coarse.epochs: must be an integer, got '3'"),
        ('mode = "max"', 'mode = "maximize"', "study.toml: mode: must be 'min' or 'max'"),
        ('name = "s"', 'nmae = "s"', "study.toml: nmae: unknown key"),
        ('type = "uniform"', 'type = "normal"', "study.toml: space.dropout.type: must be one of"),
        ("max = 0.95", "max = 0.5", "study.toml: space.dropout: needs high <= max"),
        ("low = 1, high = 3", "low = 1.5, high = 3", "randint needs integer bounds, got low=1.5"),
        ("low = 1, high = 3", "low = 1, hgih = 3", "study.toml: space.layers.hgih: unknown key"),
        ("top = 10", "top = 10\nedge = 0.7", "study.toml: fine.edge: must be between 0 and 0.5"),
        ("hidden = 100", "lr = 0.1", "study.toml: fixed.lr: is also in [space]"),
        ('metric = "val_acc"', "", "study.toml: metric: missing key"),
        (
            'trainable = "noop"',
            'trainable = "noop"\npredict = "mymodule"',
            "study.toml: predict: must be 'package.module:function', got 'mymodule'",
        ),
        (
            'trainable = "noop"',
            "trainable = 3",
            "study.toml: trainable: must be a non-empty string",
        ),
    ],
)
def test_each_rule_names_file_key_and_value(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_empty_binary_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "absent.toml")
    with pytest.raises(SpecError, match="spec file is empty"):
        load_spec(write(tmp_path, "  \n"))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SpecError, match="not a text file"):
        load_spec(binary)
    with pytest.raises(SpecError, match="study.toml: TOML syntax error"):
        load_spec(write(tmp_path, GOOD.replace("[fine]", "[fine")))
    with pytest.raises(SpecError, match="space: missing table"):
        load_spec(write(tmp_path, 'name = "x"\ntrainable = "noop"\nmetric = "m"\n'))


def test_sections_default_when_absent(tmp_path: Path) -> None:
    text = GOOD.split("[coarse]")[0]
    spec = load_spec(write(tmp_path, text))
    assert spec.coarse.trials > 0 and spec.fine.top > 0 and spec.seed == 0


def test_predict_defaults_to_the_built_in_models_own_and_is_imported_when_used(
    tmp_path: Path,
) -> None:
    from hpsearch.errors import TrainableError
    from hpsearch.registry import resolve_predict

    assert load_spec(write(tmp_path, GOOD)).predict is None  # noop predicts nothing
    mlp = load_spec(write(tmp_path, GOOD.replace('"noop"', '"mlp"')))
    assert mlp.predict == "trainables.mlp:predict"
    named = load_spec(
        write(tmp_path, GOOD.replace('"noop"', '"noop"\npredict = "spec_mine:predict"'))
    )
    assert named.predict == "spec_mine:predict"  # checked for form only: imported by `ensemble`
    with pytest.raises(
        TrainableError, match="predict 'spec_mine:predict': module .spec_mine. not found"
    ):
        resolve_predict("spec_mine:predict", tmp_path)
    (tmp_path / "spec_mine.py").write_text("def predict(params):\n    return None\n")
    with pytest.raises(TrainableError, match="must accept predict.params, ., checkpoint_dir"):
        resolve_predict("spec_mine:predict", tmp_path)
