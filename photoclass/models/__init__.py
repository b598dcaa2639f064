"""Model registry, the input contract, and the built-in networks."""

from .input_spec import InputSpec


def __getattr__(name: str):  # the registry imports torch: only when it is asked for
    import importlib

    registry = importlib.import_module(".registry", __name__)
    if name in ("count_parameters", "create_model", "list_models", "model_info", "register_model"):
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["InputSpec", "count_parameters", "create_model", "list_models", "model_info", "register_model"]
