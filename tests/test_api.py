"""The public API shows its real parameters, and `import photoclass` stays light."""

import dataclasses
import inspect
import subprocess
import sys

import pytest

import photoclass
from photoclass import PrepareConfig, TrainConfig


def test_train_lists_every_option_with_its_default():
    parameters = inspect.signature(photoclass.train).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert list(parameters)[:3] == ["data", "model", "out"]
    seen = {"model"}  # train's own `model` also takes an nn.Module
    for config in (TrainConfig, PrepareConfig):  # an option of both is train's (image_size: the model's own)
        for field in dataclasses.fields(config):
            if field.name not in seen:
                assert parameters[field.name].default == getattr(config(), field.name), field.name
                assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY
                seen.add(field.name)
    assert parameters["image_size"].default is None
    assert photoclass.train is __import__("photoclass.workflows.train", fromlist=["train"]).train


def test_the_other_workflows_show_what_they_take():
    audit = inspect.signature(photoclass.audit).parameters  # every photo, at the model's own size
    assert not {"image_size", "val_size", "test_size", "split", "fold"} & set(audit)
    assert {"folds", "seed", "label_regex", "min_side"} <= set(audit)
    assert {"steps", "start_lr", "lr", "batch_size"} <= set(inspect.signature(photoclass.lr_find).parameters)
    sweep = inspect.signature(photoclass.sweep).parameters
    assert "train" not in sweep and {"trials", "space", "storage"} <= set(sweep)
    assert list(inspect.signature(photoclass.evaluate).parameters)[:2] == ["run", "data"]
    assert {"train", "sweep", "audit", "evaluate", "load", "report"} <= set(dir(photoclass))
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        photoclass.trian


def test_importing_photoclass_leaves_torch_until_a_workflow_is_used():
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, photoclass; print('torch' in sys.modules); photoclass.train; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["False", "True"]
