"""photoclass against the same network in Keras, timed side by side on this CPU.

    python benchmarks/keras_compare.py                 # seed-cifar: 50,000 images, 2 epochs each, batch 64
    python benchmarks/keras_compare.py --images 5000   # a quicker look
    python benchmarks/keras_compare.py --model seed-baseline   # the weather photos, 20 epochs, fp32 and bf16

seed-baseline: the classic Keras weather script's network (Rescaling, Conv16/32/64 with
pooling, Dropout 0.2, Dense 512), on the weather photos' training split at 180 px (the
grouped split photoclass makes, the same arrays for both), Adam 1e-3, batch 32, no
augmentation, 20 epochs: photoclass in fp32 and in bf16 (`--precision`), then Keras. The time
compared is the 20 training passes' (photoclass also validates each epoch, untimed; Keras
evaluates the validation photos once at the end).

Keras (TensorFlow CPU from PyPI) is installed by this script into its own virtual
environment (`--work-dir`/kerasvenv), never into the project's. Both train the course's
network (Conv64-Conv64-Pool-Dropout, Conv128-Conv128-Pool-Dropout, Dense 1024-1024-10,
RMSprop 1e-3, 4,597,834 parameters) on the same synthetic pixels, no augmentation, and the
second epoch is timed (the first includes tracing and warm-up). photoclass's time is its
training pass alone, as Keras's `fit` without validation data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

KERAS_SCRIPT = r"""
import json, sys, time
import numpy as np
import keras
from keras import layers
x = np.load(sys.argv[1]); y = np.load(sys.argv[2]); batch = int(sys.argv[3])
model = keras.Sequential([
    keras.Input((32, 32, 3)), layers.Rescaling(1 / 255),
    layers.Conv2D(64, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
    layers.Dropout(0.4),
    layers.Conv2D(128, 3, activation="relu"), layers.Conv2D(128, 3, activation="relu"), layers.MaxPooling2D(),
    layers.Dropout(0.4),
    layers.Flatten(), layers.Dense(1024, activation="relu"), layers.Dense(1024, activation="relu"),
    layers.Dense(10, activation="softmax")])
model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
times = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
model.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[Timer()])
print(json.dumps({"params": model.count_params(), "epoch_s": times, "keras": keras.__version__}))
"""


KERAS_BASELINE = r"""
import json, sys, time
import numpy as np
import keras
from keras import layers
d = np.load(sys.argv[1]); classes = int(d["classes"])
model = keras.Sequential([
    keras.Input((180, 180, 3)), layers.Rescaling(1 / 255),
    layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
    layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
    layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
    layers.Dropout(0.2), layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dense(classes)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
times = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
model.fit(d["x_train"], d["y_train"], batch_size=32, epochs=20, verbose=0, callbacks=[Timer()])
val_acc = model.evaluate(d["x_val"], d["y_val"], verbose=0)[1]
print(json.dumps({"params": model.count_params(), "epoch_s": times, "keras": keras.__version__, "val_acc": val_acc}))
"""
WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def seed_baseline(work: Path, python: Path) -> None:
    """20 epochs of seed-baseline on the weather photos: photoclass fp32, bf16, then Keras."""
    import photoclass

    data = photoclass.prepare(WEATHER, image_size=180, progress=False)
    arrays = work / "weather180.npz"
    split = {name: data.indices(name) for name in ("train", "val")}
    np.savez(
        arrays,
        classes=len(data.classes),
        **{
            f"{k}_{name}": v
            for name, rows in split.items()
            for k, v in (("x", np.stack([data.images[i] for i in rows])), ("y", data.labels[rows]))
        },
    )
    print(
        f"weather at 180 px: {len(split['train'])} training photos, {len(split['val'])} validation; "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    seconds = {}
    for precision in ("fp32", "bf16"):
        result = photoclass.train(
            WEATHER,
            model="seed-baseline",
            epochs=20,
            augment="none",
            early_stopping=0,
            optimizer="adam",
            weight_decay=0.0,
            schedule="none",
            precision=precision,
            out=work / f"baseline-{precision}",
            track=False,
            verbose=False,
            progress=False,
        )
        seconds[precision] = sum(h["seconds"] for h in result.history)
        print(
            f"photoclass seed-baseline {precision}: 20 epochs {seconds[precision]:.1f} s, val acc "
            f"{result.history[-1]['val_acc']:.4f}, test acc {result.test['accuracy']:.4f}",
            flush=True,
        )
    script = work / "keras_seed_baseline.py"
    script.write_text(KERAS_BASELINE)
    out = subprocess.run(
        [str(python), str(script), str(arrays)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if out.returncode:
        raise SystemExit(f"Keras failed:\n{out.stderr[-3000:]}")
    keras = json.loads(out.stdout.strip().splitlines()[-1])
    keras_s = sum(keras["epoch_s"])
    print(
        f"Keras {keras['keras']} seed-baseline ({keras['params']:,} params): 20 epochs {keras_s:.1f} s, "
        f"val acc {keras['val_acc']:.4f}"
    )
    for precision, s in seconds.items():
        print(f"photoclass {precision} / Keras: {s / keras_s:.2f} (target at most 0.7)")


def keras_python(work: Path) -> Path:
    env = work / "kerasvenv"
    python = env / "bin" / "python"
    if not (env / ".installed").exists():
        print(f"installing tensorflow-cpu into {env} (once) ...", flush=True)
        venv.create(env, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "tensorflow-cpu"], check=True)
        (env / ".installed").touch()
    return python


def synthetic(n: int, work: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    np.save(work / "x.npy", x)
    np.save(work / "y.npy", y)
    return work / "x.npy", work / "y.npy"


def photoclass_epochs(x: Path, y: Path, batch: int, work: Path) -> dict:
    """Two epochs of `photoclass train --model seed-cifar` on all the images (a small val split
    and test split are needed; the train pass alone is timed, scaled to all images)."""
    import photoclass

    out = work / "photoclass-run"
    result = photoclass.train(
        x,
        model="seed-cifar",
        epochs=2,
        batch_size=batch,
        augment="none",
        val_size=0.01,
        test_size=0.01,
        early_stopping=0,
        out=out,
        cache_dir=work / "cache",
        track=False,
        verbose=False,
        progress=False,
    )
    rates = [h["images_per_s"] for h in result.history]
    return {"images_per_s": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("seed-cifar", "seed-baseline"), default="seed-cifar")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "photoclass-keras")
    args = parser.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    python = keras_python(work)
    if args.model == "seed-baseline":
        return seed_baseline(work, python)
    x, y = synthetic(args.images, work)
    print(f"{args.images:,} images of 32x32x3, batch {args.batch_size}, {os.cpu_count()} cores", flush=True)

    ours = photoclass_epochs(x, y, args.batch_size, work)
    ours_s = args.images / ours["images_per_s"][-1]
    print(
        f"photoclass seed-cifar: epoch 2 {ours_s:.1f} s ({ours['images_per_s'][-1]:.0f} images/s; "
        f"epoch 1 {args.images / ours['images_per_s'][0]:.1f} s)",
        flush=True,
    )

    script = work / "keras_seed_cifar.py"
    script.write_text(KERAS_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    out = subprocess.run(
        [str(python), str(script), str(x), str(y), str(args.batch_size)], capture_output=True, text=True, env=env
    )
    if out.returncode:
        raise SystemExit(f"Keras failed:\n{out.stderr[-3000:]}")
    keras = json.loads(out.stdout.strip().splitlines()[-1])
    keras_s = keras["epoch_s"][-1]
    print(
        f"Keras {keras['keras']} seed-cifar ({keras['params']:,} params): epoch 2 {keras_s:.1f} s "
        f"({args.images / keras_s:.0f} images/s; epoch 1 {keras['epoch_s'][0]:.1f} s; "
        f"process {time.perf_counter() - started:.0f} s)"
    )
    print(f"photoclass / Keras time per epoch: {ours_s / keras_s:.2f} (target at most 0.7)")


if __name__ == "__main__":
    main()
