"""segapp's ``/segment`` endpoint over Gradio's plain HTTP API, as curl or any language calls it.

Four requests, no ``gradio_client``: upload the file (``POST /gradio_api/upload``), queue the call
(``POST /gradio_api/call/NAME``), read the event's result stream
(``GET /gradio_api/call/NAME/EVENT_ID``), download the output file. docs/web-app.md shows the same
steps with curl. Used by the benchmark (:mod:`segapp.bench`) and the load test
(``scripts/load_test.py``); every function takes an ``httpx.Client`` whose ``base_url`` is the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class QueueFullError(RuntimeError):
    """The app's bounded queue turned the call away (HTTP 503); ``str()`` is the server's text."""


class EndpointError(RuntimeError):
    """The endpoint answered with an error event; ``message`` is the readable text the page shows."""

    def __init__(self, api_name: str, message: str) -> None:
        super().__init__(f"/{api_name}: {message}")
        self.message = message


def upload(http: httpx.Client, filename: str, data: bytes) -> str:
    """Upload bytes under ``filename``, as a browser would.

    Returns:
        The server-side path, to pass in :func:`file_payload`.
    """
    response = http.post("/gradio_api/upload", files=[("files", (filename, data, "application/octet-stream"))])
    response.raise_for_status()
    return response.json()[0]


def file_payload(server_path: str) -> dict[str, Any]:
    """The API's file argument for a file already uploaded (see :func:`upload`)."""
    return {"path": server_path, "meta": {"_type": "gradio.FileData"}}


def join(http: httpx.Client, api_name: str, data: list[Any]) -> str:
    """Queue one call of ``/api_name`` with the inputs ``data``.

    Returns:
        The event id, for :func:`result`.

    Raises:
        QueueFullError: The queue is full (HTTP 503).
    """
    joined = http.post(f"/gradio_api/call/{api_name}", json={"data": data})
    if joined.status_code == 503:
        try:
            detail = joined.json().get("detail", joined.text)
        except ValueError:
            detail = joined.text
        raise QueueFullError(detail)
    joined.raise_for_status()
    return joined.json()["event_id"]


def result(http: httpx.Client, api_name: str, event_id: str) -> list[Any]:
    """Read a queued call's event stream to its end.

    Returns:
        The endpoint's outputs (file outputs as dicts with ``url`` and ``path``).

    Raises:
        EndpointError: The endpoint raised (the readable message is kept).
        RuntimeError: The stream ended without a result.
    """
    event = None
    with http.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line.removeprefix("data:").strip() or "null")
                if event == "complete":
                    return data
                message = data.get("error") if isinstance(data, dict) else None
                raise EndpointError(api_name, str(message or data))
    raise RuntimeError(f"/{api_name}: the result stream ended without a result (last event: {event})")


def download(http: httpx.Client, file_output: dict[str, Any]) -> bytes:
    """The bytes of one file output of :func:`result`."""
    response = http.get(file_output["url"])
    response.raise_for_status()
    return response.content


def call_with_file(http: httpx.Client, api_name: str, path: str | Path, *extra: Any) -> list[Any]:
    """Upload ``path``, call ``/api_name`` with it as the first input and ``extra`` after it.

    Returns:
        The outputs, as :func:`result`.

    Raises:
        QueueFullError, EndpointError, RuntimeError: As :func:`join` and :func:`result`.
    """
    path = Path(path)
    server_path = upload(http, path.name, path.read_bytes())
    return result(http, api_name, join(http, api_name, [file_payload(server_path), *extra]))


def segment(http: httpx.Client, path: str | Path, spacing_mm: str = "") -> tuple[bytes, dict[str, Any]]:
    """Segment one image file through ``/segment``: upload, queue, result, mask download.

    Args:
        http: Client for the app.
        path: The slice's file; its name goes along (it can carry the pixel spacing).
        spacing_mm: Optional pixel spacing in mm (``"1.5"``, ``"1.5 x 1.63"``); "" for the file name's.

    Returns:
        (the class-id mask PNG's bytes, the statistics dict).

    Raises:
        QueueFullError, EndpointError, RuntimeError: As :func:`join` and :func:`result`.
    """
    mask, stats = call_with_file(http, "segment", path, spacing_mm)
    return download(http, mask), stats
