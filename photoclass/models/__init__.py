"""Model registry and the built-in networks."""
from .registry import InputSpec, count_parameters, create_model, list_models, model_info, register_model

__all__ = ["InputSpec", "count_parameters", "create_model", "list_models", "model_info", "register_model"]
