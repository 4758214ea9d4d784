"""Run-time choices the tools share, importable without torch (the web page loads fast)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")  # plus explicit ones such as cuda:1
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # "off" or a torch.compile mode
RUNTIMES = ("torch", "onnx")  # what runs the network: PyTorch, or ONNX Runtime on the CPU (optional extra)
