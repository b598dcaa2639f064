"""Kinds of task: what a model's outputs mean (one class per photo, ...)."""

from .base import DEFAULT, TASKS, Task, get_task, register_task, task_for, task_names, task_of, unregister_task
from .multi_label import MULTI_LABEL, MultiLabel
from .single_label import SINGLE_LABEL, SingleLabel

__all__ = [
    "DEFAULT",
    "MULTI_LABEL",
    "MultiLabel",
    "SINGLE_LABEL",
    "TASKS",
    "SingleLabel",
    "Task",
    "get_task",
    "register_task",
    "task_for",
    "task_names",
    "task_of",
    "unregister_task",
]
