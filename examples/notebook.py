# %% [markdown]
# # photoclass in a notebook
# Prepare the example photos, train two models, compare them, pick one, predict.
# Runs as a script (`python examples/notebook.py`) or cell by cell in Jupyter or VS Code
# (the `# %%` markers). Everything it writes goes under `notebook-output/` in the working folder.

# %%
from pathlib import Path

import photoclass

PHOTOS = Path(__file__).resolve().parent / "weather" if "__file__" in globals() else Path("examples/weather")
OUT = Path("notebook-output")
TRACKING = f"sqlite:///{OUT / 'mlflow.db'}"  # a local MLflow store beside the runs

# %% [markdown]
# ## Prepare: scan, check, deduplicate, split (seeded, duplicates kept in one split)

# %%
data = photoclass.prepare(PHOTOS, out=OUT / "prepared")
data  # in Jupyter: a table of photos per class and split

# %% [markdown]
# ## Train two models: a small CNN from scratch, and pretrained EfficientNet-Lite0 features

# %%
small = photoclass.train(
    PHOTOS, model="compact-cnn", image_size=96, epochs=12, out=OUT / "runs" / "compact-cnn", track=TRACKING
)
pretrained = photoclass.train(
    PHOTOS,
    model="efficientnet-lite0-ms",  # its classifier: a cross-validated regression
    out=OUT / "runs" / "efficientnet-lite0-ms",
    track=TRACKING,
)
small, pretrained

# %% [markdown]
# ## Compare: the leaderboard, one page with both runs, and the selection rule

# %%
board = photoclass.leaderboard(OUT / "runs")
print(board)
print("comparison page:", photoclass.compare([small.path, pretrained.path], OUT / "compare.html"))
choice = photoclass.select(OUT / "runs", tolerance=0.01)
print(choice)

# %% [markdown]
# ## Predict with the chosen run

# %%
for p in photoclass.predict(choice.winner.path, sorted(PHOTOS.glob("rain*.jpg"))[:3]):
    print(f"{Path(p.path).name:<14} {p.label:<8} {p.confidence:.2f}")
