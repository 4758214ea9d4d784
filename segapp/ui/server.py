"""Starting the app: command line, loading the model once at start-up, private launch settings."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segapp.bundled import MODEL_DIR, default_volume_source
from segapp.cli import (
    WEIGHTS_HELP,
    add_compile_option,
    add_device_option,
    add_runtime_option,
    add_weights_option,
)
from segapp.inference.options import SegmenterOptions
from segapp.ui.page import CONCURRENCY, CUDA_CONCURRENCY, configure_queue
from segapp.ui.theme import load_css, make_theme
from segapp.ui.volume import max_volume_bytes
from segapp.ui.volume_tab import KEYBOARD_JS

if TYPE_CHECKING:
    import gradio as gr

    from segapp.inference.segmenter import Segmenter

log = logging.getLogger("segapp.ui")

WEIGHTS_ENV = "SEGAPP_WEIGHTS"
VOLUME_WEIGHTS_ENV = "SEGAPP_VOLUME_WEIGHTS"
AUTH_ENV = "SEGAPP_AUTH"
SAME = "same"  # as a volume weights source: the slice mode's model


class LazySegmenter:
    """Creates the shared :class:`~segapp.inference.segmenter.Segmenter` once, on first call, from any thread.

    Lets ``app.py`` build its module-level page at import time without loading weights;
    :func:`main` calls it at start-up so the model is loaded and warmed before serving.

    The volume mode's model is a second one with ``same_as`` set to the slice mode's: while its
    source is ``same`` (or the slice model's own source) it hands out that model rather than
    loading a copy.
    """

    def __init__(self, source: str | os.PathLike[str], options: SegmenterOptions | None = None, *,
                 loader: Callable[[str, SegmenterOptions], Segmenter] | None = None,
                 same_as: LazySegmenter | None = None, **overrides: Any) -> None:
        """Remember what to load; nothing is loaded yet.

        Args:
            source: Anything :func:`segapp.load_model` accepts (folder, file, hub id).
            options: How the model runs (:class:`~segapp.inference.options.SegmenterOptions`).
            loader: ``(source, options) -> Segmenter``; defaults to ``Segmenter.from_pretrained``.
            same_as: The model to hand out while ``source`` is :data:`SAME` or that model's source.
            **overrides: Option keywords applied on top of ``options`` (``device="cpu"``, ...).
        """
        self.source = os.fspath(source)
        self.same_as = same_as
        self.options = SegmenterOptions.of(options, **overrides)
        self._loader = loader
        self._segmenter: Segmenter | None = None
        self._lock = threading.Lock()

    @property
    def shares_model(self) -> bool:
        """Whether calls hand out ``same_as``'s model (source :data:`SAME`, or the same source)."""
        other = self.same_as
        return other is not None and (self.source == SAME or _same_source(self.source, other.source))

    @property
    def loaded(self) -> bool:
        """Whether the model has been created (for a shared model: whether ``same_as``'s has)."""
        if self.shares_model:
            assert self.same_as is not None
            return self.same_as.loaded
        return self._segmenter is not None

    def configure(self, *, source: str | os.PathLike[str] | None = None,
                  options: SegmenterOptions | None = None, **overrides: Any) -> None:
        """Change the source or the options (``options``, then option keywords) before the first call.

        Raises:
            RuntimeError: The model is already loaded.
        """
        if self._segmenter is not None:
            raise RuntimeError("the model is already loaded; configure before first use")
        if source is not None:
            self.source = os.fspath(source)
        self.options = SegmenterOptions.of(options or self.options, **overrides)

    def __call__(self) -> Segmenter:
        """The Segmenter, loading it on the first call.

        Raises:
            segapp.model.weights.ModelLoadError: The weights cannot be loaded (retried on the next call).
            ValueError: The source is :data:`SAME` without a model to share.
        """
        if self.shares_model:
            assert self.same_as is not None
            return self.same_as()
        if self.source == SAME:
            raise ValueError(f"weights source {SAME!r} names the slice model, and there is none here")
        if self._segmenter is None:
            with self._lock:
                if self._segmenter is None:
                    loader = self._loader
                    if loader is None:
                        # Here, not at the top: torch stays out of the page's import (app.py builds
                        # the page at import time; the model loads at start-up or first use).
                        from segapp.inference.segmenter import Segmenter

                        loader = Segmenter.from_pretrained
                    self._segmenter = loader(self.source, self.options)
        return self._segmenter


def default_source(default: str | os.PathLike[str]) -> str:
    """Weights source: ``$SEGAPP_WEIGHTS`` when set, else ``default``."""
    return os.environ.get(WEIGHTS_ENV) or os.fspath(default)


def volume_source(weights: str | os.PathLike[str], requested: str | None = None) -> str:
    """The volume mode's weights source.

    ``requested`` (``--volume-weights``) when given, else ``$SEGAPP_VOLUME_WEIGHTS`` when set,
    else the bundled 2.5D model (:func:`segapp.bundled.default_volume_source`) when the slice
    mode serves the bundled weights, else :data:`SAME`: the slice model. Own slice weights
    (``weights``) keep the bundled demonstration 2.5D model out of the volume mode unless asked
    for, so a server of one's own model serves it in both modes.
    """
    chosen = requested or os.environ.get(VOLUME_WEIGHTS_ENV)
    if chosen:
        return chosen
    bundled = default_volume_source()
    if bundled is not None and _same_source(weights, MODEL_DIR):
        return os.fspath(bundled)
    return SAME


def _same_source(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether two weights sources name the same weights: equal text, or the same existing path."""
    a, b = os.fspath(first), os.fspath(second)
    if a == b:
        return True
    try:
        return Path(a).exists() and Path(b).exists() and Path(a).samefile(b)
    except OSError:
        return False


def parse_auth(text: str) -> tuple[str, str]:
    """``USER:PASS`` -> (user, password); the password may contain ``:``.

    Raises:
        ValueError: No ``:`` or an empty user or password (the value is not echoed).
    """
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("authentication must be given as USER:PASSWORD")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    """The ``python app.py`` command line."""
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="GI-tract MRI segmentation web app (stomach, small bowel, large bowel).",
    )
    add_weights_option(parser, default=None, note=f"${WEIGHTS_ENV} or the bundled demonstration weights")
    parser.add_argument(
        "--volume-weights",
        default=None,
        metavar="SOURCE",
        help=f"weights of the volume mode (Volume tab, /segment_volume): {WEIGHTS_HELP}, or '{SAME}' "
        f"for the --weights model; loaded at the first volume (default: ${VOLUME_WEIGHTS_ENV}, else the "
        "bundled 2.5D weights when they are installed and --weights is the bundled default, else "
        f"'{SAME}')",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME; 0.0.0.0 for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: the first free one from 7860, or $GRADIO_SERVER_PORT)",
    )
    parser.add_argument(
        "--share", action="store_true", help="create a public gradio.live link (off by default)"
    )
    parser.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASS",
        help=f"require this login (or set ${AUTH_ENV}); never logged",
    )
    add_device_option(parser)
    add_compile_option(parser)
    add_runtime_option(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help=f"requests handled at once; concurrent ones share forward passes (default "
        f"{CUDA_CONCURRENCY} on CUDA, {CONCURRENCY} otherwise)",
    )
    return parser


def launch_options(
    *,
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    css_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: look, address and the privacy defaults.

    Args:
        host: Address; None keeps Gradio's default (127.0.0.1 unless ``GRADIO_SERVER_NAME``).
        port: Port; None lets Gradio take the first free one from 7860.
        share: Public share link; off unless asked for.
        auth: (user, password) login, or None.
        css_path: The style sheet (``assets/style.css``).

    Raises:
        ValueError: ``$SEGAPP_MAX_VOLUME_MB`` is not a positive number.
    """
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "auth": auth,
        "theme": make_theme(),
        "css": load_css(css_path),
        "js": KEYBOARD_JS,  # the volume tab's arrow and page keys
        # Gradio has one upload bound per app: the volume tab's (one zip or NIfTI may be that
        # large); the slice tab and /segment refuse files over MAX_SLICE_MB themselves.
        "max_file_size": max_volume_bytes(),
        "run_history": False,  # nothing of a run is kept in the browser's storage
        "ssr_mode": False,  # server-side rendering needs Node; the page is fully client-rendered
        "show_error": False,  # only gr.Error messages reach the page, never tracebacks
        "footer_links": ["api", "gradio", "settings"],
    }


def limit_heap_growth(threshold: int = 128 * 1024) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more with its own mapping,
    given back to the system when freed.

    By default glibc raises that threshold after the first large blocks are freed, so later
    per-request buffers (decoded images, activations, PNG encoders) come from the heap, which
    long-lived objects keep from shrinking: under steady load the server's resident memory grew
    about 16 MiB a minute (``scripts/load_test.py --soak-s 600``, bundled weights, CPU), and is
    flat with this. A no-op off glibc or when ``MALLOC_MMAP_THRESHOLD_`` is set.

    Returns:
        Whether the setting was applied.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD


def main(
    demo: gr.Blocks,
    segmenter: LazySegmenter,
    argv: Sequence[str] | None = None,
    *,
    css_path: str | os.PathLike[str] | None = None,
    volume_segmenter: LazySegmenter | None = None,
) -> int:
    """Parse the command line, load the model (before serving), launch the page.

    ``volume_segmenter`` is the page's volume-mode model (``same_as`` = ``segmenter``), set from
    ``--volume-weights`` and loaded at the first volume, not here: a second model costs memory
    only once the volume mode is used.

    Returns:
        The exit status: 0 after the server stops, 2 when the weights cannot be loaded or the
        arguments are wrong.
    """
    args = build_parser().parse_args(argv)
    # Our own messages at INFO; other libraries' (httpx logs every URL it fetches) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("segapp").setLevel(logging.INFO)
    auth_text = args.auth or os.environ.get(AUTH_ENV)
    try:
        auth = parse_auth(auth_text) if auth_text else None
    except ValueError as exc:
        print(f"segapp: {exc}", file=sys.stderr)
        return 2
    if args.concurrency is not None and args.concurrency < 1:
        print("segapp: --concurrency must be at least 1", file=sys.stderr)
        return 2
    options = SegmenterOptions.from_args(args)
    segmenter.configure(source=args.weights, options=options)
    if volume_segmenter is not None:
        volume_segmenter.configure(source=volume_source(segmenter.source, args.volume_weights), options=options)
    limit_heap_growth()  # before the model and the first request allocate

    # Model: loaded and warmed up once, before the first visitor
    log.info("loading weights from %s (device %s)", segmenter.source, segmenter.options.device)
    try:
        loaded = segmenter()
    except Exception as exc:  # ModelLoadError, a bad device name, ...
        hint = ""
        if not Path(segmenter.source).exists():
            hint = (
                "\nGive weights with --weights SOURCE or $SEGAPP_WEIGHTS: a model folder written by "
                "training (python -m segapp.train), a .safetensors file, a Lightning .ckpt, or a "
                "HuggingFace hub id (org/name)."
            )
        print(f"segapp: cannot start, the model could not be loaded.\n{exc}{hint}", file=sys.stderr)
        return 2
    info = loaded.describe()
    # Handlers at once = most requests one forward pass can combine (Segmenter.predict).
    concurrency = args.concurrency or (CUDA_CONCURRENCY if loaded.device.type == "cuda" else CONCURRENCY)
    queued = configure_queue(demo, concurrency)
    log.info("serving %d requests at once, %d more queued at most", concurrency, queued)
    log.info(
        "SegFormer-%s ready on %s, %s runtime (load %.1f s, warm-up %.1f s)",
        str(info["variant"]).upper(),
        info["device"],
        info.get("runtime", "torch"),
        info["load_seconds"],
        info["warmup_seconds"],
    )
    if volume_segmenter is not None and not volume_segmenter.shares_model:
        log.info("volume mode: weights from %s, loaded at the first volume", volume_segmenter.source)
    if "onnx_file" in info:
        log.info(
            "ONNX Runtime graph %s in %.1f s: %s",
            "exported" if info["onnx_exported"] else "taken from the cache",
            info["onnx_prepare_seconds"],
            info["onnx_file"],
        )

    # Serve until Ctrl+C or SIGTERM
    with closing_on_signals(demo):
        demo.launch(
            **launch_options(host=args.host, port=args.port, share=args.share, auth=auth, css_path=css_path)
        )
    return 0


@contextlib.contextmanager
def closing_on_signals(demo: gr.Blocks) -> Iterator[None]:
    """While inside, SIGINT or SIGTERM (docker stop, Spaces, systemd) close ``demo`` completely.

    Gradio's own Ctrl+C handling stops the server but leaves the queue's event streams open, so
    the process ends before the server's shutdown step, which deletes the cached uploads and
    results. ``demo.close()`` ends the streams first, so that step runs; then KeyboardInterrupt
    ends Gradio's wait in ``launch()``. The previous handlers are restored on leaving. Handlers
    can only be set on the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        demo.close()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
