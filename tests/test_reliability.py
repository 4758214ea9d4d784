"""Reliability: hostile files through every entry point, broken weights at start-up, failing disks
in training. The long parts (SIGKILL trials, soak) are in ``test_faults_slow.py``.

Every corpus file (``tests/hostile_corpus.py``) must give its expected pixels or a refusal whose
message says what is wrong, through :func:`segapp.read_image`, the app's ``/segment`` API and
:func:`segapp.predict.predict`; never another exception, a traceback, a hang or a dead server.
"""

from __future__ import annotations

import builtins
import errno
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_tiny_model
from hostile_corpus import HostileFile, hostile_corpus, write_corpus
from PIL import Image

from segapp.io.image import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, InvalidImageError
from segapp.io.readers import read_image
from segapp.model.processing import ProcessingConfig
from segapp.model.weights import ModelLoadError, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
CORPUS = hostile_corpus()
BY_KEY = {item.key: item for item in CORPUS}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _check_read(item: HostileFile, read) -> None:
    """``read()`` gives the expected pixels (and note), or refuses with the expected message."""
    if item.valid:
        scan = read()
        assert scan.size == item.expected.shape, item.description
        difference = np.abs(scan.pixels.astype(np.int16) - item.expected).mean()
        assert difference <= item.tolerance, f"{item.description}: mean difference {difference:.2f}"
        if item.note:
            assert any(re.search(item.note, note) for note in scan.notes), scan.notes
    else:
        with pytest.raises(InvalidImageError) as caught:  # any other type fails the test
            read()
        assert re.search(item.error, str(caught.value), re.IGNORECASE), str(caught.value)


# ---------------------------------------------------------------------------- the corpus itself


def test_corpus_covers_what_the_issue_lists() -> None:
    assert len(CORPUS) >= 30
    wanted = {
        "zero_bytes", "text", "html", "truncated_png", "truncated_jpeg", "bomb_png", "one_pixel",
        "strip_2x2000", "tiff_uint16", "tiff_int32", "tiff_float_nan", "tiff_float_inf", "rgba_png",
        "palette_png", "cmyk_jpeg", "exif_rotated_jpeg", "animated_gif", "multipage_tiff", "over_limit",
        "hostile_name", "unicode_long_name", "dicom_like", "zip", "all_black", "all_white", "noise",
    }  # fmt: skip
    assert wanted <= set(BY_KEY)
    # The decompression bomb claims 100,000 x 100,000 in its header and is tiny on disk.
    bomb = BY_KEY["bomb_png"].data
    assert bomb[16:24] == (100_000).to_bytes(4, "big") * 2 and len(bomb) < 200
    # The oversized image is a valid PNG just over the limit it was made for.
    with Image.open(io.BytesIO(BY_KEY["over_limit"].data)) as huge:
        width, height = huge.size
    assert (height - 1) * width <= DEFAULT_MAX_PIXELS < height * width
    name = BY_KEY["hostile_name"].filename
    assert len(name) == 300 and "/" in name and "\\" in name and "../" in name
    assert len(BY_KEY["unicode_long_name"].filename) == 300
    assert all(len(item.disk_name.encode()) <= 255 for item in CORPUS)
    assert hostile_corpus()[5].data == CORPUS[5].data  # reproducible


# ---------------------------------------------------------------------------- read_image


@pytest.mark.parametrize("key", list(BY_KEY))
def test_read_image_gives_the_pixels_or_a_clear_refusal(key: str, tmp_path: Path) -> None:
    item = BY_KEY[key]
    _check_read(item, lambda: read_image(item.data, name=item.filename))
    path = write_corpus(tmp_path, [item])[key]
    _check_read(item, lambda: read_image(path))
    with path.open("rb") as stream:
        _check_read(item, lambda: read_image(stream))


# ---------------------------------------------------------------------------- the app's API


@pytest.fixture(scope="module")
def load_test():
    return _load_script("load_test")


@pytest.fixture(scope="module")
def served(tiny_segmenter, load_test):
    """URL of the app (production launch settings) around the tiny model, on a loopback port."""
    with load_test.serve(tiny_segmenter) as url:
        yield url


def test_api_answers_every_corpus_file_and_keeps_serving(
    served, load_test, tiny_segmenter, tmp_path: Path
) -> None:
    from segapp.ui.callbacks import APP_MAX_PIXELS

    corpus = hostile_corpus(max_pixels=APP_MAX_PIXELS)
    client = load_test.new_client(served, tmp_path)
    good = corpus[0]
    before = load_test.send_corpus_file(client, served, good)
    assert before.ok

    # Twice, four files at a time: every answer, and resident memory once warm (ten rounds:
    # test_faults_slow.py and scripts/load_test.py --corpus-rounds 10).
    phase, rounds = load_test.corpus_rounds(served, tmp_path, rounds=2, workers=4, max_pixels=APP_MAX_PIXELS)
    for outcomes in rounds:
        for item, outcome in zip(corpus, outcomes):
            assert outcome.ok, f"{item.key} ({item.description}): {outcome.detail}"
            if item.valid:  # the mask the model gives for exactly these pixels
                scan = read_image(item.data, max_pixels=APP_MAX_PIXELS)
                assert np.array_equal(outcome.mask, tiny_segmenter.predict(scan).mask), item.key
            else:
                assert "Traceback" not in outcome.detail and 'File "' not in outcome.detail
    assert phase.ok == phase.requests == 2 * len(corpus) and phase.mismatches == 0
    growth = phase.rss_mib["growth_after_round_1"]
    print(f"\nresident memory after rounds 1, 2: {phase.rss_mib['per_round']} MiB")
    assert growth < 32, f"resident memory grew {growth:.0f} MiB over a second round of the corpus"

    # Still alive, and the same answer as before.
    after = load_test.send_corpus_file(client, served, good)
    assert after.ok and np.array_equal(after.mask, before.mask)


def test_a_slice_over_its_bound_is_refused_clearly_and_a_volume_of_that_size_is_read(
    served, load_test, tmp_path: Path
) -> None:
    """The server takes uploads up to the volume bound (Gradio has one bound per app); /segment
    refuses a file over the slice bound with a readable message, /segment_volume reads one."""
    import gradio_client

    from segapp.ui.callbacks import MAX_SLICE_MB

    big = tmp_path / "huge.png"
    with big.open("wb") as handle:  # sparse: 60 MB on the wire, nothing on disk
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate((MAX_SLICE_MB + 10) * 2**20)
    client = load_test.new_client(served, tmp_path)
    with pytest.raises(gradio_client.exceptions.AppError, match=rf"60 MB; single slices up to {MAX_SLICE_MB} MB"):
        client.predict(gradio_client.handle_file(str(big)), api_name="/segment")
    volume = big.rename(tmp_path / "huge.nii.gz")
    with pytest.raises(gradio_client.exceptions.AppError, match="gzip|NIfTI") as read:
        client.predict(gradio_client.handle_file(str(volume)), None, api_name="/segment_volume")
    assert "MB" not in str(read.value)  # the reader's message, not a size refusal


def test_load_script_phases_on_a_small_scale(served, load_test, tmp_path: Path) -> None:
    """scripts/load_test.py's load and overload phases, small: identical masks under concurrency,
    and a burst beyond the bounded queue answered "busy" (the full run is in test_faults_slow)."""
    from segapp.ui.page import CONCURRENCY, QUEUE_SIZE

    inputs = load_test.make_inputs(tmp_path / "inputs", phantoms=0)[::2]  # three sizes
    reference, _ = load_test.reference_masks(served, inputs, tmp_path)
    load = load_test.run_load(served, inputs, reference, tmp_path, clients=4, requests=2)
    assert load.requests == load.ok == 8 and not load.errors and load.mismatches == 0
    burst = QUEUE_SIZE + CONCURRENCY + 10
    overload = load_test.overload_probe(served, inputs[0], bursts=(burst,))
    assert set(overload.errors) == {load_test.BUSY}, overload.errors
    assert 0 < overload.extra["burst_1"]["busy"] <= burst - QUEUE_SIZE
    assert "Queue is full" in overload.extra["busy_answer"]
    with pytest.raises(ValueError, match="loopback"):
        load_test.check_loopback("http://192.0.2.1:7860/")


def test_heap_growth_limit_applies_on_glibc_and_yields_to_the_environment(monkeypatch) -> None:
    """The allocator setting behind the flat soak (test_faults_slow): applied on glibc Linux,
    left alone when the operator sets MALLOC_MMAP_THRESHOLD_ themselves."""
    import platform

    from segapp.ui.server import limit_heap_growth

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert limit_heap_growth() is glibc
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert limit_heap_growth() is False


# ---------------------------------------------------------------------------- segapp.predict


def test_predict_reports_every_bad_file_and_segments_the_rest(tiny_segmenter, tmp_path: Path) -> None:
    from segapp.predict import main, predict

    corpus = hostile_corpus(max_pixels=DEFAULT_MAX_PIXELS)
    paths = write_corpus(tmp_path / "in", corpus)
    lines: list[str] = []
    summary = predict(
        [paths[item.key] for item in corpus],
        out=tmp_path / "out",
        segmenter=tiny_segmenter,
        progress=False,
        log=lines.append,
    )
    failed = dict(summary.failed)
    assert summary.predicted == sum(item.valid for item in corpus)
    assert len(failed) == len(lines) == sum(not item.valid for item in corpus)
    for item in corpus:
        path = paths[item.key]
        if item.valid:
            with Image.open(tmp_path / "out" / "masks" / f"{path.stem}.png") as mask:
                expected = tiny_segmenter.predict(read_image(path)).mask
                assert np.array_equal(np.array(mask), expected), item.key
        else:
            assert re.search(item.predict_error or item.error, failed[str(path)], re.IGNORECASE), failed[str(path)]

    # The command line: exit status 1 (something failed), every failure named, the rest written.
    # The corpus folder holds files of other suffixes too (.zip, .dcm, ...): they are skipped.
    out = tmp_path / "cli"
    weights = tiny_segmenter.loaded.source
    status = main(
        [str(tmp_path / "in"), "--out", str(out), "--weights", weights, "--device", "cpu", "--no-progress"]
    )
    assert status == 1
    scanned = [item for item in corpus if item.valid and paths[item.key].suffix in IMAGE_SUFFIXES]
    assert len(list((out / "masks").glob("*.png"))) == len(scanned) > 0


def test_png_outputs_can_be_written_for_names_at_the_length_limit(tmp_path: Path) -> None:
    """An input named with 255 bytes gets an output of the same length; its atomic write's
    temporary file must still fit the file system's limit."""
    from segapp.io.image import save_mask_png

    name = "Ω" * 125 + "x.png"  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4) % 4
    save_mask_png(mask, tmp_path / name)
    assert np.array_equal(np.array(Image.open(tmp_path / name)), mask)
    assert os.listdir(tmp_path) == [name]


# ---------------------------------------------------------------------------- start-up with bad weights


class _Evil:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def bad_weights(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights the app must refuse to start with, by name."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("bad-weights")
    marker = root / "UNPICKLED"
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    cut = {}
    cut["missing"] = root / "no" / "such" / "model"
    cut["truncated_safetensors"] = root / "cut.safetensors"
    cut["truncated_safetensors"].write_bytes(weights[: len(weights) // 2])
    folder = shutil.copytree(tiny_model_dir, root / "cut-folder")
    (folder / "model.safetensors").write_bytes(weights[:-64])  # header intact, data cut short
    cut["truncated_in_folder"] = folder
    cut["wrong_label_count"] = root / "two-labels"
    make_tiny_model(num_labels=2).save_pretrained(cut["wrong_label_count"])
    cut["wrong_label_count_file"] = root / "seven.safetensors"
    save_file(
        {k: v.contiguous() for k, v in make_tiny_model(num_labels=7).state_dict().items()},
        cut["wrong_label_count_file"],
    )
    state = make_tiny_model().state_dict()
    cut["pickle_checkpoint"] = root / "epoch=3.ckpt"
    torch.save({"state_dict": state, "callbacks": _Evil(marker)}, cut["pickle_checkpoint"])
    folder = root / "pickle-folder"  # an older HF export: config.json + pytorch_model.bin
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    torch.save({**state, "extra": _Evil(marker)}, folder / "pytorch_model.bin")
    cut["pickle_in_folder"] = folder
    cut["_marker"] = marker
    return cut


MESSAGES = {
    "missing": r"not found",
    "truncated_safetensors": r"truncated or corrupt",
    "truncated_in_folder": r"truncated or corrupt",
    "wrong_label_count": r"predict 2 classes.*segments 4",
    "wrong_label_count_file": r"predict 7 classes.*segments 4",
    "pickle_checkpoint": r"Refusing to load.*arbitrary code",
    "pickle_in_folder": r"Refusing to load.*arbitrary code",
}


@pytest.mark.parametrize("case", list(MESSAGES))
def test_load_model_refuses_bad_weights_with_a_clear_error(case: str, bad_weights: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match=MESSAGES[case]):  # ModelLoadError, nothing else
        load_model(bad_weights[case])
    assert not bad_weights["_marker"].exists(), "a pickle was unpickled"


@pytest.mark.parametrize("case", list(MESSAGES))
def test_app_start_up_refuses_bad_weights(
    case: str, bad_weights: dict[str, Path], capsys, monkeypatch
) -> None:
    """What ``python app.py --weights X`` runs, in-process: exit status 2, the reason on stderr,
    and the page is never launched."""
    import app
    from segapp.ui import LazySegmenter, main

    def never(**kwargs):
        raise AssertionError("the page was launched with unusable weights")

    monkeypatch.setattr(app.demo, "launch", never)
    status = main(app.demo, LazySegmenter("unused"), ["--weights", str(bad_weights[case]), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert "cannot start" in err and re.search(MESSAGES[case], err, re.DOTALL), err
    assert "Traceback" not in err
    assert not bad_weights["_marker"].exists()


def test_python_app_py_exits_with_a_message_for_pickle_weights(bad_weights: dict[str, Path]) -> None:
    """The real command in a subprocess (the other cases run in-process above, each subprocess
    costs seconds of imports; ``test_faults_slow.py`` runs them all this way)."""
    result = subprocess.run(
        [sys.executable, "app.py", "--weights", str(bad_weights["pickle_checkpoint"]), "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    assert result.returncode == 2
    assert re.search(MESSAGES["pickle_checkpoint"], result.stderr), result.stderr
    assert "Traceback" not in result.stderr and "Running on" not in result.stdout + result.stderr
    assert not bad_weights["_marker"].exists()


# ---------------------------------------------------------------------------- training on a failing disk

TRAIN_ARGS = ["--image-size", "64", "--batch-size", "2", "--grad-accum", "1"]
TRAIN_ARGS += ["--no-progress", "--no-hausdorff"]


def _previous_best(out: Path) -> bytes:
    """A finished run's best/ (what the app serves); returns its weights' bytes."""
    save_model(make_tiny_model(seed=3), out / "best", processing=ProcessingConfig(64, 64))
    return (out / "best" / "model.safetensors").read_bytes()


def _assert_best_intact(out: Path, weights: bytes) -> None:
    assert (out / "best" / "model.safetensors").read_bytes() == weights
    load_model(out / "best")  # complete and loadable
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".previous")]
    assert not leftovers, leftovers


def test_training_on_a_full_disk_stops_clearly_and_keeps_best(
    phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import segapp.io.files as files
    from segapp.train import main

    out = tmp_path / "run"
    weights = _previous_best(out)

    def full(folder: Path) -> None:  # the write-back of the new files fails, as on a full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.safetensors"))

    monkeypatch.setattr(files, "_fsync_tree", full)
    args = ["--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir), "--max-steps", "1"]
    status = main(args + TRAIN_ARGS)
    err = capsys.readouterr().err
    assert status == 2
    assert "No space left on device" in err and "Traceback" not in err, err
    _assert_best_intact(out, weights)


@contextmanager
def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Iterator[None]:
    """Every write, create, rename or delete below ``folder`` fails with EROFS, as on a read-only
    mount. (Tests run as root here, and chmod does not stop root.)"""
    folder = folder.resolve()

    def inside(path) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(folder)
        except (TypeError, ValueError):
            return False

    def refuse(path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        if flags & writing and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(real):
        def wrapper(path, *args, **kwargs):
            if inside(path):
                refuse(path)
            return real(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    yield


def test_training_into_a_read_only_folder_stops_clearly_and_keeps_best(
    phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from segapp.train import main

    out = tmp_path / "run"
    weights = _previous_best(out)
    args = ["--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir), "--max-steps", "1"]
    with _read_only(monkeypatch, out):
        status = main(args + TRAIN_ARGS)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert status == 2
    assert "Read-only file system" in err and "Traceback" not in err, err
    _assert_best_intact(out, weights)


def test_a_save_interrupted_between_its_renames_is_recovered(tmp_path: Path, monkeypatch) -> None:
    """A crash after best/ was moved aside and before the new one took its place leaves only
    best.previous: loading finds it, and the next save puts it back first."""
    import segapp.model.weights as modeling

    folder = tmp_path / "best"
    save_model(make_tiny_model(seed=1), folder)
    before = (folder / "model.safetensors").read_bytes()
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # best -> best.previous done; tmp -> best never happens
            raise OSError(errno.EIO, "simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(modeling.os, "replace", crash_on_second)
    with pytest.raises(OSError, match="simulated crash"):
        save_model(make_tiny_model(seed=2), folder)
    monkeypatch.undo()
    # An exception restores the previous folder at once.
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["best"]

    # A SIGKILL at that point cannot clean up: only best.previous and the new temp folder remain.
    os.replace(folder, tmp_path / "best.previous")
    (tmp_path / ".best.tmp-killed").mkdir()
    (tmp_path / ".best.tmp-killed" / "model.safetensors").write_bytes(b"half")
    loaded = load_model(folder)  # served from the previous, complete folder
    assert loaded.kind == "folder"
    save_model(make_tiny_model(seed=2), folder)
    assert (folder / "model.safetensors").read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_resume_after_a_kill_between_renames_continues_from_the_checkpoint(
    phantom_data: Path, tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    """last/ moved aside by an interrupted save must not make --resume start again from step 0
    (which would also replace a good best/ with a one-step model)."""
    from segapp.train import main

    out = tmp_path / "run"
    args = ["--data", str(phantom_data), "--out", str(out), "--base", str(tiny_model_dir)]
    assert main(args + TRAIN_ARGS + ["--max-steps", "2", "--scheduler", "constant", "--log-every", "1"]) == 0
    os.replace(out / "last", out / "last.previous")  # the state a SIGKILL mid-save leaves
    assert main(["--out", str(out), "--resume", "--max-steps", "3"]) == 0
    assert "resumed from" in capsys.readouterr().out
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 3
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["type"] == "step"] == [1, 2, 3]  # continued, not restarted
    assert not (out / "last.previous").exists()
    load_model(out / "best")
