"""seed-cifar per epoch on 50,000 32x32x3 images: photoclass against the same network in Keras.

    python benchmarks/keras_compare.py                 # 50,000 images, 2 epochs each, batch 64
    python benchmarks/keras_compare.py --images 5000   # a quicker look

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
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

KERAS_SCRIPT = r'''
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
'''


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
    result = photoclass.train(x, model="seed-cifar", epochs=2, batch_size=batch, augment="none",
                              val_size=0.01, test_size=0.01, early_stopping=0, out=out,
                              cache_dir=work / "cache", track=False, verbose=False, progress=False)
    rates = [h["images_per_s"] for h in result.history]
    return {"images_per_s": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "photoclass-keras")
    args = parser.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    python = keras_python(work)
    x, y = synthetic(args.images, work)
    print(f"{args.images:,} images of 32x32x3, batch {args.batch_size}, {os.cpu_count()} cores", flush=True)

    ours = photoclass_epochs(x, y, args.batch_size, work)
    ours_s = args.images / ours["images_per_s"][-1]
    print(f"photoclass seed-cifar: epoch 2 {ours_s:.1f} s ({ours['images_per_s'][-1]:.0f} images/s; "
          f"epoch 1 {args.images / ours['images_per_s'][0]:.1f} s)", flush=True)

    script = work / "keras_seed_cifar.py"
    script.write_text(KERAS_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    out = subprocess.run([str(python), str(script), str(x), str(y), str(args.batch_size)], capture_output=True,
                         text=True, env=env)
    if out.returncode:
        raise SystemExit(f"Keras failed:\n{out.stderr[-3000:]}")
    keras = json.loads(out.stdout.strip().splitlines()[-1])
    keras_s = keras["epoch_s"][-1]
    print(f"Keras {keras['keras']} seed-cifar ({keras['params']:,} params): epoch 2 {keras_s:.1f} s "
          f"({args.images / keras_s:.0f} images/s; epoch 1 {keras['epoch_s'][0]:.1f} s; "
          f"process {time.perf_counter() - started:.0f} s)")
    print(f"photoclass / Keras time per epoch: {ours_s / keras_s:.2f} (target at most 0.7)")


if __name__ == "__main__":
    main()
