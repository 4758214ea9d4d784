"""The web app's handlers without a browser: outputs, statistics, errors, re-rendering, start-up."""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from segapp.inference.options import SegmenterOptions
from segapp.inference.render import color_mask
from segapp.inference.segmenter import Segmenter
from segapp.io.readers import read_image
from segapp.labels import LABELS
from segapp.model.weights import ModelLoadError
from segapp.synthetic import generate_slice
from segapp.ui.callbacks import (
    Callbacks,
    OutputFolders,
    ViewState,
    find_examples,
    parse_spacing_text,
)
from segapp.ui.cards import about_markdown
from segapp.ui.page import OUTPUT_SUBDIR, build_demo, in_field_order
from segapp.ui.server import (
    SAME,
    LazySegmenter,
    build_parser,
    launch_options,
    main,
    parse_auth,
    volume_source,
)

STOMACH = LABELS[1]


class CountingSegmenter:
    """Wraps a Segmenter and counts model runs, to prove re-rendering does not run the model."""

    def __init__(self, segmenter) -> None:
        self.inner = segmenter
        self.calls = 0
        self.loaded = segmenter.loaded
        self.processing = segmenter.processing

    def predict(self, image):
        self.calls += 1
        return self.inner.predict(image)

    def describe(self):
        return self.inner.describe()


@pytest.fixture(scope="module")
def phantom16(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 16-bit phantom slice saved under its competition-style name (spacing 1.50 mm)."""
    phantom = generate_slice(3, empty=False)
    path = tmp_path_factory.mktemp("slices") / phantom.file_name
    Image.fromarray(phantom.image16).save(path)
    return path, phantom.image16


@pytest.fixture
def counting(tiny_segmenter) -> CountingSegmenter:
    return CountingSegmenter(tiny_segmenter)


@pytest.fixture
def callbacks(counting: CountingSegmenter, tmp_path: Path) -> Callbacks:
    return Callbacks(counting, output_root=tmp_path / "out")


def _error_text(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value.message)


# --- segmentation ------------------------------------------------------------------------


def test_segment_outputs_match_the_segmenter(callbacks: Callbacks, tiny_segmenter, phantom16) -> None:
    path, image16 = phantom16
    out = callbacks.segment(str(path), "", 0.5, None)
    expected = tiny_segmenter.predict(path)
    height, width = image16.shape

    # The class-id mask file is the prediction, single-channel 8-bit like the training masks.
    with Image.open(out.mask_png) as saved:
        assert saved.mode == "L"
        assert np.array_equal(np.array(saved), expected.mask)
    # Statistics: counts add up to the slice, areas are pixels x 1.5 x 1.5 mm from the file name.
    classes = out.stats["classes"]
    assert sum(c["pixels"] for c in classes.values()) == height * width
    for label in LABELS:
        assert classes[label.name]["pixels"] == expected.stats[label.name].pixels
        assert classes[label.name]["area_mm2"] == pytest.approx(classes[label.name]["pixels"] * 2.25)
    assert out.stats["spacing_mm"] == [1.5, 1.5] and out.stats["spacing_source"] == "from the file name"
    assert json.loads(Path(out.stats_file).read_text()) == out.stats
    # Views: RGB images of the slice's size; the overlay file is the overlay shown.
    for image in (out.overlay, out.mask_view, out.confidence):
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
    with Image.open(out.overlay_png) as saved:
        assert np.array_equal(np.array(saved), out.overlay)
    # The card names each organ with its pixel count, the device and the input depth.
    for label in LABELS:
        assert label.display in out.card
        assert f"{expected.stats[label.name].pixels:,}" in out.card
    assert "cpu" in out.card and "16-bit" in out.card


def test_16bit_upload_arrives_unaltered(callbacks: Callbacks, phantom16) -> None:
    path, image16 = phantom16
    out = callbacks.segment(str(path), "", 0.5, None)
    # Min-max scaled from the raw 16-bit values, not clipped to white as an RGB conversion would.
    lo, hi = int(image16.min()), int(image16.max())
    expected = np.rint((image16.astype(np.float64) - lo) * 255 / (hi - lo)).astype(np.uint8)
    assert np.array_equal(out.state.gray, expected)
    assert out.stats["bit_depth"] == 16
    assert 20 < out.state.gray.mean() < 200


def test_typed_spacing_overrides_the_file_name(callbacks: Callbacks, phantom16) -> None:
    path, _ = phantom16
    out = callbacks.segment(str(path), "0.5 x 2", 0.5, None)
    assert out.stats["spacing_mm"] == [0.5, 2.0] and out.stats["spacing_source"] == "entered"
    for c in out.stats["classes"].values():
        assert c["area_mm2"] == pytest.approx(c["pixels"] * 1.0)


def test_unknown_spacing_gives_no_areas(callbacks: Callbacks, tmp_path: Path, phantom16) -> None:
    _, image16 = phantom16
    path = tmp_path / "upload.png"
    Image.fromarray(image16).save(path)
    out = callbacks.segment(str(path), "", 0.5, None)
    assert out.stats["spacing_mm"] is None and out.stats["spacing_source"] is None
    assert all(c["area_mm2"] is None for c in out.stats["classes"].values())
    assert "Enter the pixel spacing" in out.card


def test_outputs_never_carry_the_upload_name(callbacks: Callbacks, tmp_path: Path, phantom16) -> None:
    _, image16 = phantom16
    path = tmp_path / "patient_DOE_JOHN_1234.png"
    Image.fromarray(image16).save(path)
    out = callbacks.segment(str(path), "", 0.5, None)
    for file in (out.mask_png, out.overlay_png, out.stats_file):
        assert "DOE" not in file
    assert "DOE" not in json.dumps(out.stats) and "DOE" not in out.card
    # Each request writes into its own folder.
    again = callbacks.segment(str(path), "", 0.5, None)
    assert Path(again.mask_png).parent != Path(out.mask_png).parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("   ", None),
        (None, None),
        ("1.5", (1.5, 1.5)),
        ("1.5 x 1.63", (1.5, 1.63)),
        ("1.5×1.63 mm", (1.5, 1.63)),
        ("1,5", (1.5, 1.5)),
        ("1,5 x 1,63", (1.5, 1.63)),
        ("1.5mm", (1.5, 1.5)),
        ("0.8 0.9", (0.8, 0.9)),
    ],
)
def test_parse_spacing_text(text, expected) -> None:
    assert parse_spacing_text(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "0", "-1.5", "1.5 x", "1.5x", "1.5, 2", "1 2 3", "nan", "inf", "500"]
)
def test_parse_spacing_text_refuses_with_a_readable_message(text) -> None:
    with pytest.raises(gr.Error) as excinfo:
        parse_spacing_text(text)
    assert "positive numbers in mm" in _error_text(excinfo)


# --- errors ------------------------------------------------------------------------------


def test_bad_files_give_readable_errors(callbacks: Callbacks, counting: CountingSegmenter, tmp_path: Path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n" * 20)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(flat)
    cases = {
        str(text): "not an image",
        str(empty): "empty",
        str(flat): "same value",
        str(tmp_path / "gone.png"): "no longer on the server",
        None: "upload",
    }
    for file, words in cases.items():
        with pytest.raises(gr.Error) as excinfo:
            callbacks.segment(file, "", 0.5, None)
        assert words in _error_text(excinfo).lower()
        assert excinfo.value.print_exception is False  # messages can name the file: not logged
    assert counting.calls == 0


@pytest.mark.parametrize("kind", ["phantom", "MR_small"])
def test_one_dicom_file_is_segmented_with_its_header_spacing(
    callbacks: Callbacks, tiny_segmenter, tmp_path: Path, caplog, kind: str
) -> None:
    """A DICOM slice (a phantom series' file, pydicom's real 64 x 64 MR): the spacing of its
    header in the card and the statistics; its patient's name nowhere in the page or the log."""
    import logging

    import pydicom
    from pydicom.data import get_testdata_file

    if kind == "phantom":
        from segapp.synthetic.volume import phantom_volume
        from segapp.synthetic.volume_files import write_dicom_series

        path = write_dicom_series(phantom_volume(2, 1, 1, first=70, count=1), tmp_path / "series")[0]
    else:
        path = tmp_path / "IM_0001"
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.save_as(path, enforce_file_format=True)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    name = str(header.PatientName)
    spacing = [float(v) for v in header.PixelSpacing]
    with caplog.at_level(logging.DEBUG):
        ready = callbacks.preview(str(path), "").card
        outputs = callbacks.segment(str(path), "", 0.5, None)
    assert "DICOM header" in ready and "DICOM header" in outputs.card
    assert outputs.stats["spacing_source"] == "from the DICOM header"
    assert outputs.stats["spacing_mm"] == pytest.approx(spacing)
    expected = tiny_segmenter.predict(read_image(path)).mask
    assert np.array_equal(np.array(Image.open(outputs.mask_png)), expected)
    shown = ready + outputs.card + json.dumps(outputs.stats) + caplog.text
    for part in name.split("^"):
        assert part not in shown


def test_a_slice_upload_over_the_slice_bound_is_refused(callbacks: Callbacks, counting, tmp_path: Path) -> None:
    from segapp.ui.callbacks import MAX_SLICE_MB

    big = tmp_path / "big.png"
    with big.open("wb") as handle:  # sparse
        handle.truncate(MAX_SLICE_MB * 2**20 + 1)
    with pytest.raises(gr.Error) as excinfo:
        callbacks.preview(str(big), "")
    assert f"single slices up to {MAX_SLICE_MB} MB" in _error_text(excinfo) and "Volume tab" in _error_text(excinfo)
    assert counting.calls == 0


def test_error_text_is_escaped_for_the_page(callbacks: Callbacks) -> None:
    with pytest.raises(gr.Error) as excinfo:
        parse_spacing_text("<img src=x onerror=alert(1)>")
    assert "<img" not in _error_text(excinfo) and "&lt;img" in _error_text(excinfo)


def test_model_load_failure_is_reported_not_raised_raw(tmp_path: Path, phantom16) -> None:
    def broken():
        raise ModelLoadError("Weights not found: 'assets/model'")

    callbacks = Callbacks(broken, output_root=tmp_path)
    with pytest.raises(gr.Error) as excinfo:
        callbacks.segment(str(phantom16[0]), "", 0.5, None)
    assert "could not be loaded" in _error_text(excinfo) and "Weights not found" in _error_text(excinfo)
    about, badge = callbacks.about()  # the About section says so instead of failing the page
    assert "could not be loaded" in about and "not loaded" in badge


# --- re-rendering ------------------------------------------------------------------------


def test_opacity_and_toggles_rerender_without_running_the_model(
    callbacks: Callbacks, counting: CountingSegmenter, phantom16
) -> None:
    out = callbacks.segment(str(phantom16[0]), "", 0.5, None)
    assert counting.calls == 1
    gray, mask = out.state.gray, out.state.mask

    hidden = callbacks.rerender(out.state, 0.8, [])
    assert np.array_equal(hidden.overlay, np.repeat(gray[..., None], 3, axis=2))
    assert not hidden.mask_view.any()

    solid = callbacks.rerender(out.state, 1.0, ["stomach"])
    stomach = mask == STOMACH.id
    assert np.all(solid.overlay[stomach] == STOMACH.color)
    assert np.array_equal(solid.overlay[~stomach], np.repeat(gray[..., None], 3, axis=2)[~stomach])
    assert np.all(solid.mask_view[stomach] == STOMACH.color) and not solid.mask_view[~stomach].any()
    with Image.open(solid.overlay_png) as saved:
        assert np.array_equal(np.array(saved), solid.overlay)
    assert counting.calls == 1


def test_rerender_before_any_result_changes_nothing(callbacks: Callbacks) -> None:
    skipped = callbacks.rerender(None, 0.3, ["stomach"])
    assert all(isinstance(value, type(gr.skip())) for value in skipped)


def test_preview_shows_the_slice_and_clears_old_results(callbacks: Callbacks, counting, phantom16) -> None:
    path, _ = phantom16
    out = callbacks.preview(str(path), "")
    gray = read_image(path).pixels
    assert np.array_equal(out.overlay, np.repeat(gray[..., None], 3, axis=2))
    assert out.mask_png is None and out.stats is None and out.state is None
    assert "266 × 266" in out.card and "16-bit" in out.card
    assert counting.calls == 0
    assert callbacks.preview(None, "") == callbacks.clear()


# --- examples, about, files --------------------------------------------------------------


def test_examples_are_found_and_segmented(counting: CountingSegmenter, tmp_path: Path, phantom16) -> None:
    folder = tmp_path / "examples"
    assert find_examples(folder) == []  # missing folder
    folder.mkdir()
    assert find_examples(folder) == []  # empty folder
    (folder / "README.md").write_text("not an example")
    for name in ("b.png", "a.PNG", "c.tif"):
        Image.fromarray(phantom16[1]).save(folder / name)
    found = find_examples(folder)
    assert [p.name for p in found] == ["a.PNG", "b.png", "c.tif"]

    callbacks = Callbacks(counting, output_root=tmp_path / "out", examples=found)
    path, out = callbacks.example(1, "", 0.5, None)
    # A copy in the output folder (servable from any working directory), under the same name.
    assert Path(path).name == found[1].name and Path(path).is_relative_to(tmp_path / "out")
    assert Path(path).read_bytes() == found[1].read_bytes()
    assert out.stats is not None and counting.calls == 1
    with pytest.raises(gr.Error):
        callbacks.example(3, "", 0.5, None)


def test_about_uses_the_model_card(callbacks: Callbacks, tiny_segmenter) -> None:
    about, badge = callbacks.about()
    card = tiny_segmenter.loaded.card
    assert card.startswith("---")  # front matter in the card ...
    assert "library_name" not in about  # ... is not shown
    assert "Not for clinical use" in about and "--weights" in about
    assert "random" in about  # the card's "Data" section
    assert f"{tiny_segmenter.describe()['parameters']:,}" in about
    assert "cpu" in badge
    assert "### " in about_markdown(None, None) and "first segmentation" in about_markdown(None, None)


def test_output_folders_sweep_old_empty_leftovers_at_most_once_per_interval(tmp_path: Path) -> None:
    now = [1_000_000.0]
    folders = OutputFolders(tmp_path, sweep_every_s=60, grace_s=30, clock=lambda: now[0])
    old_empty, old_full = folders.new(), folders.new()
    (old_full / "mask.png").write_bytes(b"x")
    unrelated = tmp_path / "abc123"  # a Gradio upload folder: never ours to remove
    unrelated.mkdir()
    for folder in (old_empty, old_full, unrelated):
        os.utime(folder, (now[0] - 100, now[0] - 100))
    young_empty = folders.new()  # no sweep yet: the first one ran before any folder existed
    os.utime(young_empty, (now[0] - 5, now[0] - 5))
    assert old_empty.exists()
    now[0] += 61
    os.utime(young_empty, (now[0] - 5, now[0] - 5))  # made moments ago by a request not yet done
    folders.new()
    assert not old_empty.exists()
    assert old_full.exists() and unrelated.exists() and young_empty.exists()
    os.utime(young_empty, (now[0] - 100, now[0] - 100))
    now[0] += 10  # within the interval: no listing of the folder at all
    folders.new()
    assert young_empty.exists()
    assert folders.sweep() == 1 and not young_empty.exists()


def test_page_writes_outputs_apart_from_gradio_uploads(tiny_segmenter, phantom16) -> None:
    demo = build_demo(tiny_segmenter, examples_dir=None)
    callbacks = next(fn.fn for fn in demo.fns.values() if fn.api_name == "segment")
    mask_path, _ = callbacks(str(phantom16[0]), "")
    assert Path(mask_path).parent.parent == Path(demo.GRADIO_CACHE) / OUTPUT_SUBDIR


def test_page_shows_the_overlay_from_its_download_file(tiny_segmenter, phantom16) -> None:
    """One PNG per overlay: the view shows the download file, not an array Gradio encodes again."""
    demo = build_demo(tiny_segmenter, examples_dir=None)
    handlers = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}  # a Cancel has no fn
    values = handlers["segment"](str(phantom16[0]), "", 0.5, None)
    assert values[4] == values[2] and Path(values[2]).is_file()
    with Image.open(values[2]) as saved:
        assert saved.mode == "RGB" and saved.size == Image.open(phantom16[0]).size
    overlay_file, view, mask_view = handlers["rerender"](values[8], 1.0, ["stomach"])
    assert view == overlay_file != values[2] and isinstance(mask_view, np.ndarray)
    preview = handlers["preview"](str(phantom16[0]), "")
    assert isinstance(preview[4], np.ndarray)  # a preview has no overlay file: the array stays


def test_in_field_order_lists_the_components_as_the_fields_and_refuses_a_mismatch() -> None:
    components = {"b": gr.Textbox(render=False), "a": gr.Number(render=False)}
    assert in_field_order(("a", "b"), components) == [components["a"], components["b"]]
    for fields in (("a",), ("a", "b", "c"), ("a", "c")):
        with pytest.raises(ValueError):
            in_field_order(fields, components)


def _page_values(demo: gr.Blocks, handler: str, values: list) -> dict[str, object]:
    """What a page handler's return gives each component of its event, by the component's
    field name (components told apart by elem_id, or by type where they have none)."""
    by_elem_id = {
        "download-mask": "mask_png",
        "download-overlay": "overlay_png",
        "download-stats": "stats_file",
        "overlay-view": "overlay",
        "mask-view": "mask_view",
        "confidence-view": "confidence",
        "stats": "card",
        "upload": "upload",
        "spacing": "spacing",
    }
    event = next(f for f in demo.fns.values() if f.fn is not None and f.fn.__name__ == handler)
    assert len(event.outputs) == len(values)
    named = {}
    for component, value in zip(event.outputs, values, strict=True):
        if isinstance(component, gr.State):
            name = "state"
        elif isinstance(component, gr.JSON):
            name = "stats"
        else:
            name = by_elem_id[component.elem_id]
        named[name] = value
    return named


@pytest.mark.parametrize("order", ["as defined", "reversed"])
def test_page_wires_each_component_to_the_field_of_its_name(
    order: str, tiny_segmenter, phantom16, tmp_path: Path, monkeypatch
) -> None:
    """Reordering the fields of SegmentOutputs or RenderOutputs cannot put a value in the wrong view."""
    from segapp.ui import callbacks as callbacks_module
    from segapp.ui import page as page_module

    if order == "reversed":
        for name in ("SegmentOutputs", "RenderOutputs"):
            real = getattr(callbacks_module, name)
            double = collections.namedtuple(name, list(reversed(real._fields)))
            monkeypatch.setattr(callbacks_module, name, double)
            monkeypatch.setattr(page_module, name, double)
    demo = build_demo(tiny_segmenter, examples_dir=None, output_root=tmp_path / "out")
    handlers = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}  # a Cancel has no fn
    path = str(phantom16[0])

    shown = _page_values(demo, "segment", handlers["segment"](path, "", 0.5, None))
    assert "segapp-mask-" in shown["mask_png"] and "segapp-overlay-" in shown["overlay_png"]
    assert shown["stats_file"].endswith(".json") and shown["overlay"] == shown["overlay_png"]
    assert json.loads(Path(shown["stats_file"]).read_text()) == shown["stats"]
    assert isinstance(shown["state"], ViewState) and "<" in shown["card"]
    assert np.array_equal(shown["mask_view"], color_mask(shown["state"].mask))
    assert shown["confidence"].shape == shown["mask_view"].shape != shown["state"].mask.shape

    redrawn = _page_values(demo, "rerender", handlers["rerender"](shown["state"], 1.0, ["stomach"]))
    assert "segapp-overlay-" in redrawn["overlay_png"] and redrawn["overlay"] == redrawn["overlay_png"]
    assert np.array_equal(redrawn["mask_view"], color_mask(shown["state"].mask, [STOMACH.id]))

    preview = _page_values(demo, "preview", handlers["preview"](path, ""))
    assert "Ready to segment" in preview["card"] and isinstance(preview["overlay"], np.ndarray)
    for name in ("mask_png", "overlay_png", "stats_file"):
        assert isinstance(preview[name], gr.DownloadButton) and preview[name].value is None
        assert not preview[name].interactive
    assert preview["stats"] is None and preview["state"] is None and preview["confidence"] is None

    cleared = _page_values(demo, "clear_all", handlers["clear_all"]())
    assert cleared["upload"] is None and cleared["spacing"] == "" and cleared["overlay"] is None and "<" in cleared["card"]


def test_view_state_holds_only_what_rerendering_needs(callbacks: Callbacks, phantom16) -> None:
    out = callbacks.segment(str(phantom16[0]), "", 0.5, None)
    assert isinstance(out.state, ViewState)
    assert out.state.gray.dtype == np.uint8 and out.state.mask.dtype == np.uint8


# --- start-up ----------------------------------------------------------------------------


def test_lazy_segmenter_loads_once_across_threads() -> None:
    calls = []

    def loader(source, options):
        calls.append((source, options.device))
        return object()

    lazy = LazySegmenter("weights", loader=loader)
    lazy.configure(source="other", device="cpu")
    results = []
    threads = [threading.Thread(target=lambda: results.append(lazy())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("other", "cpu")] and len({id(r) for r in results}) == 1 and lazy.loaded
    with pytest.raises(RuntimeError):
        lazy.configure(device="cuda")


def test_command_line_and_launch_defaults(monkeypatch) -> None:
    monkeypatch.delenv("SEGAPP_MAX_VOLUME_MB", raising=False)
    args = build_parser().parse_args([])
    assert (args.weights, args.host, args.port, args.share, args.auth, args.device) == (
        None,
        None,
        None,
        False,
        None,
        "auto",
    )
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss")
    for bad in ("ann", ":x", "ann:"):
        with pytest.raises(ValueError):
            parse_auth(bad)
    options = launch_options()
    assert options["share"] is False and options["run_history"] is False and options["ssr_mode"] is False
    assert options["server_name"] is None  # Gradio's default: 127.0.0.1 unless GRADIO_SERVER_NAME
    assert "#class-toggles" in options["css"]
    # Gradio's one upload bound is the volume tab's; slices are bounded by their callback.
    assert options["max_file_size"] == 500 * 2**20


def test_main_refuses_to_start_without_weights(tmp_path: Path, capsys) -> None:
    class Never:
        def launch(self, **kwargs):
            raise AssertionError("must not launch")

    missing = tmp_path / "assets" / "model"
    status = main(Never(), LazySegmenter(missing, device="cpu"), [])
    err = capsys.readouterr().err
    assert status == 2
    assert "could not be loaded" in err and "--weights" in err


def test_importing_app_loads_no_model() -> None:
    import app

    assert isinstance(app.demo, gr.Blocks)
    assert not app.segmenter.loaded
    assert app.segmenter.source == (os.environ.get("SEGAPP_WEIGHTS") or str(app.DEFAULT_WEIGHTS))
    assert not app.volume_segmenter.loaded and app.volume_segmenter.same_as is app.segmenter
    assert app.volume_segmenter.source == volume_source(app.segmenter.source)


class _RecordingDemo:
    """Stands in for the page in ``main``: records queue settings and launch, serves nothing."""

    def __init__(self) -> None:
        self.queue_calls: list[dict] = []
        self.launched = False

    def queue(self, **kwargs):
        self.queue_calls.append(kwargs)
        return self

    def launch(self, **kwargs) -> None:
        self.launched = True

    def close(self) -> None:
        pass


def _loader_noting_options(seen: dict[str, str]) -> Callable[..., Segmenter]:
    """A LazySegmenter loader that loads the eager model and notes in ``seen`` the options it was
    given that differ from SegmenterOptions' defaults."""
    defaults = SegmenterOptions()

    def loader(source: str, options: SegmenterOptions) -> Segmenter:
        seen.update({name: getattr(options, name) for name in ("compile", "runtime")
                     if getattr(options, name) != getattr(defaults, name)})
        return Segmenter.from_pretrained(source, device=options.device)

    return loader


def test_main_sets_concurrency_by_device_or_flag_and_passes_compile(tiny_model_dir: Path) -> None:
    from segapp.ui.page import CONCURRENCY, QUEUE_SIZE

    seen: dict[str, str] = {}
    loader = _loader_noting_options(seen)
    demo = _RecordingDemo()
    assert main(demo, LazySegmenter("x", loader=loader), ["--weights", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert demo.launched and seen == {}
    assert demo.queue_calls[-1] == {"max_size": QUEUE_SIZE, "default_concurrency_limit": CONCURRENCY,
                                     "api_open": False}
    demo = _RecordingDemo()
    args = ["--weights", str(tiny_model_dir), "--device", "cpu", "--concurrency", "24", "--compile", "reduce-overhead"]
    assert main(demo, LazySegmenter("x", loader=loader), args) == 0
    assert seen == {"compile": "reduce-overhead"}
    assert demo.queue_calls[-1] == {"max_size": 48, "default_concurrency_limit": 24, "api_open": False}


def test_main_passes_the_runtime_and_reports_a_missing_extra(tiny_model_dir: Path, monkeypatch, capsys) -> None:
    seen: dict[str, str] = {}
    loader = _loader_noting_options(seen)
    args = ["--weights", str(tiny_model_dir), "--device", "cpu", "--runtime", "onnx"]
    assert main(_RecordingDemo(), LazySegmenter("x", loader=loader), args) == 0
    assert seen == {"runtime": "onnx"}
    # The real loader without the optional packages: a clear message, no page served.
    from segapp.model import onnx_runtime

    def missing():
        raise onnx_runtime.OnnxUnavailableError(onnx_runtime.ONNX_MISSING)

    monkeypatch.setattr(onnx_runtime, "_import_onnxruntime", missing)
    demo = _RecordingDemo()
    assert main(demo, LazySegmenter("x"), args) == 2
    assert 'pip install "segapp[onnx]"' in capsys.readouterr().err and not demo.launched
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--runtime", "tensorrt"])


def test_the_volume_weights_default_to_the_bundled_2_5d_folder_else_the_slice_model(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    import segapp.bundled as bundled

    monkeypatch.delenv("SEGAPP_VOLUME_WEIGHTS", raising=False)
    folder = tmp_path / "model-2.5d"
    monkeypatch.setattr(bundled, "VOLUME_MODEL_DIR", folder)
    assert bundled.default_volume_source() is None  # absent
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert bundled.default_volume_source() is None  # no weights in it
    assert volume_source(bundled.MODEL_DIR) == SAME
    (folder / "model.safetensors").write_bytes(b"")
    assert bundled.default_volume_source() == folder
    assert volume_source(bundled.MODEL_DIR) == volume_source(str(bundled.MODEL_DIR)) == str(folder)
    assert volume_source("my-lab/own-b0") == SAME  # own slice weights serve volumes too, unless asked
    monkeypatch.setenv("SEGAPP_VOLUME_WEIGHTS", "my-lab/volume-b0")
    assert volume_source("my-lab/own-b0") == "my-lab/volume-b0"
    assert volume_source(bundled.MODEL_DIR, requested=SAME) == SAME  # the command line first
    monkeypatch.setenv("SEGAPP_VOLUME_WEIGHTS", "")  # empty, as an image's unset build argument
    assert volume_source(bundled.MODEL_DIR) == str(folder)


def test_main_sets_the_volume_weights_and_leaves_them_unloaded(tiny_model_dir: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    import segapp.bundled as bundled

    monkeypatch.delenv("SEGAPP_VOLUME_WEIGHTS", raising=False)
    monkeypatch.setattr(bundled, "VOLUME_MODEL_DIR", tmp_path / "absent")
    loads: list[str] = []

    def loader(source: str, options: SegmenterOptions) -> Segmenter:
        loads.append(source)
        return Segmenter.from_pretrained(source, device=options.device)  # eager: the options are checked, not used

    assert build_parser().parse_args([]).volume_weights is None
    for flag, expected in ((["--volume-weights", "my-lab/volume-b0"], "my-lab/volume-b0"),
                           (["--volume-weights", SAME], SAME), ([], SAME)):
        slice_model = LazySegmenter("x", loader=loader)
        volume_model = LazySegmenter("y", loader=loader, same_as=slice_model)
        args = ["--weights", str(tiny_model_dir), "--device", "cpu", "--compile", "default", *flag]
        assert main(_RecordingDemo(), slice_model, args, volume_segmenter=volume_model) == 0
        assert volume_model.source == expected and volume_model.options.device == "cpu"
        assert volume_model.options.compile == "default"  # the same runtime options as the slice model
        assert volume_model.shares_model == (expected == SAME) and not volume_model._segmenter
    assert loads == [str(tiny_model_dir)] * 3  # main loads the slice model only


def test_main_refuses_bad_concurrency_and_compile(capsys) -> None:
    demo = _RecordingDemo()
    assert main(demo, LazySegmenter("x"), ["--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--compile", "fast"])
    assert not demo.launched


def test_cache_sets_survive_additions_while_the_cleaner_walks_them(tiny_segmenter, tmp_path: Path) -> None:
    from gradio.route_utils import delete_files_created_by_app

    from segapp.ui.page import SnapshotSet

    demo = build_demo(tiny_segmenter, examples_dir=None, output_root=tmp_path / "out")
    sets = demo.temp_file_sets
    assert sets and all(isinstance(s, SnapshotSet) for s in sets)
    assert any(s is demo.upload_file_set for s in sets)
    component_sets = [b.temp_files for b in demo.blocks.values() if isinstance(b, gr.components.Component)]
    assert component_sets and all(any(c is s for s in sets) for c in component_sets)
    # A plain set fails when it grows during a walk; these walk a snapshot.
    plain, guarded = {"a", "b"}, SnapshotSet({"a", "b"})
    with pytest.raises(RuntimeError, match="changed size"):
        for _ in plain:
            plain.add("c")
    for _ in guarded:
        guarded.add("c")
    assert guarded == {"a", "b", "c"}
    # Gradio's own cleaner still deletes through them: an upload added mid-walk is kept for later.
    old = tmp_path / "old.png"
    old.write_bytes(b"x")
    demo.upload_file_set.add(str(old))
    delete_files_created_by_app(demo, None)
    assert not old.exists() and str(old) not in demo.upload_file_set
    assert isinstance(demo.upload_file_set, SnapshotSet)
