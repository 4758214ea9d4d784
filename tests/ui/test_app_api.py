"""The app served in-process on a free port, called over HTTP with gradio_client like any client."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port
from PIL import Image

from segapp.synthetic import generate_slice
from segapp.ui import build_demo, launch_options

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def served(tiny_segmenter, tmp_path_factory: pytest.TempPathFactory):
    """(url, slice path) of the app launched on a free port; closed after the module."""
    phantom = generate_slice(11, empty=False)
    path = tmp_path_factory.mktemp("api") / phantom.file_name
    Image.fromarray(phantom.image16).save(path)
    demo = build_demo(tiny_segmenter, examples_dir=None)
    _, url, _ = demo.launch(**launch_options(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        yield url, path
    finally:
        demo.close()


def test_segment_endpoint_returns_the_mask_and_statistics(served, tiny_segmenter) -> None:
    url, path = served
    client = gradio_client.Client(url, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/segment", "/segment_batch", "/segment_volume"]  # helper events stay private

    mask_png, stats = client.predict(gradio_client.handle_file(str(path)), api_name="/segment")
    expected = tiny_segmenter.predict(path)
    with Image.open(mask_png) as mask:
        assert mask.mode == "L" and np.array_equal(np.array(mask), expected.mask)
    for name, figures in expected.stats.items():
        assert stats["classes"][name]["pixels"] == figures.pixels
        assert stats["classes"][name]["area_mm2"] == pytest.approx(figures.area_mm2)
    assert stats["spacing_mm"] == list(expected.spacing_mm)
    json.dumps(stats)  # plain JSON, no numpy values
    # A typed spacing overrides the file name's.
    _, typed = client.predict(gradio_client.handle_file(str(path)), "2 x 1", api_name="/segment")
    assert typed["spacing_mm"] == [2.0, 1.0]
    pixels = typed["classes"]["background"]["pixels"]
    assert typed["classes"]["background"]["area_mm2"] == pytest.approx(pixels * 2.0)


def test_segment_endpoint_reports_bad_files_readably(served, tmp_path: Path) -> None:
    url, _ = served
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"%PDF-1.7 not really a scan")
    client = gradio_client.Client(url, verbose=False)
    with pytest.raises(gradio_client.exceptions.AppError, match="PDF document"):
        client.predict(gradio_client.handle_file(str(bad)), api_name="/segment")
    # The server keeps serving after the error.
    assert client.predict(gradio_client.handle_file(str(served[1])), api_name="/segment")[1]["classes"]


def test_plain_http_api_serves_the_same_mask_and_reports_errors(served, tiny_segmenter, tmp_path: Path) -> None:
    """The curl path (upload, queue the call, read the event stream, download) of segapp.rest_client."""
    import httpx

    from segapp import rest_client

    url, path = served
    with httpx.Client(base_url=url, timeout=60) as http:
        png, stats = rest_client.segment(http, path, "2 x 1")
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"not an image")
        with pytest.raises(rest_client.EndpointError, match="not an image") as error:
            rest_client.segment(http, bad)
    assert error.value.message.startswith("The file is not an image")  # the page's readable text
    out = tmp_path / "mask.png"
    out.write_bytes(png)
    expected = tiny_segmenter.predict(path)
    with Image.open(out) as mask:
        assert np.array_equal(np.array(mask), expected.mask)
    assert stats["spacing_mm"] == [2.0, 1.0]
    assert stats["classes"]["stomach"]["pixels"] == expected.stats["stomach"].pixels


def test_direct_calls_cannot_skip_the_queue(served) -> None:
    """POST /gradio_api/run/segment would bypass the queue's size bound and concurrency limit."""
    import httpx

    url, path = served
    with httpx.Client(base_url=url, timeout=60) as http:
        uploaded = http.post("/gradio_api/upload", files={"files": (path.name, path.read_bytes())}).json()[0]
        data = {"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, ""]}
        for route in ("/gradio_api/run/segment", "/gradio_api/api/segment"):
            answer = http.post(route, json=data)
            assert answer.status_code == 404 and "join the queue" in answer.text


def test_segment_batch_endpoint_returns_the_zip_and_the_table(served, tiny_segmenter) -> None:
    url, path = served
    client = gradio_client.Client(url, verbose=False)
    archive, table = client.predict([gradio_client.handle_file(str(path))] * 2, api_name="/segment_batch")
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        with zipped.open(f"masks/{path.name}") as mask:
            assert np.array_equal(np.array(Image.open(mask)), tiny_segmenter.predict(path).mask)
    # The second copy of the competition-named slice gets a neutral name.
    assert {"stats.csv", "overlays/slice-002.png", f"overlays/{path.name}"} <= names
    assert Path(table).read_text().count("\n") == 3
