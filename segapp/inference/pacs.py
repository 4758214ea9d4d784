"""The PACS round trip: retrieve a series by DICOMweb, segment it, store the results in its study.

:func:`segment_series` does one series (WADO-RS, the volume pipeline, STOW-RS of the DICOM-SEG and
the RTSTRUCT in one request, so the server takes or refuses them together); :func:`watch` polls
QIDO-RS for new MR series and does each once, remembering what it did in a small state file. The
client is :mod:`segapp.io.dicomweb`; the command is ``python -m segapp.dicomweb``. Nothing printed
or logged carries patient data (names, ids, birth dates): series are named by UID and description.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segapp.bundled import MODEL_DIR
from segapp.inference.options import SegmenterOptions
from segapp.inference.pipeline import VolumeError, process_volume
from segapp.io.dicomweb import DEFAULT_RETRY, Auth, Pacs, PacsError, Retry, SeriesInfo, safe_url
from segapp.io.files import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from segapp.inference.segmenter import Segmenter
    from segapp.inference.volume import VolumePrediction

# --store names -> the export formats of segapp.inference.exports, and how messages name them.
STORE_FORMATS = {"seg": "dicom-seg", "rtstruct": "rtstruct"}
STORE_NAMES = {"seg": "DICOM-SEG", "rtstruct": "RTSTRUCT"}


@dataclass
class PacsResult:
    """What one series' round trip did.

    Attributes:
        study: StudyInstanceUID (the results are in the same study).
        series: The segmented SeriesInstanceUID.
        prediction: ``predict_volume``'s result (labels, organ volumes).
        files: Written local files, ``seg`` / ``rtstruct`` -> path (gone after the call unless ``out``).
        new_series: ``seg`` / ``rtstruct`` -> SeriesInstanceUID of the stored object (empty on a dry run).
        seconds: Phase -> wall seconds (``retrieve``, ``segment``, ``write``, ``store``).
    """

    study: str
    series: str
    prediction: VolumePrediction
    files: dict[str, Path] = field(default_factory=dict)
    new_series: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def segment_series(url: str, *, study: str, series: str | None = None, store: Iterable[str] = ("seg", "rtstruct"),
                   weights: str | os.PathLike[str] = MODEL_DIR, options: SegmenterOptions | None = None,
                   segmenter: Segmenter | None = None, auth: Auth | None = None, dry_run: bool = False,
                   out: str | os.PathLike[str] | None = None, retry: Retry = DEFAULT_RETRY,
                   log: Callable[[str], None] | None = None) -> PacsResult:
    """Retrieve a series from a DICOMweb server, segment it and store the results in its study.

    Args:
        url: DICOMweb root, e.g. ``http://pacs:8042/dicom-web``.
        study: StudyInstanceUID.
        series: SeriesInstanceUID; None: the study's only axial MR series.
        store: Any of ``seg``, ``rtstruct``: the objects written and stored.
        weights: Model source (default: the bundled weights; ignored when ``segmenter`` is given).
        options: How the model runs (ignored when ``segmenter`` is given).
        segmenter: A loaded segmenter to reuse (``--watch`` loads one for all series).
        auth: Credentials, or None.
        dry_run: Segment and write the files into ``out`` without storing anything.
        out: Keep the written files in ``out/<series UID>/``; None: a temporary folder, removed.
        retry: Retries of transient failures.
        log: Where progress lines go (default: stderr).

    Raises:
        PacsError: Any step failed; the message says which and, for a store, what was stored.
    """
    kinds = store_kinds(store)
    say = log or (lambda line: print(line, file=sys.stderr))
    pacs = Pacs(url, auth=auth, retry=retry)
    chosen = choose_series(pacs, study=study, series=series)
    with tempfile.TemporaryDirectory(prefix="segapp-dicomweb-") as scratch:
        start = time.perf_counter()
        files = pacs.retrieve_series(study, chosen.series, Path(scratch) / "series")
        seconds = {"retrieve": time.perf_counter() - start}
        say(f"retrieved {len(files)} instances of series {chosen.series} in {seconds['retrieve']:.1f} s")
        folder = Path(out) / chosen.series if out is not None else Path(scratch) / "results"
        try:
            done = process_volume(files, segmenter or _load(weights, options), folder,
                                  formats=[STORE_FORMATS[kind] for kind in kinds])
        except VolumeError as exc:
            step = "results cannot be written" if exc.reason in ("format", "write") else "series cannot be segmented"
            raise PacsError(f"the {step}: {exc}") from None
        seconds.update(segment=done.seconds["read"] + done.seconds["segment"], write=done.seconds["write"])
        result = PacsResult(study=study, series=chosen.series, prediction=done.prediction, seconds=seconds,
                            files={kind: done.files[STORE_FORMATS[kind]] for kind in kinds})
        if not dry_run:
            start = time.perf_counter()
            result.new_series = _store(pacs, study, result.files)
            seconds["store"] = time.perf_counter() - start
        if out is None:
            result.files = {}  # the temporary folder goes now
    return result


def choose_series(pacs: Pacs, *, study: str, series: str | None) -> SeriesInfo:
    """The series to segment: the one named (checked to be in the study), else the study's only
    axial MR series.

    Raises:
        PacsError: Unknown study or series, no axial MR series, or several (listed).
    """
    where = safe_url(pacs.url)
    listed = pacs.list_series(study=study, modality=None if series else "MR")
    if not listed and not pacs.study_exists(study):
        raise PacsError(f"study {study} does not exist on {where}")
    if series is not None:
        for info in listed:
            if info.series == series:
                return info
        raise PacsError(f"series {series} is not in study {study} on {where}")
    axial = [info for info in listed if pacs.is_axial(info)]
    if len(axial) == 1:
        return axial[0]
    if not axial:
        raise PacsError(f"study {study} has no axial MR series on {where}"
                        + "".join(f"\n  {info.line()}" for info in listed))
    lines = "".join(f"\n  {info.line()}" for info in axial)
    raise PacsError(f"study {study} has {len(axial)} axial MR series; choose one with --series UID:{lines}")


def store_kinds(store: Iterable[str]) -> list[str]:
    """The ``--store`` names, each once, in order.

    Raises:
        PacsError: An unknown name, or none.
    """
    kinds = list(dict.fromkeys(store))
    unknown = [kind for kind in kinds if kind not in STORE_FORMATS]
    if unknown or not kinds:
        raise PacsError(f"--store takes {', '.join(STORE_FORMATS)} (comma-separated), got {','.join(kinds)!r}")
    return kinds


def _load(weights: str | os.PathLike[str], options: SegmenterOptions | None) -> Segmenter:
    # Here, not at the top: torch loads only when a series is segmented, not for --help.
    from segapp.inference.segmenter import Segmenter

    return Segmenter.from_pretrained(weights, options)


def _store(pacs: Pacs, study: str, files: dict[str, Path]) -> dict[str, str]:
    """STOW-RS every file in one request; kind -> new SeriesInstanceUID, or a PacsError that
    says exactly which objects the server took."""
    # Here, not at the top: pydicom stays out of the command's --help.
    import pydicom

    datasets = {kind: pydicom.dcmread(path) for kind, path in files.items()}
    outcome = pacs.store(list(datasets.values()), study)
    if not outcome.ok:
        stored = [STORE_NAMES[k] for k, ds in datasets.items() if str(ds.SOPInstanceUID) in outcome.stored]
        failed = [STORE_NAMES[k] for k, ds in datasets.items() if str(ds.SOPInstanceUID) in outcome.failed]
        cause = f"{outcome.reason}; " if outcome.reason else ""
        raise PacsError(f"{cause}the server refused the {' and the '.join(failed)}; stored: "
                        f"{', '.join(stored) if stored else 'nothing'}")
    return {kind: str(ds.SeriesInstanceUID) for kind, ds in datasets.items()}


@dataclass
class WatchState:
    """What ``--watch`` has seen, saved as JSON between runs.

    Attributes:
        seen: SeriesInstanceUID -> what happened: ``done`` (with the new series' UIDs), ``failed``
            (with the reason; not tried again), ``baseline`` (there before the first run).
    """

    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatchState | None:
        """The saved state, or None when there is none yet."""
        if not path.exists():
            return None
        try:
            return cls(seen=dict(json.loads(path.read_text(encoding="utf-8"))["seen"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PacsError(f"the state file {path} is damaged ({exc}); move it away to start afresh") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"seen": self.seen}, indent=1, sort_keys=True) + "\n")


def watch(url: str, *, state: str | os.PathLike[str], description: str | None = None,
          interval_s: float = 30.0, polls: int | None = None, backlog: bool = False,
          auth: Auth | None = None, segmenter: Segmenter | None = None,
          weights: str | os.PathLike[str] = MODEL_DIR, options: SegmenterOptions | None = None,
          store: Iterable[str] = ("seg", "rtstruct"), dry_run: bool = False,
          out: str | os.PathLike[str] | None = None, retry: Retry = DEFAULT_RETRY,
          stop: threading.Event | None = None, log: Callable[[str], None] | None = None) -> list[PacsResult]:
    """Poll for new MR series and segment each once (see :func:`segment_series` for most arguments).

    Args:
        state: JSON file remembering the series seen, across restarts.
        description: Only series whose SeriesDescription matches this pattern (``fnmatch``,
            case-insensitive), e.g. ``"*T2*AX*"``; None: every MR series.
        interval_s: Seconds between polls.
        polls: Stop after this many polls; None: until ``stop`` is set or SIGTERM / SIGINT.
        backlog: On the first run (no state file), also process the series already there;
            by default they are recorded as a baseline and only later ones are processed.
        stop: Set it to stop after the series in progress.

    Returns:
        The round trips done, in order.
    """
    say = log or (lambda line: print(line, file=sys.stderr))
    stop = stop or threading.Event()
    path = Path(state)
    known = WatchState.load(path)
    first_run = known is None
    memory = known or WatchState()
    pacs = Pacs(url, auth=auth, retry=retry)
    results: list[PacsResult] = []
    with _stop_on_signals(stop):
        poll = 0
        while not stop.is_set() and (polls is None or poll < polls):
            if poll:
                stop.wait(interval_s)
                if stop.is_set():
                    break
            poll += 1
            try:
                new = [info for info in pacs.list_series(modality="MR")
                       if info.series not in memory.seen and _matches(info, description)]
            except PacsError as exc:  # the server may come back: keep polling
                say(f"poll {poll}: {exc}")
                continue
            if first_run and not backlog:
                memory.seen.update({info.series: {"status": "baseline"} for info in new})
                memory.save(path)
                say(f"first run: {len(new)} series already there recorded, not processed (--backlog does them)")
                first_run = False
                continue
            first_run = False
            for info in new:
                if stop.is_set():
                    break
                if segmenter is None:
                    segmenter = _load(weights, options)
                done = _watch_one(url, info, memory, auth=auth, segmenter=segmenter, store=store,
                                  dry_run=dry_run, out=out, retry=retry, say=say)
                memory.save(path)
                if done is not None:
                    results.append(done)
    return results


def _watch_one(url: str, info: SeriesInfo, memory: WatchState, *, say: Callable[[str], None],
               **options: Any) -> PacsResult | None:
    """One series under ``--watch``: its round trip, recorded in ``memory`` unless the failure
    was transient (then the next poll tries again)."""
    try:
        result = segment_series(url, study=info.study, series=info.series, log=say, **options)
    except PacsError as exc:
        say(f"series {info.series}: {exc}")
        if not exc.transient:
            memory.seen[info.series] = {"status": "failed", "reason": str(exc)}
        return None
    memory.seen[info.series] = {"status": "done", "study": info.study, "new_series": result.new_series}
    say(report(result))
    return result


def _matches(info: SeriesInfo, pattern: str | None) -> bool:
    return pattern is None or fnmatch.fnmatch(info.description.lower(), pattern.lower())


class _stop_on_signals:
    """Within the block, SIGTERM and SIGINT set ``stop`` (the series in progress finishes);
    the previous handlers come back after. Only the main thread can install handlers."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, lambda *_: self.stop.set())

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def report(result: PacsResult) -> str:
    """The lines printed for a round trip: organ volumes and the new series' UIDs (no patient data)."""
    organs = ", ".join(f"{name} {organ.volume_ml:.1f} mL" for name, organ in result.prediction.organs.items())
    lines = [f"series {result.series}: {organs}"]
    lines += [f"stored {STORE_NAMES[kind]} as series {uid}" for kind, uid in result.new_series.items()]
    lines += [f"wrote {STORE_NAMES[kind]} to {path}" for kind, path in result.files.items()]
    return "\n".join(lines)
