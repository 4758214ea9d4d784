"""Phantom volumes shared by the volume tab's tests: a few slices each, so tests stay fast."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

VOLUME_SLICES = 6


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Playwright) launched as the benchmark does; a skip where there is none."""
    from segapp.bench.browser import CHROMIUM_ARGS, find_chromium

    sync_api = pytest.importorskip("playwright.sync_api")
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium is not installed")
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as exc:  # a broken browser install is a skip, not a failure
            pytest.skip(f"Chromium does not start: {exc}")
        yield chromium
        chromium.close()


def zip_folder(folder: Path, archive: Path) -> Path:
    """``archive`` holding every file under ``folder`` (paths relative to it)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, arcname=path.relative_to(folder).as_posix())
    return archive


@pytest.fixture(scope="session")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A phantom MR series of :data:`VOLUME_SLICES` slices as files, a zip, a zip of two series,
    the same volume as NIfTI and as a zipped case-day folder of PNG slices."""
    from segapp.synthetic.volume import phantom_volume
    from segapp.synthetic.volume_files import write_dicom_series, write_nifti_pair

    root = tmp_path_factory.mktemp("volumes")
    volume = phantom_volume(3, 2, 1, first=60, count=VOLUME_SLICES)
    files = write_dicom_series(volume, root / "one" / "series")
    write_dicom_series(phantom_volume(4, 3, 1, first=60, count=4), root / "two" / "second", seed=1)
    write_dicom_series(volume, root / "two" / "first")
    image, _ = write_nifti_pair(volume, root / "nifti")
    # The same slices as a zipped competition case-day folder (caseN_dayD/scans/slice_....png).
    scans = root / "case-day" / f"case{volume.case}_day{volume.day}" / "scans"
    scans.mkdir(parents=True)
    _, height, width = volume.image16.shape
    for plane, number in zip(volume.image16, volume.slice_numbers):
        name = f"slice_{number:04d}_{width}_{height}_{volume.spacing_mm[2]:.2f}_{volume.spacing_mm[1]:.2f}.png"
        Image.fromarray(plane).save(scans / name)
    return {
        "case_day_zip": zip_folder(root / "case-day", root / "case-day.zip"),
        "folder": root / "one" / "series",
        "first_file": files[0],
        "zip": zip_folder(root / "one", root / "series.zip"),
        "two_series_zip": zip_folder(root / "two", root / "two-series.zip"),
        "nifti": image,
    }
