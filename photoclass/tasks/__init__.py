"""Kinds of task: what a model's outputs mean (one class per photo, ...)."""

from .base import DEFAULT, TASKS, Task, get_task, register_task, task_names, task_of, unregister_task
from .single_label import SINGLE_LABEL, SingleLabel

__all__ = [
    "DEFAULT",
    "SINGLE_LABEL",
    "TASKS",
    "SingleLabel",
    "Task",
    "get_task",
    "register_task",
    "task_names",
    "task_of",
    "unregister_task",
]
