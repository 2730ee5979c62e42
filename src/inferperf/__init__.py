"""inferperf: measure and predict deep-learning inference performance.

Heavy dependencies (onnx, torch, onnxruntime, torch_geometric) are imported lazily by the modules that
need them, so that importing the package and starting the CLI stays fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
