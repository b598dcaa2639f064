"""The engine registry: an engine registered through it alone (here a toy: the run's model as a
`torch.export` program in a .pt2 file) is exported and checked, found by its file, chosen by
`--engine` and `auto`, and predicts as PyTorch does, with no other edit; unregistered, it is gone."""

import json

import numpy as np
import pytest

from photoclass.cli import main
from photoclass.core.errors import PhotoclassError
from photoclass.inference.engines import (
    Engine,
    engine_for_file,
    engine_names,
    get_engine,
    register_engine,
    unregister_engine,
)
from photoclass.inference.engines.exportable import exportable, quiet_exporter
from photoclass.inference.engines.exported import preprocess, read_contract
from photoclass.inference.export import export
from photoclass.inference.prediction import BasePredictor
from photoclass.inference.predictor import open_predictor

from conftest import save, synthetic_photo, train_tiny_run

pytestmark = pytest.mark.trains
torch = pytest.importorskip("torch")

META = "photoclass.json"  # the extra file of the .pt2 archive that holds photoclass's metadata


def load_program(path):
    extra = {META: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program, json.loads(extra[META])


def convert(run, folder, *, precision, calibration, reference):
    model, spec, _, metadata = exportable(run)
    sample = torch.rand(2, spec.channels, spec.size, spec.size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with quiet_exporter():
        program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
    made = folder / "made.pt2"
    torch.export.save(program, str(made), extra_files={META: json.dumps(metadata)})
    return made


def stamp(path, found):
    program, metadata = load_program(path)
    torch.export.save(program, str(path), extra_files={META: json.dumps({**metadata, "verified": json.dumps(found)})})


class ProgramPredictor(BasePredictor):
    engine = "pt2"

    def __init__(self, path, *, batch_size=16, unknown=True, threads=0):
        program, metadata = load_program(path)
        read_contract(self, metadata, path, "pt2", batch_size)
        self.module = program.module()
        self.with_score = unknown and "outliers" in metadata
        if self.with_score:
            self.threshold = float(json.loads(metadata["outliers"])["threshold"])

    def outputs(self, pixels):
        with torch.no_grad():
            found = self.module(torch.from_numpy(preprocess(pixels, self.mean, self.std)))
        logits, scores = found if isinstance(found, tuple) else (found, None)
        return logits.numpy(), scores.numpy() if self.with_score and scores is not None else None


PT2 = Engine(
    name="pt2",
    title="torch.export",
    open=ProgramPredictor,
    precisions=("fp32",),
    file_name="model{tag}.pt2",
    recognizes=lambda path: path.suffix == ".pt2",
    convert=convert,
    read_metadata=lambda path: load_program(path)[1],
    stamp=stamp,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("registry"), per_class=8, epochs=1)


@pytest.fixture
def photos(tmp_path):
    return [save(synthetic_photo(100 + i, cls=i % 3), tmp_path / f"p{i}.jpg") for i in range(6)]


def test_a_registered_engine_exports_and_predicts_as_pytorch_does(run, photos, capsys):
    builtin = engine_names()
    register_engine(PT2)
    try:
        found = export(run, "pt2", progress=False)
        assert found["kept"] and found["format"] == "pt2" and found["engine"] == "pt2"
        assert found["path"] == str(run / "model.pt2") and found["max_abs_logit_diff"] <= 1e-4
        assert engine_for_file(run / "model.pt2") is PT2

        torch_side = open_predictor(run, engine="torch", device="cpu").predict(photos, top_k=3)
        for predictor in (
            open_predictor(run / "model.pt2"),  # found by its file
            open_predictor(run, engine="pt2"),  # the run's verified export
            open_predictor(run, engine="auto", device="cpu"),  # the only verified export: the fastest
        ):
            assert predictor.engine == "pt2"
            ours = predictor.predict(photos, top_k=3)
            assert [p.label for p in ours] == [p.label for p in torch_side]
            got = np.array([[c for _, c in p.top] for p in ours])
            want = np.array([[c for _, c in p.top] for p in torch_side])
            np.testing.assert_allclose(got, want, atol=1e-5)

        capsys.readouterr()
        assert main(["export", str(run), "--format", "pt2"]) == 0  # the CLI's choices are the registry's
        assert "kept" in capsys.readouterr().out
        assert main(["predict", str(run / "model.pt2"), *map(str, photos), "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["label"] for r in rows] == [p.label for p in torch_side]
    finally:
        unregister_engine("pt2")
    assert engine_names() == builtin and engine_for_file(run / "model.pt2") is None
    with pytest.raises(PhotoclassError, match="Unknown export format 'pt2'"):
        export(run, "pt2")


def test_names_are_checked_once_in_the_registry():
    with pytest.raises(PhotoclassError, match="The engine name 'onnx' is taken"):
        register_engine(Engine(name="onnx", title="another ONNX", open=ProgramPredictor))
    with pytest.raises(PhotoclassError, match=r"Unknown engine 'pt2'. HINT: use one of torch, onnx, openvino, litert"):
        get_engine("pt2")
    assert get_engine("openvino").int8 and "bf16" in get_engine("openvino").precisions
    assert not get_engine("torch").exports and get_engine("torch").gpu
