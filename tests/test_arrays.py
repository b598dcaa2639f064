"""Image arrays and label files as data: npz, npy, CIFAR python folders, MNIST IDX, CSV.

Every form is built in tmp_path from real pixels (scikit-learn's 8x8 digits, enlarged, and
the example weather photos at 32 px) and must prepare, train and predict like a folder."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import photoclass
from photoclass import PhotoclassError
from photoclass.data.arrays import read_arrays, read_idx

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"
DIGITS_PER_CLASS = 30


@pytest.fixture(scope="module")
def digits():
    """(300, 28, 28) uint8 grey digits, 30 of each class, and their labels 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.concatenate([np.flatnonzero(d.target == c)[:DIGITS_PER_CLASS] for c in range(10)])
    x = np.stack(
        [
            np.asarray(Image.fromarray((d.images[i] * 15).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
            for i in keep
        ]
    )
    return x, d.target[keep].astype(np.int64)


@pytest.fixture(scope="module")
def photos32():
    """The example photos as (N, 32, 32, 3) uint8, with their class names."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))]  # classes mixed in every batch
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR)) for p in paths])
    names = sorted({p.stem.rstrip("0123456789") for p in paths})
    y = np.array([names.index(p.stem.rstrip("0123456789")) for p in paths])
    return x, y, names


def prepared(path, tmp_path, **options):
    return photoclass.prepare(path, image_size=28, cache_dir=tmp_path / "cache", progress=False, **options)


def counts(dataset) -> dict[str, int]:
    return {c: int((dataset.labels == i).sum()) for i, c in enumerate(dataset.classes)}


def test_keras_style_npz_keeps_its_test_split_and_names_rows_by_file_and_index(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "digits.npz", x_train=x[::2], y_train=y[::2], x_test=x[1::2], y_test=y[1::2])
    data = prepared(tmp_path / "digits.npz", tmp_path)
    assert data.classes == [str(c) for c in range(10)]
    assert counts(data) == {str(c): DIGITS_PER_CLASS for c in range(10)}
    test_rows = [r.path for r in data.usable if r.split == "test"]
    assert sorted(test_rows) == sorted(f"digits.npz#x_test/{i}" for i in range(len(x[1::2])))  # kept as given
    assert {r.split for r in data.usable if r.path.startswith("digits.npz#x_train/")} == {"train", "val"}
    assert data.summary["layout"] == "npz" and data.summary["channels"] == 1
    i = next(k for k, r in enumerate(data.usable) if r.path == "digits.npz#x_test/5")
    assert np.array_equal(data.images[i][..., 0], x[1::2][5])  # grey pixels, cached as they were


def test_a_pool_npz_with_class_names_is_split_by_photoclass(tmp_path, photos32):
    x, y, names = photos32
    np.savez(tmp_path / "pool.npz", images=x, labels=y, class_names=np.array(names))
    data = photoclass.prepare(tmp_path / "pool.npz", image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == names
    assert counts(data) == {n: int((y == i).sum()) for i, n in enumerate(names)}
    assert all(len(data.indices(s)) for s in ("train", "val", "test"))
    assert data.summary["channels"] == 3


def test_a_pair_of_npy_files(tmp_path, digits):
    x, y = digits
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x.astype(np.float32) / 255)  # floats in [0, 1] are pixels too
    np.save(folder / "y.npy", y)
    for path in (folder, folder / "x.npy"):
        data = prepared(path, tmp_path)
        assert counts(data) == {str(c): DIGITS_PER_CLASS for c in range(10)}
        assert data.usable[0].path == "x.npy#0"


def _cifar_batch(x: np.ndarray, y: np.ndarray, key: str = "labels") -> dict:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # (N, 3072): the red plane, then green, then blue
    return {
        b"batch_label": b"a batch",
        key.encode(): [int(v) for v in y],
        b"data": rows,
        b"filenames": [f"{i}.png".encode() for i in range(len(x))],
    }


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the CIFAR files are protocol-2 pickles


def test_the_cifar10_python_folder_with_names_from_batches_meta(tmp_path, photos32):
    x, y, names = photos32
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _dump(_cifar_batch(x[:40], y[:40]), folder / "data_batch_1")
    _dump(_cifar_batch(x[40:80], y[40:80]), folder / "data_batch_2")
    _dump(_cifar_batch(x[80:], y[80:]), folder / "test_batch")
    _dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, folder / "batches.meta")
    data = photoclass.prepare(folder, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert data.summary["layout"] == "cifar" and data.classes == names
    assert counts(data) == {n: int((y == i).sum()) for i, n in enumerate(names)}
    assert sorted(r.path for r in data.usable if r.split == "test") == sorted(
        f"test_batch#{i}" for i in range(len(x) - 80)
    )
    i = next(k for k, r in enumerate(data.usable) if r.path == "data_batch_2#3")
    assert np.array_equal(data.images[i], x[43])  # planes put back in (H, W, 3) order


def test_the_cifar100_python_folder_uses_the_fine_labels(tmp_path, photos32):
    x, y, names = photos32
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = [f"fine_{n}" for n in names]
    for name, part in (("train", slice(0, 80)), ("test", slice(80, None))):
        batch = _cifar_batch(x[part], y[part], key="fine_labels")
        batch[b"coarse_labels"] = [0] * len(x[part])
        _dump(batch, folder / name)
    _dump({b"fine_label_names": [n.encode() for n in fine], b"coarse_label_names": [b"all"]}, folder / "meta")
    data = photoclass.prepare(folder, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == fine
    assert counts(data) == {n: int((y == i).sum()) for i, n in enumerate(fine)}
    assert len(data.indices("test")) == len(x) - 80


class _RunsCode:
    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.canary)],))


def test_a_cifar_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, photos32):
    x, y, names = photos32
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    canary = tmp_path / "canary"
    batch = _cifar_batch(x[:40], y[:40])
    batch[b"batch_label"] = _RunsCode(canary)
    _dump(batch, folder / "data_batch_1")
    _dump(_cifar_batch(x[80:], y[80:]), folder / "test_batch")
    _dump({b"label_names": [n.encode() for n in names]}, folder / "batches.meta")
    with pytest.raises(PhotoclassError, match=r"Refused to read .*data_batch_1: it refers to \w+\.call"):
        read_arrays(folder)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoclass",
            "prepare",
            str(folder),
            "--out",
            str(tmp_path / "p"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Refused to read" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not canary.exists() and not (tmp_path / "p").exists()


class _ObjectDtype:  # numpy.dtype rebuilt with an object field: raw bytes would be read as pointers
    def __reduce__(self):
        return (np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))


class _ArrayOfPointers:
    def __reduce__(self):
        reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
        return (reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), _ObjectDtype(), False, b"A" * 8))


@pytest.mark.parametrize(
    "forged",
    [
        {b"label_names": _ArrayOfPointers()},  # crashed the process (memory read through forged pointers)
        {b"label_names": np.array(["a", "b"], dtype=object)},  # objects inside an array
        {b"label_names": np.zeros(3, dtype=[("a", "u1"), ("b", "f4")])},  # fields
    ],
)
def test_numpy_reconstruction_in_a_cifar_pickle_admits_plain_numeric_arrays_only(tmp_path, photos32, forged):
    x, y, _ = photos32
    folder = tmp_path / "cifar"
    folder.mkdir()
    _dump(_cifar_batch(x[:40], y[:40]), folder / "data_batch_1")
    _dump(forged, folder / "batches.meta")
    with pytest.raises(PhotoclassError, match=r"Refused to read .*batches\.meta: it holds .*HINT"):
        read_arrays(folder)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_files_plain_or_gzipped(tmp_path, digits, suffix):
    x, y = digits
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / f"train-images-idx3-ubyte{suffix}", x[:200])
    _write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y[:200])
    _write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", x[200:])
    _write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y[200:])
    assert np.array_equal(read_idx(folder / f"t10k-images-idx3-ubyte{suffix}"), x[200:])
    data = prepared(folder, tmp_path)
    assert data.summary["layout"] == "idx" and counts(data) == {str(c): DIGITS_PER_CLASS for c in range(10)}
    assert len(data.indices("test")) == 100


def test_one_file_named_of_split_arrays_is_that_file_alone(tmp_path, digits):
    x, y = digits
    folder = tmp_path / "parts"
    folder.mkdir()
    for name, part in (("x_train", x[:200]), ("y_train", y[:200]), ("x_test", x[200:]), ("y_test", y[200:])):
        np.save(folder / f"{name}.npy", part)
    _write_idx(folder / "train-images-idx3-ubyte", x[:200])
    _write_idx(folder / "train-labels-idx1-ubyte", y[:200])
    _write_idx(folder / "t10k-images-idx3-ubyte", x[200:])
    _write_idx(folder / "t10k-labels-idx1-ubyte", y[200:])
    for named in ("x_test.npy", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        arrays = read_arrays(folder / named)  # what predict and evaluate --data read: not the training images
        assert len(arrays.names) == len(x) - 200 and set(arrays.given_split) == {None}
        assert np.array_equal(arrays.images[..., 0], x[200:]) and arrays.labels == [str(v) for v in y[200:]]
    assert len(read_arrays(folder / "train-images-idx3-ubyte").names) == 200
    whole = read_arrays(folder / "x_train.npy"), read_arrays(folder, layout="idx")
    assert len(whole[0].names) == 200 and len(whole[1].names) == len(x)


def test_forged_or_broken_array_files_are_one_line_errors(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 10**7)})
    forged = header.getvalue() + bytes(64)  # promises 100 TB, holds 64 bytes
    (tmp_path / "x.npy").write_bytes(forged)
    np.save(tmp_path / "y.npy", np.zeros(3, int))
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as z:
        z.writestr("x.npy", forged)
        z.writestr("y.npy", (tmp_path / "y.npy").read_bytes())
    np.savez(tmp_path / "good.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.zeros(3, int))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:200])
    for path, message in (
        (tmp_path / "x.npy", r"x\.npy: mmap length"),
        (tmp_path / "forged.npz", "declares"),
        (tmp_path / "cut.npz", "zip"),
    ):
        with pytest.raises(PhotoclassError, match=rf"Cannot read .*{path.name}.*{message}.*HINT"):
            read_arrays(path)


def test_class_numbers_are_classes_in_number_order(tmp_path):
    y = np.arange(12).repeat(3)
    np.savez(tmp_path / "twelve.npz", x=np.random.default_rng(0).integers(0, 255, (len(y), 8, 8), np.uint8), y=y)
    data = prepared(tmp_path / "twelve.npz", tmp_path)
    assert data.classes == [str(c) for c in range(12)]  # index i is class i, not '10' at 2
    assert all(data.classes[label] == row.label for label, row in zip(data.labels, data.usable))


def test_byte_string_class_names_read_as_text(tmp_path):
    np.savez(
        tmp_path / "b.npz",
        x=np.zeros((4, 8, 8), np.uint8),
        y=np.array([0, 1, 0, 1]),
        class_names=np.array([b"cat", b"dog"]),
    )
    assert sorted(set(read_arrays(tmp_path / "b.npz").labels)) == ["cat", "dog"]


def test_a_truncated_idx_file_is_a_one_line_error(tmp_path, digits):
    x, y = digits
    _write_idx(tmp_path / "train-images-idx3-ubyte", x)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(PhotoclassError, match="truncated"):
        read_arrays(tmp_path)


def _label_csv(tmp_path, header: list[str], split_of, extra_rows=()) -> tuple[Path, list[str]]:
    """The example photos copied to tmp_path/photos and a CSV of them: (its path, the file names)."""
    photos = tmp_path / "photos"
    shutil.copytree(EXAMPLES, photos)
    files = sorted(p.name for p in photos.glob("*.jpg"))
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, name in enumerate(files):
            writer.writerow([f"photos/{name}", name.rstrip("0123456789.jpg").upper(), split_of(i)])
        writer.writerows(extra_rows)
    return table, files


def test_a_csv_of_labels_with_splits_and_its_own_column_names(tmp_path):
    table, files = _label_csv(
        tmp_path,
        ["file", "weather", "split"],
        lambda i: "test" if i % 5 == 0 else "",
        extra_rows=[["photos/missing.jpg", "RAIN", ""]],
    )
    photos = tmp_path / "photos"
    before = {p.name: p.stat().st_mtime_ns for p in photos.iterdir()}
    with pytest.raises(PhotoclassError, match="no 'path' column.*--path-column"):
        photoclass.prepare(table, cache_dir=tmp_path / "cache", progress=False)
    data = photoclass.prepare(
        table, path_column="file", label_column="weather", image_size=64, cache_dir=tmp_path / "cache", progress=False
    )
    assert data.summary["layout"] == "csv"
    assert data.classes == sorted({n.rstrip("0123456789.jpg").upper() for n in files})
    assert len(data) == len(files) and len(data.indices("test")) == len(files[::5])
    assert data.summary["ignored_reasons"] == {"listed in the CSV but not found": 1}
    assert {p.name: p.stat().st_mtime_ns for p in photos.iterdir()} == before  # the photos untouched


def test_csv_rows_without_a_split_fill_the_splits_no_row_names(tmp_path):
    table, files = _label_csv(tmp_path, ["path", "label", "split"], lambda i: "train" if i < 3 else "")
    data = photoclass.prepare(table, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    sizes = {s: len(data.indices(s)) for s in ("train", "val", "test")}
    assert sizes["test"] >= 0.1 * len(files) and sizes["val"] >= 0.1 * len(files)  # not all blank rows in train
    named = [r.split for r in data.usable if r.path in {f"photos/{n}" for n in files[:3]}]
    assert named == ["train"] * 3


@pytest.mark.slow
def test_seed_mnist_trains_on_grey_arrays_and_predicts_them(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "digits.npz", x_train=x[::2], y_train=y[::2], x_test=x[1::2], y_test=y[1::2])
    result = photoclass.train(
        tmp_path / "digits.npz",
        model="seed-mnist",
        epochs=8,
        augment="none",
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
    )
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["input"]["channels"] == 1 and meta["input"]["size"] == 28
    assert result.test["accuracy"] >= 0.5  # 10 classes: chance is 0.1
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoclass",
            "predict",
            str(tmp_path / "run"),
            str(tmp_path / "digits.npz"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    predictions = json.loads(out.stdout)
    assert len(predictions) == len(x) and predictions[0]["path"].endswith("digits.npz#x_train/0")
    right = sum(p["label"] == str(label) for p, label in zip(predictions, np.concatenate([y[::2], y[1::2]])))
    assert right / len(x) >= 0.5
    report = (tmp_path / "run" / "report.html").read_text()
    assert "photo not found" not in report  # thumbnails come from the arrays
    assert "279,882 parameters" in report and "1x28x28 input" in report  # the layer table of `models seed-mnist`


@pytest.mark.slow
def test_seed_cifar_trains_on_colour_arrays_and_exports_to_onnx(tmp_path, photos32):
    x, y, names = photos32
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _dump(_cifar_batch(x[:80], y[:80]), folder / "data_batch_1")
    _dump(_cifar_batch(x[80:], y[80:]), folder / "test_batch")
    _dump({b"label_names": [n.encode() for n in names]}, folder / "batches.meta")
    result = photoclass.train(
        folder,
        model="seed-cifar",
        epochs=3,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
    )
    assert result.test["count"] == len(x) - 80
    from photoclass.inference.export import export_onnx
    from photoclass.inference.predictor import open_predictor

    export_onnx(tmp_path / "run")
    torch_top = [p.label for p in open_predictor(tmp_path / "run").predict([folder])]
    onnx_top = [p.label for p in open_predictor(tmp_path / "run" / "model.onnx", engine="onnx").predict([folder])]
    assert len(torch_top) == len(x) and torch_top == onnx_top


@pytest.mark.slow
def test_a_grey_model_exported_to_onnx_predicts_colour_photos_like_torch(tmp_path, digits):
    x, y = digits
    np.savez(tmp_path / "d.npz", x=x, y=y)
    photoclass.train(
        tmp_path / "d.npz",
        model="seed-mnist",
        epochs=1,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
    )
    from photoclass.inference.export import export_onnx
    from photoclass.inference.predictor import open_predictor

    export_onnx(tmp_path / "run")
    photos = sorted(EXAMPLES.glob("*.jpg"))[:8]  # colour photos, made grey on the way in
    torch_p = [p.top for p in open_predictor(tmp_path / "run").predict(photos)]
    onnx_p = [p.top for p in open_predictor(tmp_path / "run" / "model.onnx", engine="onnx").predict(photos)]
    for a, b in zip(torch_p, onnx_p):
        assert [c for c, _ in a] == [c for c, _ in b]
        assert np.allclose([v for _, v in a], [v for _, v in b], atol=1e-4)


def test_array_twins_are_grouped_but_different_digits_are_not_chained(tmp_path, digits):
    x, y = digits
    rng = np.random.default_rng(0)
    twins = np.clip(x[:10].astype(int) + rng.integers(-3, 4, x[:10].shape), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=np.concatenate([x, x[10:15], twins]), y=np.concatenate([y, y[10:15], y[:10]]))
    data = prepared(tmp_path / "d.npz", tmp_path)
    dup = data.summary["duplicates"]
    assert dup["byte_identical_groups"] == 5 and dup["groups"] >= 15
    assert dup["largest_group"] <= 3 and dup["photos_in_groups"] <= 40  # 300 distinct digits stay apart
    group = {r.path: r.group for r in data.usable}
    assert all(group[f"d.npz#x/{i}"] == group[f"d.npz#x/{len(x) + 5 + i}"] for i in range(10))


def test_sorting_array_images_writes_each_as_a_png_into_its_class_folder(tmp_path, photos32):
    from photoclass.inference.predictor import Prediction
    from photoclass.inference.sort import sort_into

    x, y, names = photos32
    np.savez(tmp_path / "p.npz", x=x, y=y)
    predictions = [
        Prediction(str(tmp_path / "p.npz#x/4"), top=[("rain", 0.9)]),
        Prediction(str(tmp_path / "p.npz#x/4"), top=[("rain", 0.9)]),
    ]
    assert sort_into(predictions, tmp_path / "sorted") == {"rain": 2}
    saved = sorted((tmp_path / "sorted" / "rain").iterdir())
    assert [p.name for p in saved] == ["p.npz_x_4 (1).png", "p.npz_x_4.png"]  # never overwritten
    assert np.array_equal(np.asarray(Image.open(saved[1])), x[4])


def _build(form: str, base: Path, digits, photos32) -> tuple[Path, int]:
    """DATA of the given form from real pixels, and how many images it holds."""
    x, y = digits
    if form in ("npz-keras", "npz-pool"):
        keys = (
            dict(x_train=x[::2], y_train=y[::2], x_test=x[1::2], y_test=y[1::2])
            if form == "npz-keras"
            else dict(images=x, labels=y)
        )
        np.savez(base / "d.npz", **keys)
        return base / "d.npz", len(x)
    if form == "npy":
        np.save(base / "x.npy", x)
        np.save(base / "y.npy", y)
        return base, len(x)
    if form.startswith("idx"):
        suffix = ".gz" if form == "idx-gz" else ""
        for prefix, part in (("train", slice(0, 200)), ("t10k", slice(200, None))):
            _write_idx(base / f"{prefix}-images-idx3-ubyte{suffix}", x[part])
            _write_idx(base / f"{prefix}-labels-idx1-ubyte{suffix}", y[part])
        return base, len(x)
    px, py, names = photos32
    if form == "cifar10":
        _dump(_cifar_batch(px[:80], py[:80]), base / "data_batch_1")
        _dump(_cifar_batch(px[80:], py[80:]), base / "test_batch")
        _dump({b"label_names": [n.encode() for n in names]}, base / "batches.meta")
        return base, len(px)
    if form == "cifar100":
        _dump(_cifar_batch(px[:80], py[:80], key="fine_labels"), base / "train")
        _dump(_cifar_batch(px[80:], py[80:], key="fine_labels"), base / "test")
        _dump({b"fine_label_names": [n.encode() for n in names]}, base / "meta")
        return base, len(px)
    shutil.copytree(EXAMPLES, base / "photos")  # csv
    with open(base / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([f"photos/{p.name}", p.stem.rstrip("0123456789")] for p in sorted(EXAMPLES.glob("*.jpg")))
    return base / "labels.csv", len(list(EXAMPLES.glob("*.jpg")))


FORMS = ["npz-keras", "npz-pool", "npy", "idx", "idx-gz", "cifar10", "cifar100", "csv"]


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_every_form_trains_end_to_end_and_predicts(tmp_path, digits, photos32, form):
    (tmp_path / "data").mkdir()
    data, count = _build(form, tmp_path / "data", digits, photos32)
    result = photoclass.train(
        data,
        model="compact-cnn",
        image_size=32,
        epochs=1,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        threads=1,
    )
    split = {r["split"] for r in csv.DictReader(open(tmp_path / "run" / "split.csv"))}
    assert split == {"train", "val", "test"} and result.test["count"] > 0
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["input"]["channels"] == (1 if form in ("npz-keras", "npz-pool", "npy", "idx", "idx-gz") else 3)
    predictions = photoclass.predict(tmp_path / "run", [data])
    expected = count if form != "csv" else 0  # a CSV is not an image: predict takes the photos themselves
    assert len([p for p in predictions if not p.error]) == expected


def test_a_photo_folder_with_train_and_test_folders_is_not_taken_for_cifar(tmp_path):
    from photoclass.data.arrays import array_layout

    for split in ("train", "test"):
        for cls, photo in zip(("cloudy", "rain"), sorted(EXAMPLES.glob("*.jpg"))[:2]):
            (tmp_path / split / cls).mkdir(parents=True)
            shutil.copy(photo, tmp_path / split / cls / photo.name)
    (tmp_path / "meta").write_text("notes about the photos")
    assert array_layout(tmp_path) is None
    assert (
        photoclass.prepare(tmp_path, image_size=32, cache_dir=tmp_path.parent / "cache", progress=False).summary[
            "layout"
        ]
        == "split"
    )


def test_csv_rows_follow_symlinks_only_when_asked_and_rows_outside_its_folder_are_noted(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(sorted(EXAMPLES.glob("*.jpg"))[0], outside / "target.jpg")
    shutil.copy(sorted(EXAMPLES.glob("*.jpg"))[1], outside / "dotdot.jpg")
    (tmp_path / "link.jpg").symlink_to(outside / "target.jpg")
    table, files = _label_csv(
        tmp_path,
        ["path", "label", "split"],
        lambda i: "",
        extra_rows=[
            ["link.jpg", "CLOUDY", ""],
            ["elsewhere/../elsewhere/dotdot.jpg", "RAIN", ""],
            [str(outside / "dotdot.jpg"), "RAIN", ""],
        ],
    )
    data = photoclass.prepare(table, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert len(data) == len(files) + 1  # dotdot.jpg once (listed twice), the link not at all
    assert (
        data.summary["ignored_reasons"]["reached through a symbolic link (followed only with --follow-symlinks)"] == 1
    )
    followed = photoclass.prepare(
        table, image_size=32, cache_dir=tmp_path / "cache", progress=False, follow_symlinks=True
    )
    assert len(followed) == len(files) + 2
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "labels.csv").write_text(
        "path,label\n" + "".join(f"../photos/{n},{n.rstrip('0123456789.jpg')}\n" for n in files)
    )
    noted = photoclass.prepare(inside / "labels.csv", image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert any(f"{len(files)} row(s) of labels.csv name files outside its folder" in n for n in noted.summary["notes"])


def test_arrays_beside_photos_leave_the_folder_a_photo_set_unless_asked_for(tmp_path, digits):
    x, y = digits
    photos = tmp_path / "photos"
    shutil.copytree(EXAMPLES, photos)
    np.save(photos / "x.npy", x[:40])
    np.save(photos / "y.npy", y[:40])
    data = prepared(photos, tmp_path)
    assert data.summary["layout"] == "flat" and len(data) == len(list(EXAMPLES.glob("*.jpg")))
    arrays = prepared(photos, tmp_path, layout="npy")
    assert arrays.summary["layout"] == "npy" and len(arrays) == 40
    assert arrays.summary["channels"] == 1 and arrays.usable[0].path == "x.npy#0"


def test_a_folder_prepared_from_a_csv_trains_from_that_csv(tmp_path):
    table, files = _label_csv(tmp_path, ["path", "label"], lambda i: "")
    photoclass.prepare(table, out=tmp_path / "prepared", image_size=32, cache_dir=tmp_path / "cache", progress=False)
    result = photoclass.train(
        tmp_path / "prepared",
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    assert json.loads((tmp_path / "run" / "data.json").read_text())["layout"] == "csv"
    assert result.test["count"] > 0
    again = photoclass.evaluate(tmp_path / "run")  # beside the CSV, not inside its data: allowed
    assert again["test"]["count"] == result.test["count"]
