"""DICOMweb client side: find a series (QIDO-RS), retrieve it (WADO-RS), store results (STOW-RS).

Every failure comes out as :class:`PacsError`, whose message says what went wrong and what to do,
and names neither credentials nor patient data. Transient failures (server unreachable, time-outs,
HTTP 408/429/502/503/504) are retried with exponential back-off, a bounded number of times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from segapp.io.files import atomic_path
from segapp.io.volume import AXIAL_TOLERANCE_DEG, MAX_FILES

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# DICOM JSON tags (QIDO-RS and metadata answers use these keys).
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_MODALITY, _DESCRIPTION, _COUNT = "00080060", "0008103E", "00201209"
_ORIENTATION = "00200037"


class PacsError(RuntimeError):
    """A DICOMweb step failed; the message is meant for the user.

    Attributes:
        transient: The cause may go away by itself (server down, overloaded): worth another try later.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Auth:
    """How to log in: HTTP basic (``user`` + ``password``) or a bearer ``token``; never shown in repr."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Retry:
    """Bounded retries of transient failures: ``attempts`` in all, waits ``backoff_s`` x 1, 2, 4, ..."""

    attempts: int = 4
    backoff_s: float = 1.0


DEFAULT_RETRY = Retry()


@dataclass(frozen=True)
class SeriesInfo:
    """A series as QIDO-RS lists it (no patient data).

    Attributes:
        study: StudyInstanceUID.
        series: SeriesInstanceUID.
        modality: Modality, e.g. "MR".
        description: SeriesDescription ("" when absent).
        instances: Number of instances, or None when the server does not say.
    """

    study: str
    series: str
    modality: str
    description: str
    instances: int | None

    def line(self) -> str:
        """One line for a listing: description, instance count, UID."""
        count = "?" if self.instances is None else str(self.instances)
        return f"{self.description or '(no description)'}, {count} instances, {self.modality}: {self.series}"


@dataclass(frozen=True)
class StoreOutcome:
    """What a STOW-RS answer says about each object sent (SOPInstanceUIDs stored and not), and
    the failed request's message when the server was asked afterwards what it holds."""

    stored: tuple[str, ...]
    failed: tuple[str, ...]
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


def safe_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Pacs:
    """A DICOMweb server: every call translated into :class:`PacsError` and retried when transient.

    Args:
        url: The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        auth: Credentials, or None.
        retry: Retry policy for transient failures.
        timeout_s: Per-request time-out (connect and each read).
    """

    def __init__(self, url: str, *, auth: Auth | None = None, retry: Retry = DEFAULT_RETRY,
                 timeout_s: float = 60.0) -> None:
        # here: dicomweb_client (0.35 s to import) only when a server is used, not at start-up
        from dicomweb_client import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        if urlsplit(url).scheme not in ("http", "https"):
            raise PacsError(f"--url must start with http:// or https://, got {safe_url(url)!r}")
        if urlsplit(url).username or urlsplit(url).password:
            raise PacsError("put no credentials in the URL: use --user (password from the environment) or a token")
        self.url = url.rstrip("/")
        self.retry = retry
        auth = auth or Auth()
        if auth.user is not None:
            session = create_session_from_user_pass(auth.user, auth.password or "")
        else:
            session = create_session()
        headers = {"Authorization": f"Bearer {auth.token}"} if auth.token else None
        self.client = DICOMwebClient(self.url, session=session, headers=headers, timeout=timeout_s)
        # One retry policy (ours, which also covers connection errors), not two stacked.
        self.client.set_http_retry_params(retry=False)

    # -- error handling --------------------------------------------------------------------

    def call(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` (one DICOMweb step described by ``what``), retrying transient failures."""
        for attempt in range(self.retry.attempts):
            try:
                return action()
            except PacsError as exc:
                error = exc
            except Exception as exc:  # requests' and the client's errors, translated below
                error = self.translate(exc, what)
            if not error.transient or attempt + 1 == self.retry.attempts:
                raise error
            time.sleep(self.retry.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def translate(self, exc: Exception, what: str) -> PacsError:
        """A clear :class:`PacsError` for a failure of ``what``."""
        import requests  # here: requests (0.1 s to import) stays out of start-up

        where = safe_url(self.url)
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return PacsError(f"{what}: the transfer from {where} stopped half-way; try again", transient=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return PacsError(f"{what}: cannot reach the DICOMweb server at {where}; is it running and is "
                             "--url right?", transient=True)
        if isinstance(exc, requests.exceptions.Timeout):
            return PacsError(f"{what}: {where} did not answer in time", transient=True)
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == 401:
                return PacsError(f"{what}: {where} refused the login (HTTP 401); check --user and the "
                                 "password variable, or the token")
            if status == 403:
                return PacsError(f"{what}: this account may not do that on {where} (HTTP 403)")
            if status == 404:
                return PacsError(f"{what}: not found on {where} (HTTP 404); check the UIDs and that --url "
                                 "is the DICOMweb root (e.g. .../dicom-web)")
            return PacsError(f"{what}: {where} answered HTTP {status}", transient=status in TRANSIENT_STATUS)
        return PacsError(f"{what}: unexpected answer from {where} ({type(exc).__name__})")

    # -- QIDO-RS ---------------------------------------------------------------------------

    def list_series(self, *, study: str | None = None, modality: str | None = "MR") -> list[SeriesInfo]:
        """The series of ``study`` (or of the whole server) with ``modality`` (None: any)."""
        filters = {"Modality": modality} if modality else None
        fields = ["SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyInstanceUID"]
        found = self.call("searching series", lambda: self.client.search_for_series(
            study_instance_uid=study, search_filters=filters, fields=fields))
        return [_series_info(item, study) for item in found]

    def instance_uids(self, study: str, series: str) -> list[str]:
        """SOPInstanceUIDs of a series."""
        found = self.call("listing the series' instances", lambda: self.client.search_for_instances(
            study_instance_uid=study, series_instance_uid=series))
        return [_value(item, _SOP_UID) for item in found]

    def study_exists(self, study: str) -> bool:
        """Whether the server knows the study."""
        found = self.call("searching the study", lambda: self.client.search_for_studies(
            search_filters={"StudyInstanceUID": study}))
        return bool(found)

    def is_axial(self, info: SeriesInfo) -> bool:
        """Whether a series' first instance is axial (from its WADO-RS metadata, no pixel data)."""
        uids = self.instance_uids(info.study, info.series)
        if not uids:
            return False
        meta = self.call("reading series metadata", lambda: self.client.retrieve_instance_metadata(
            info.study, info.series, uids[0]))
        values = meta.get(_ORIENTATION, {}).get("Value")
        if not values or len(values) != 6:
            return False
        normal = np.cross(np.asarray(values[:3], float), np.asarray(values[3:], float))
        tilt = np.degrees(np.arccos(min(1.0, abs(normal[2]) / (np.linalg.norm(normal) or 1.0))))
        return bool(tilt <= AXIAL_TOLERANCE_DEG)

    # -- WADO-RS ---------------------------------------------------------------------------

    def retrieve_series(self, study: str, series: str, folder: Path) -> list[Path]:
        """Save every instance of a series into ``folder`` (one file each, named by index).

        Raises:
            PacsError: Unknown series, too many instances, or fewer instances came than the
                server lists (a retrieval that stopped half-way), after the retries.
        """
        expected = set(self.instance_uids(study, series))
        if not expected:
            raise PacsError(f"series {series} has no instances in study {study} on {safe_url(self.url)}")
        if len(expected) > MAX_FILES:
            raise PacsError(f"series {series} has {len(expected)} instances, more than {MAX_FILES}")

        def fetch() -> list[Path]:
            for old in folder.glob("*.dcm"):  # a retry starts afresh
                old.unlink()
            paths, got = [], set()
            # Streamed: one instance in memory at a time, written as it arrives.
            for index, dataset in enumerate(self.client.iter_series(study, series)):
                path = folder / f"{index:05d}.dcm"
                with atomic_path(path, suffix=".dcm") as temp:
                    dataset.save_as(temp, enforce_file_format=True)
                paths.append(path)
                got.add(str(dataset.SOPInstanceUID))
            if got != expected:
                raise PacsError(f"retrieving the series: {len(got & expected)} of {len(expected)} instances "
                                "came; the retrieval stopped half-way", transient=True)
            return paths

        folder.mkdir(parents=True, exist_ok=True)
        return self.call("retrieving the series", fetch)

    # -- STOW-RS ---------------------------------------------------------------------------

    def store(self, datasets: Sequence[Any], study: str) -> StoreOutcome:
        """Store ``datasets`` in ``study`` in one STOW-RS request (the server takes them together).

        Retrying is safe: a repeat of the same SOPInstanceUIDs replaces, it does not duplicate.
        On a failed request the server is asked which of the objects it holds: none (or no
        answer) raises :class:`PacsError`, some gives the outcome with the request's message.
        """
        uids = [str(ds.SOPInstanceUID) for ds in datasets]
        try:
            answer = self.call("storing the results", lambda: self.client.store_instances(
                datasets=list(datasets), study_instance_uid=study))
        except PacsError as exc:
            try:
                held = self.stored_uids(study, uids)
            except PacsError:
                raise PacsError(f"{exc}; whether anything was stored could not be checked",
                                transient=exc.transient) from None
            if not held:
                raise PacsError(f"{exc}; nothing was stored", transient=exc.transient) from None
            # The request failed, yet part of it landed: say which, through the outcome.
            return StoreOutcome(stored=tuple(held), failed=tuple(u for u in uids if u not in held), reason=str(exc))
        return stow_outcome(answer, uids)

    def stored_uids(self, study: str, uids: Sequence[str]) -> list[str]:
        """Which of ``uids`` the server holds in ``study`` (QIDO-RS, one query each)."""
        def holds(uid: str) -> bool:
            return bool(self.call("checking what was stored", lambda: self.client.search_for_instances(
                study_instance_uid=study, search_filters={"SOPInstanceUID": uid})))

        return [uid for uid in uids if holds(uid)]


def stow_outcome(answer: Any, uids: Sequence[str]) -> StoreOutcome:
    """Read a STOW-RS answer: an object is stored when it is referenced and not in the
    FailedSOPSequence (which the answer always carries, empty on success)."""
    failed = {str(item.ReferencedSOPInstanceUID) for item in answer.get("FailedSOPSequence", [])}
    referenced = {str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", [])}
    stored = tuple(uid for uid in uids if uid in referenced and uid not in failed)
    return StoreOutcome(stored=stored, failed=tuple(uid for uid in uids if uid not in stored))


def _value(item: dict[str, Any], tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def _series_info(item: dict[str, Any], study: str | None) -> SeriesInfo:
    count = _value(item, _COUNT, None)
    return SeriesInfo(study=str(_value(item, _STUDY_UID, study or "")), series=str(_value(item, _SERIES_UID)),
                      modality=str(_value(item, _MODALITY)), description=str(_value(item, _DESCRIPTION)),
                      instances=None if count is None else int(count))
