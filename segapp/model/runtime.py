"""Where and how the network runs: the device, ``torch.compile`` and the runtime, with their help texts.

The choices and texts are importable without torch (``--help`` and the web page start fast);
:func:`pick_device` and :func:`synchronize` import torch when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")  # plus explicit ones such as cuda:1
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")  # "off" or a torch.compile mode
RUNTIMES = ("torch", "onnx")  # what runs the network: PyTorch, or ONNX Runtime on the CPU (optional extra)

DEVICE_HELP = f"one of {', '.join(DEVICES)} or e.g. cuda:1; auto: CUDA, else MPS, else CPU (default auto)"
COMPILE_HELP = (
    "torch.compile the model first: " + ", ".join(COMPILE_MODES[1:]) + " (reduce-overhead: CUDA graphs); "
    "compiling takes seconds on a GPU, minutes on a small CPU (default off)"
)
RUNTIME_HELP = (
    "what runs the network: torch (default), or onnx = ONNX Runtime on the CPU, faster there "
    '(needs pip install "segapp[onnx]"; the first use exports and caches the model)'
)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else Apple MPS, else CPU; anything else as given."""
    import torch  # here, not at the top: the help texts above must stay importable without torch

    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so host timers measure it; a no-op elsewhere."""
    import torch  # here, not at the top: see pick_device

    if device.type == "cuda":
        torch.cuda.synchronize(device)
