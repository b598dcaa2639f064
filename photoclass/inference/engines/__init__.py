"""The engines: PyTorch, ONNX Runtime, OpenVINO, LiteRT, registered here in the order of the
CLI's choices; `register_engine` adds another (base.py says what an engine is)."""

from . import litert, onnx, openvino, pytorch
from .base import (
    Engine,
    engine_for_file,
    engine_names,
    engines,
    get_engine,
    register_engine,
    unregister_engine,
)

for _engine in (pytorch.ENGINE, onnx.ENGINE, openvino.ENGINE, litert.ENGINE):
    register_engine(_engine)

__all__ = ["Engine", "engine_for_file", "engine_names", "engines", "get_engine", "register_engine", "unregister_engine"]
