"""Optional CPU inference through ONNX Runtime: ``Segmenter(..., runtime="onnx")``.

Install the extra first: ``pip install "segapp[onnx]"`` (onnxruntime, onnx, onnxscript).

The network the Segmenter runs (normally the folded form, :mod:`segapp.model.head_folding`) is exported
once with torch's ``torch.export``-based ONNX exporter, whose optimised graph ONNX Runtime's CPU
provider runs markedly faster than eager PyTorch on small CPUs (figures in docs/performance.md). Exports are
cached by content: the file name is a hash of the weights, the input size and the library
versions, so a second start with the same weights skips the export, and new weights never reuse a
stale graph. Files are written to a temporary name and renamed, so a crash mid-export never leaves
a broken cache entry; an unreadable entry is exported again.

Cache folder: ``$SEGAPP_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/segapp/onnx``, else
``~/.cache/segapp/onnx``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segapp.io.files import atomic_path
from segapp.model.weights import hash_state

log = logging.getLogger(__name__)

ONNX_MISSING = (
    'The ONNX Runtime path needs the optional packages onnxruntime, onnx and onnxscript: pip install "segapp[onnx]" '
    "(or pip install onnxruntime onnx onnxscript), or use the default PyTorch runtime"
)
EXPORT_VERSION = "1"  # bump when the export recipe changes, so old cache files are not reused


class OnnxError(RuntimeError):
    """The ONNX Runtime path cannot run here; the message says what to do instead."""


class OnnxUnavailableError(OnnxError):
    """The optional ONNX packages are missing."""


class OnnxExportError(OnnxError):
    """torch could not export the network to ONNX."""


def _import_onnxruntime() -> Any:
    try:  # the optional extra segapp[onnx]: imported on first use, so a torch-only install works
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxruntime  # type: ignore[import-untyped]  # ships no type information
        import onnxscript  # noqa: F401
    except ImportError:
        raise OnnxUnavailableError(ONNX_MISSING) from None
    return onnxruntime


def onnx_available() -> bool:
    """Whether ``runtime="onnx"`` can work here (the optional packages import)."""
    try:
        _import_onnxruntime()
    except OnnxUnavailableError:
        return False
    return True


def default_cache_dir() -> Path:
    """Where exported graphs are kept (see the module docstring)."""
    if os.environ.get("SEGAPP_CACHE_DIR"):
        return Path(os.environ["SEGAPP_CACHE_DIR"]) / "onnx"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segapp" / "onnx"


def export_key(network: nn.Module, height: int, width: int) -> str:
    """Content hash naming the exported graph: parameters and buffers (names, dtypes, shapes,
    values), the network's class, the input size and the torch / exporter versions."""
    import onnxscript  # the optional extra, present once _import_onnxruntime has passed

    digest = hashlib.sha256()
    header = f"{EXPORT_VERSION}|{type(network).__qualname__}|{height}x{width}|torch {torch.__version__}|onnxscript {onnxscript.__version__}"
    digest.update(header.encode())
    hash_state(digest, network)
    return digest.hexdigest()[:32]


class _LogitsOnly(nn.Module):
    """``pixel_values -> logits`` (the exporter wants tensors out, not a ModelOutput)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=pixel_values).logits


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter: it prints progress lines, warns and logs about things that do not
    concern users (e.g. that torchvision's operators are not registered)."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def export_onnx(network: nn.Module, height: int, width: int, path: Path) -> None:
    """Export ``network`` (``pixel_values (B, 3, height, width) -> logits (B, C, height/4, width/4)``,
    any batch size) to ``path`` atomically. The network must be on the CPU in eval mode."""
    example = torch.zeros(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(path, suffix=".tmp.onnx") as temp, _quiet_exporter():
        try:
            torch.onnx.export(
                _LogitsOnly(network).eval(), (example,), str(temp), dynamo=True, optimize=True,
                input_names=["pixel_values"], output_names=["logits"],
                dynamic_shapes={"pixel_values": {0: batch}}, external_data=False, verbose=False,
            )
        except OSError:
            raise
        except Exception as exc:
            raise OnnxExportError(
                f"The model could not be exported to ONNX with torch {torch.__version__} "
                f"({type(exc).__name__}: {str(exc)[:300]}); use the default torch runtime."
            ) from exc


def _writable_dir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


class OnnxLogits:
    """Callable ``pixel_values (B, 3, H, W) float32 CPU tensor -> logits (B, C, H/4, W/4)``
    computed by ONNX Runtime from the cached export of ``network``.

    Attributes:
        path: the ONNX file used.
        exported: True when this instance had to export (cache miss), False on a cache hit.
        prepare_seconds: export (if any) plus session creation, in seconds.
    """

    def __init__(
        self, network: nn.Module, height: int, width: int, *, cache_dir: Path | None = None, threads: int | None = None
    ) -> None:
        ort = _import_onnxruntime()
        start = time.perf_counter()
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        name = f"segformer-{height}x{width}-{export_key(network, height, width)}.onnx"
        if not _writable_dir(folder) and not (folder / name).is_file():
            # A read-only home (containers): export to the temporary folder instead of failing.
            fallback = Path(tempfile.gettempdir()) / f"segapp-onnx-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
            log.warning("ONNX cache folder %s is not writable; using %s (set SEGAPP_CACHE_DIR)", folder, fallback)
            folder = fallback
        self.path = folder / name
        options = ort.SessionOptions()
        # Follow torch's thread setting (OMP_NUM_THREADS, torch.set_num_threads), so both runtimes
        # use the same share of the machine.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: spinning after each run took the cores
        # from whatever ran next in the process (PyTorch, image encoding, the web server) and
        # measured no faster here (48 vs 52 ms per slice, quiet 2-core machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.exported = False
        session = None
        if self.path.is_file():
            try:
                session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # truncated or foreign file: export again (never a crash)
                log.warning("ignoring unreadable ONNX cache file %s (%s); exporting again", self.path, exc)
        if session is None:
            export_onnx(network, height, width, self.path)
            self.exported = True
            session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.session = session
        self.prepare_seconds = time.perf_counter() - start

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(pixel_values.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(["logits"], {"pixel_values": array})
        return torch.from_numpy(logits)
