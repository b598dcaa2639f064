"""Ray, the engine past one machine: connecting, and running a function over many tasks.

`photoclass[ray]` installs it. `"local"` starts a cluster on this machine (every core);
anything else is a cluster's address (`ray start --head` prints it; `auto` finds the one this
machine belongs to). A Ray session already started in this process (a notebook's, a test's)
is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from .errors import PhotoclassError


def ray_module():
    try:
        import ray
    except ImportError:
        raise PhotoclassError("--ray needs Ray. HINT: pip install 'photoclass[ray]'") from None
    return ray


def connect(address: str):
    """The `ray` module, connected to `address` ("local", "auto" or host:port)."""
    import logging

    ray = ray_module()
    for name in ("ray", "ray.data"):  # photoclass shows its own progress; Ray's lines would bury it
        logging.getLogger(name).setLevel(logging.WARNING)
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise PhotoclassError(
                f"Cannot reach the Ray cluster at {address} ({e}). HINT: `ray start --head` on the "
                "head machine prints its address; or pass --ray local."
            ) from None
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def cluster_cpus() -> int:
    ray = ray_module()
    return max(1, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1)))


class RayPool:
    """`map` like a process pool's, each chunk of tasks a Ray task on the cluster, results in order."""

    def __init__(self, address: str):
        self.address = address  # connected at the first `map`: a warm cache needs no cluster

    def map(self, fn: Callable, tasks: Iterable, chunksize: int = 64) -> Iterator:
        ray = connect(self.address)
        run = ray.remote(_apply)
        tasks = list(tasks)
        refs = [run.remote(fn, tasks[start : start + chunksize]) for start in range(0, len(tasks), chunksize)]
        for ref in refs:  # in order; the later ones keep running meanwhile
            yield from ray.get(ref)

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass  # the cluster outlives the work


def _apply(fn: Callable, tasks: list) -> list:
    return [fn(task) for task in tasks]
