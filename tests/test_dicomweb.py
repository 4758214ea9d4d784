"""The PACS round trip against a real Orthanc with its DICOMweb plugin, on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from helpers import free_port

from segapp import dicomweb
from segapp.inference import pacs
from segapp.io.dicom_seg import read_dicom_seg_labels
from segapp.io.dicomweb import Auth, Pacs, PacsError, Retry, StoreOutcome, stow_outcome
from segapp.io.readers import read_volume
from segapp.io.rtstruct import read_rtstruct_labels
from segapp.synthetic.volume import phantom_volume
from segapp.synthetic.volume_files import write_dicom_series

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
pytestmark = pytest.mark.skipif(
    not (ORTHANC.exists() and PLUGIN.exists()),
    reason="Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)",
)
FAST = Retry(attempts=2, backoff_s=0.01)  # transient failures: one retry, no long waits in tests
USERS = {"alice": "right-password"}


class Orthanc:
    """One Orthanc process in the foreground, its storage in ``folder``; loopback only."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None) -> None:
        self.folder, self.users, self.port = folder, users, free_port()
        self.process: subprocess.Popen | None = None
        config = {
            "Name": "segapp-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.port, "RemoteAccessAllowed": False, "DicomServerEnabled": False,
            "OrthancExplorerEnabled": False, "AuthenticationEnabled": users is not None,
            "RegisteredUsers": users or {}, "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "config.json").write_text(json.dumps(config))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def http(self, method: str, path: str, **kwargs) -> requests.Response:
        auth = next(iter(self.users.items())) if self.users else None
        return requests.request(method, self.url + path, auth=auth, timeout=10, **kwargs)

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen([str(ORTHANC), str(self.folder / "config.json")], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.http("GET", "/system").ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"Orthanc did not start; see {self.folder / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def upload(self, files: list[Path]) -> None:
        for file in files:
            self.http("POST", "/instances", data=file.read_bytes(),
                      headers={"Content-Type": "application/dicom"}).raise_for_status()

    def series_of(self, study: str, modality: str) -> list[str]:
        """SeriesInstanceUIDs of ``modality`` in ``study``, by QIDO-RS."""
        answer = self.http("GET", f"/dicom-web/studies/{study}/series", params={"Modality": modality})
        return [] if answer.status_code == 204 else [item["0020000E"]["Value"][0] for item in answer.json()]


def started(folder: Path, **kwargs) -> Orthanc:
    folder.mkdir(parents=True, exist_ok=True)
    server = Orthanc(folder, **kwargs)
    server.start()
    return server


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy set in the environment must not carry test traffic off this machine.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    server = started(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def phantom_series(folder: Path, seed: int, count: int = 4) -> tuple[list[Path], pydicom.Dataset]:
    """A phantom MR series (``count`` slices) written to ``folder``: its files and first header."""
    files = write_dicom_series(phantom_volume(seed, 3, 1, first=60, count=count), folder, seed=seed)
    return files, pydicom.dcmread(files[0], stop_before_pixels=True)


@pytest.fixture(scope="module")
def uploaded(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory):
    files, header = phantom_series(tmp_path_factory.mktemp("series"), seed=11)
    orthanc.upload(files)
    return files, header


def sagittal_copy(files: list[Path], folder: Path) -> list[Path]:
    """The same images as a sagittal series of the same study (new series and instance UIDs)."""
    folder.mkdir()
    series_uid = pydicom.uid.generate_uid()
    copies = []
    for index, file in enumerate(files):
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, "T2 SAG (phantom)"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [index * 3.0, 0, 0]
        ds.save_as(folder / f"{index}.dcm")
        copies.append(folder / f"{index}.dcm")
    return copies


# ---------------------------------------------------------------------------------------------
# The round trip


def test_round_trip_stores_seg_and_rtstruct_in_the_study_decoding_to_predict_volume(
        orthanc: Orthanc, uploaded, tiny_segmenter, tmp_path: Path) -> None:
    files, header = uploaded
    study = str(header.StudyInstanceUID)
    start = time.perf_counter()
    result = pacs.segment_series(orthanc.dicomweb, study=study, segmenter=tiny_segmenter, retry=FAST,
                                     log=lambda _: None)
    seconds = time.perf_counter() - start
    print(f"round trip of a 4-slice series against local Orthanc: {seconds:.2f} s {result.seconds}")
    assert result.series == str(header.SeriesInstanceUID) and set(result.new_series) == {"seg", "rtstruct"}
    # Found again through QIDO-RS in the same study, one new series each.
    assert orthanc.series_of(study, "SEG") == [result.new_series["seg"]]
    assert orthanc.series_of(study, "RTSTRUCT") == [result.new_series["rtstruct"]]
    # Retrieved by WADO-RS, they decode to predict_volume's labels on the source series.
    volume = read_volume(files)
    expected = tiny_segmenter.predict_volume(volume).labels
    assert np.array_equal(result.prediction.labels, expected) and expected.any()
    client = Pacs(orthanc.dicomweb).client
    for kind, reader in (("seg", read_dicom_seg_labels), ("rtstruct", read_rtstruct_labels)):
        [stored] = client.retrieve_series(study, result.new_series[kind])
        stored.save_as(tmp_path / f"{kind}.dcm")
        assert np.array_equal(reader(tmp_path / f"{kind}.dcm", volume), expected), kind


def test_command_dry_run_writes_locally_stores_nothing_and_prints_no_patient_data(
        orthanc: Orthanc, uploaded, tiny_model_dir, tmp_path: Path, capsys) -> None:
    files, header = uploaded
    study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
    before = orthanc.series_of(study, "SEG")
    code = dicomweb.main(["--url", orthanc.dicomweb, "--study", study, "--series", series, "--store", "seg",
                          "--weights", str(tiny_model_dir), "--device", "cpu", "--dry-run", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / series / "seg.dcm").is_file() and not (tmp_path / series / "rtstruct.dcm").exists()
    assert "stomach" in out and " mL" in out and "stored" not in out
    assert orthanc.series_of(study, "SEG") == before
    for secret in (str(header.PatientName), str(header.PatientID), str(header.PatientBirthDate)):
        assert secret not in out + err


def test_a_study_with_several_mr_series_picks_the_axial_one_and_refuses_a_sagittal_one(
        orthanc: Orthanc, uploaded, tiny_segmenter, tmp_path: Path) -> None:
    files, header = uploaded
    study = str(header.StudyInstanceUID)
    sagittal = sagittal_copy(files, tmp_path / "sagittal")
    orthanc.upload(sagittal)
    client = Pacs(orthanc.dicomweb, retry=FAST)
    assert pacs.choose_series(client, study=study, series=None).series == str(header.SeriesInstanceUID)
    with pytest.raises(PacsError, match="cannot be segmented.*(sagittal|axial)"):
        pacs.segment_series(orthanc.dicomweb, study=study, series=str(pydicom.dcmread(sagittal[0]).SeriesInstanceUID),
                                segmenter=tiny_segmenter, retry=FAST, log=lambda _: None)
    # Two axial series of one study are listed, and one must be chosen.
    other, _ = phantom_series(tmp_path / "second", seed=11)
    for file in other:
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID = "1.2.3.4.5.6"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(file)
    orthanc.upload(other)
    with pytest.raises(PacsError, match="2 axial MR series; choose one with --series") as caught:
        pacs.choose_series(client, study=study, series=None)
    described = str(pydicom.dcmread(other[0]).SeriesDescription)  # the sequence of the case's contrast family
    assert "1.2.3.4.5.6" in str(caught.value) and described in str(caught.value)


def test_the_docs_python_snippet_runs_against_orthanc(orthanc: Orthanc, tiny_segmenter, tmp_path: Path,
                                                     monkeypatch) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "pacs.md").read_text(encoding="utf-8")
    [block] = re.findall(r"^```py\n(.*?)^```", page, flags=re.M | re.S)
    files, header = phantom_series(tmp_path / "series", seed=16, count=3)
    orthanc.upload(files)
    # The bundled weights would do, slower: the tiny model stands in for them.
    monkeypatch.setattr(pacs, "_load", lambda weights, options: tiny_segmenter)
    namespace: dict[str, object] = {"study_uid": str(header.StudyInstanceUID)}
    exec(compile(block.replace("http://127.0.0.1:8042", orthanc.url), "docs/pacs.md", "exec"), namespace)
    assert set(namespace["result"].new_series) == {"seg", "rtstruct"}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Faults


def test_unknown_study_or_series_is_a_clear_error(orthanc: Orthanc, uploaded, capsys) -> None:
    _, header = uploaded
    code = dicomweb.main(["--url", orthanc.dicomweb, "--study", "1.2.3.999", "--retries", "1"])
    assert code == 1 and "study 1.2.3.999 does not exist" in capsys.readouterr().err
    code = dicomweb.main(["--url", orthanc.dicomweb, "--study", str(header.StudyInstanceUID),
                          "--series", "1.2.3.998", "--retries", "1"])
    assert code == 1 and "series 1.2.3.998 is not in study" in capsys.readouterr().err


def test_server_down_is_retried_with_back_off_then_a_clear_error(monkeypatch, capsys) -> None:
    waits: list[float] = []
    monkeypatch.setattr("segapp.io.dicomweb.time.sleep", waits.append)
    code = dicomweb.main(["--url", f"http://127.0.0.1:{free_port()}/dicom-web", "--study", "1.2.3", "--retries", "3"])
    assert code == 1 and "cannot reach the DICOMweb server" in capsys.readouterr().err
    assert waits == [1.0, 2.0]  # three attempts, exponential back-off between them


def test_orthanc_stopped_mid_run_stores_nothing(tiny_segmenter, tmp_path: Path, monkeypatch) -> None:
    server = started(tmp_path / "orthanc")
    try:
        files, header = phantom_series(tmp_path / "series", seed=12, count=3)
        server.upload(files)
        real = tiny_segmenter.predict_volume

        def predict_then_lose_the_server(volume, **options):
            server.stop()  # the series is retrieved; the store will find nobody
            return real(volume, **options)

        monkeypatch.setattr(tiny_segmenter, "predict_volume", predict_then_lose_the_server)
        with pytest.raises(PacsError, match="storing the results: cannot reach"):
            pacs.segment_series(server.dicomweb, study=str(header.StudyInstanceUID), segmenter=tiny_segmenter,
                                    retry=FAST, log=lambda _: None)
        server.start()
        study = str(header.StudyInstanceUID)
        assert server.series_of(study, "SEG") == [] and server.series_of(study, "RTSTRUCT") == []
    finally:
        server.stop()


def test_wrong_credentials_are_refused_and_the_right_ones_work(tiny_model_dir, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    server = started(tmp_path / "orthanc", users=USERS)
    try:
        files, header = phantom_series(tmp_path / "series", seed=13, count=3)
        server.upload(files)
        study = str(header.StudyInstanceUID)
        args = ["--url", server.dicomweb, "--study", study, "--weights", str(tiny_model_dir), "--device", "cpu",
                "--user", "alice"]
        monkeypatch.delenv(dicomweb.PASSWORD_ENV, raising=False)
        assert dicomweb.main(args) == 2 and dicomweb.PASSWORD_ENV in capsys.readouterr().err
        assert dicomweb.main(args[:-2]) == 1 and "HTTP 401" in capsys.readouterr().err  # no login at all
        monkeypatch.setenv(dicomweb.PASSWORD_ENV, "wrong-password")
        assert dicomweb.main(args) == 1
        err = capsys.readouterr().err
        assert "refused the login (HTTP 401)" in err and "wrong-password" not in err
        monkeypatch.setenv(dicomweb.PASSWORD_ENV, USERS["alice"])
        assert dicomweb.main(args) == 0, capsys.readouterr().err
        assert "stored DICOM-SEG as series" in capsys.readouterr().out
        assert len(server.series_of(study, "SEG")) == 1 and len(server.series_of(study, "RTSTRUCT")) == 1
    finally:
        server.stop()


def test_a_bearer_token_is_sent_and_never_shown() -> None:
    pacs = Pacs("http://127.0.0.1:9/dicom-web", auth=Auth(token="tok-123"))
    assert pacs.client._session.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(Auth(token="tok-123")) and "pw" not in repr(Auth(user="u", password="pw"))
    with pytest.raises(PacsError, match="no credentials in the URL"):
        Pacs("http://u:pw@127.0.0.1:9/dicom-web")


def test_a_retrieval_that_stops_half_way_is_retried_then_reported(orthanc: Orthanc, uploaded, tmp_path: Path,
                                                                 monkeypatch) -> None:
    _, header = uploaded
    study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
    pacs = Pacs(orthanc.dicomweb, retry=FAST)
    real = pacs.client.iter_series
    calls = []

    def two_then_cut(*args, **kwargs):
        calls.append(1)
        for index, dataset in enumerate(real(*args, **kwargs)):
            if index == 2:
                raise requests.exceptions.ChunkedEncodingError("connection broken")
            yield dataset

    monkeypatch.setattr(pacs.client, "iter_series", two_then_cut)
    with pytest.raises(PacsError, match="stopped half-way"):
        pacs.retrieve_series(study, series, tmp_path / "a")
    assert len(calls) == 2
    # Fewer instances than QIDO-RS lists, without any error from the transport, is caught too.
    monkeypatch.setattr(pacs.client, "iter_series", lambda *a, **k: list(real(*a, **k))[:1])
    with pytest.raises(PacsError, match="1 of 4 instances came"):
        pacs.retrieve_series(study, series, tmp_path / "b")


def _dataset(path: Path, sop: str, series: str) -> Path:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = pydicom.uid.SegmentationStorage, sop, series
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_stow_answer_with_a_failure_says_which_object_was_stored(tmp_path: Path) -> None:
    answer = pydicom.Dataset()
    answer.FailedSOPSequence = [pydicom.Dataset()]
    answer.FailedSOPSequence[0].ReferencedSOPInstanceUID = "1.2"
    answer.ReferencedSOPSequence = [pydicom.Dataset()]
    answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.1"
    assert stow_outcome(answer, ["1.1", "1.2"]) == StoreOutcome(stored=("1.1",), failed=("1.2",))
    empty = pydicom.Dataset()
    empty.FailedSOPSequence = []
    assert stow_outcome(empty, ["1.1"]) == StoreOutcome(stored=(), failed=("1.1",))  # nothing referenced

    class HalfTaking:
        def store(self, datasets, study):
            return StoreOutcome(stored=("1.1",), failed=("1.2",))

    files = {"seg": _dataset(tmp_path / "seg.dcm", "1.1", "9.1"), "rtstruct": _dataset(tmp_path / "rt.dcm", "1.2", "9.2")}
    with pytest.raises(PacsError, match="refused the RTSTRUCT; stored: DICOM-SEG"):
        pacs._store(HalfTaking(), "1", files)  # type: ignore[arg-type]


def test_a_store_cut_after_the_seg_says_plainly_that_only_the_seg_was_stored(
        orthanc: Orthanc, tiny_segmenter, tmp_path: Path, monkeypatch) -> None:
    from dicomweb_client import DICOMwebClient

    files, header = phantom_series(tmp_path / "series", seed=15, count=3)
    orthanc.upload(files)
    real = DICOMwebClient.store_instances

    def seg_then_cut(self, datasets, study_instance_uid=None):
        real(self, datasets[:1], study_instance_uid=study_instance_uid)
        raise requests.exceptions.ConnectionError("connection reset")

    monkeypatch.setattr(DICOMwebClient, "store_instances", seg_then_cut)
    with pytest.raises(PacsError, match="refused the RTSTRUCT; stored: DICOM-SEG"):
        pacs.segment_series(orthanc.dicomweb, study=str(header.StudyInstanceUID), segmenter=tiny_segmenter,
                                retry=FAST, log=lambda _: None)
    study = str(header.StudyInstanceUID)
    assert len(orthanc.series_of(study, "SEG")) == 1 and orthanc.series_of(study, "RTSTRUCT") == []


# ---------------------------------------------------------------------------------------------
# Watching


def test_watch_picks_up_a_new_series_once_across_restarts(orthanc: Orthanc, uploaded, tiny_segmenter,
                                                          tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    quiet = {"segmenter": tiny_segmenter, "retry": FAST, "log": lambda _: None, "interval_s": 0.05}
    # First run: what is there already is the baseline, not processed.
    assert pacs.watch(orthanc.dicomweb, state=state, polls=1, **quiet) == []
    files, header = phantom_series(tmp_path / "new", seed=14, count=3)
    orthanc.upload(files)
    done = pacs.watch(orthanc.dicomweb, state=state, polls=2, description="*AX (phantom)*", **quiet)
    assert [r.series for r in done] == [str(header.SeriesInstanceUID)]
    assert pacs.watch(orthanc.dicomweb, state=state, polls=1, **quiet) == []  # remembered
    assert len(orthanc.series_of(str(header.StudyInstanceUID), "SEG")) == 1
    saved = json.loads(state.read_text())["seen"][str(header.SeriesInstanceUID)]
    assert saved["status"] == "done" and set(saved["new_series"]) == {"seg", "rtstruct"}


def test_watch_stops_cleanly_on_sigterm(orthanc: Orthanc, tiny_segmenter, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    start = time.monotonic()
    pacs.watch(orthanc.dicomweb, state=tmp_path / "state.json", interval_s=0.1, segmenter=tiny_segmenter,
                   log=lambda _: None)
    timer.join()
    assert time.monotonic() - start < 5 and signal.getsignal(signal.SIGTERM) is before
