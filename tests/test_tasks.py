"""The task object: what a model's outputs mean, asked by every stage; a new task is one new room."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import photoclass
from photoclass.core.errors import PhotoclassError
from photoclass.tasks import SINGLE_LABEL, SingleLabel, get_task, register_task, task_names, unregister_task

from conftest import make_flat


def test_single_label_gives_the_same_answer_in_torch_and_numpy():
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 5, (20,), generator=torch.Generator().manual_seed(1))
    p_torch, p_numpy = SINGLE_LABEL.activate(logits), SINGLE_LABEL.activate(logits.numpy())
    assert np.allclose(p_torch.numpy(), p_numpy, atol=1e-6) and np.allclose(p_numpy.sum(1), 1)
    assert (SINGLE_LABEL.decide(p_numpy) == SINGLE_LABEL.decide(logits).numpy()).all()
    summary = SINGLE_LABEL.summary(logits, labels)
    assert summary["count"] == 20
    assert summary["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    metrics = SINGLE_LABEL.metrics(logits, labels, list("abcde"), top_k=2, temperature=1.0)
    assert metrics["error"] == pytest.approx(1 - metrics[SINGLE_LABEL.headline])
    wrong = SINGLE_LABEL.mistakes(logits, labels)
    assert [i for i, _, _ in wrong] == sorted(
        torch.nonzero(logits.argmax(1) != labels).flatten().tolist(), key=lambda i: -float(p_torch[i].max())
    )
    ranked = SINGLE_LABEL.ranked(p_numpy[0], list("abcde"), 3)
    assert [c for c, _ in ranked][0] == "abcde"[int(p_numpy[0].argmax())] and len(ranked) == 3
    assert SINGLE_LABEL.agreement(logits.numpy(), logits.numpy() * 2).all()  # softmax's order is unchanged


def test_an_unknown_task_is_refused_in_one_line_naming_the_known_ones(tmp_path):
    with pytest.raises(PhotoclassError, match="Unknown task 'several'.*single-label"):
        get_task("several")
    data = make_flat(tmp_path / "data", per_class=4)
    with pytest.raises(PhotoclassError, match="Unknown task"):
        photoclass.train(data, out=tmp_path / "run", task="several", verbose=False, progress=False)
    assert not (tmp_path / "run" / "model.json").exists()


class MarginTask(SingleLabel):
    """A toy task: a multi-class hinge loss instead of cross-entropy; the rest as single-label."""

    name = "toy-margin"
    asked: dict = {}  # shared by the fitted copies

    def __init__(self, val_photos: int | None = None):
        self.val_photos = val_photos  # its "decision": how many validation photos it was fitted on

    def _ask(self, what):
        self.asked[what] = self.asked.get(what, 0) + 1

    def fitted(self, logits, labels):
        return MarginTask(len(labels))

    def state(self):
        return {} if self.val_photos is None else {"val_photos": self.val_photos}

    def configured(self, state):
        return MarginTask((state or {}).get("val_photos"))

    def loss_fn(self, **options):
        self._ask("loss_fn")
        return nn.MultiMarginLoss()

    def correct(self, logits, labels):
        self._ask("correct")
        return super().correct(logits, labels)

    def metrics(self, *args, **kwargs):
        self._ask("metrics")
        return super().metrics(*args, **kwargs)

    def activate(self, logits):
        self._ask("activate")
        return super().activate(logits / 2)  # softer probabilities than single-label's


def test_a_new_task_is_one_new_room_registered_alone(tmp_path):
    toy = register_task(MarginTask())
    try:
        assert "toy-margin" in task_names()
        data = make_flat(tmp_path / "data", per_class=8)
        options = dict(model="compact-cnn", image_size=32, epochs=2, threads=1, strategy="scratch", seed=0)
        for name, task in (("toy", "toy-margin"), ("plain", "single-label")):
            photoclass.train(
                data,
                out=tmp_path / name,
                task=task,
                cache_dir=tmp_path / "cache",
                verbose=False,
                progress=False,
                **options,
            )
        assert toy.asked["loss_fn"] >= 1 and toy.asked["correct"] >= 2 and toy.asked["metrics"] == 1
        meta = json.loads((tmp_path / "toy" / "model.json").read_text())
        val_photos = json.loads((tmp_path / "toy" / "test.json").read_text())["val"]["count"]
        assert meta["task"] == "toy-margin" and meta["decision"] == {"val_photos": val_photos}
        plain = json.loads((tmp_path / "plain" / "model.json").read_text())
        assert plain["task"] == "single-label" and "decision" not in plain  # nothing to fit: nothing saved
        # the loss trained on is the toy's: the two runs' training losses differ from the first epoch
        toy_history = (tmp_path / "toy" / "metrics.csv").read_text().splitlines()[1]
        plain_history = (tmp_path / "plain" / "metrics.csv").read_text().splitlines()[1]
        assert toy_history.split(",")[1] != plain_history.split(",")[1]
        # predict reads the task from the run and answers with its probabilities
        from photoclass.inference.predictor import Predictor

        photo = sorted((tmp_path / "data").iterdir())[0]
        predictor = Predictor(tmp_path / "toy", unknown=False)
        assert isinstance(predictor.task, MarginTask) and predictor.task.state() == {"val_photos": val_photos}
        logits, _ = predictor.outputs(predictor.decoded([photo]).__next__()[1])
        (answer,) = predictor.predict([photo], top_k=2)
        expected = SINGLE_LABEL.activate(logits / 2)[0]
        assert answer.confidence == pytest.approx(float(expected.max()), abs=1e-6)
        assert answer.confidence < float(SINGLE_LABEL.activate(logits)[0].max())
    finally:
        unregister_task("toy-margin")
    assert "toy-margin" not in task_names()
