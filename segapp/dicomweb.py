"""Segment a series on a PACS and store the results back: ``python -m segapp.dicomweb``.

``--url URL --study UID [--series UID]`` retrieves the series by WADO-RS (with only a study: its
axial MR series, listed when there are several), segments it through the volume pipeline, and
stores the DICOM-SEG and the RTSTRUCT in the same study by STOW-RS, both in one request, so the
server takes or refuses them together. It prints the organ volumes and the new series' UIDs. The
work is done in :mod:`segapp.inference.pacs`; this module parses the command line.

``--watch`` polls QIDO-RS for MR series that appeared since the last poll (optionally only those
whose description matches a pattern), processes each once, remembers what it did in a small state
file across restarts, and stops cleanly on SIGTERM or Ctrl-C.

Credentials never go on the command line: ``--user NAME`` takes the password from the environment
variable ``SEGAPP_PACS_PASSWORD``, ``--bearer`` the token from ``SEGAPP_PACS_TOKEN``. Nothing
printed or logged carries patient data (names, ids, birth dates): series are named by UID and
description. Exit status: 0 done, 1 a PACS or segmentation step failed (the message says which and
what was stored), 2 unusable options.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from segapp.cli import add_device_option, add_weights_option, positive_int
from segapp.inference.options import SegmenterOptions
from segapp.inference.pacs import (  # the Python API, importable from here as before
    STORE_FORMATS,
    STORE_NAMES,
    PacsResult,
    WatchState,
    choose_series,
    report,
    segment_series,
    store_kinds,
    watch,
)
from segapp.io.dicomweb import Auth, PacsError, Retry

PASSWORD_ENV = "SEGAPP_PACS_PASSWORD"
TOKEN_ENV = "SEGAPP_PACS_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m segapp.dicomweb",
        description="Retrieve a series from a PACS by DICOMweb, segment it, and store the DICOM-SEG and "
        f"RTSTRUCT back in its study. Credentials: --user with ${PASSWORD_ENV}, or --bearer with ${TOKEN_ENV}.",
    )
    parser.add_argument("--url", required=True, help="DICOMweb root, e.g. http://pacs:8042/dicom-web")
    parser.add_argument("--study", metavar="UID", help="StudyInstanceUID (required unless --watch)")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID (default: the study's axial MR series)")
    parser.add_argument("--store", default="seg,rtstruct", type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
                        help="what to write and store: seg, rtstruct, comma-separated (default both)")
    add_weights_option(parser)
    add_device_option(parser)
    parser.add_argument("--user", help=f"HTTP basic login; the password comes from ${PASSWORD_ENV}")
    parser.add_argument("--bearer", action="store_true", help=f"send the bearer token in ${TOKEN_ENV}")
    parser.add_argument("--dry-run", action="store_true", help="segment and write the files into --out, store nothing")
    parser.add_argument("--out", help="keep the written files in OUT/<series UID>/ (needed with --dry-run)")
    parser.add_argument("--retries", type=positive_int, default=4,
                        help="attempts for transient failures, with back-off 1, 2, 4 s ... (default 4)")
    watching = parser.add_argument_group("watching")
    watching.add_argument("--watch", action="store_true", help="poll for new MR series and process each once")
    watching.add_argument("--description", metavar="PATTERN", help='only series whose description matches, e.g. "*T2*AX*"')
    watching.add_argument("--interval", type=float, default=30.0, help="seconds between polls (default 30)")
    watching.add_argument("--polls", type=positive_int, default=None, help="stop after N polls (default: until SIGTERM)")
    watching.add_argument("--state", default="segapp-dicomweb-state.json", help="what was done, across restarts")
    watching.add_argument("--backlog", action="store_true", help="first run: also process the series already there")
    return parser


def auth_from_environment(args: argparse.Namespace) -> Auth | None:
    """Credentials from the flags and the environment (never a password flag)."""
    if args.user and args.bearer:
        raise PacsError("use --user or --bearer, not both")
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise PacsError(f"--user needs the password in the environment variable {PASSWORD_ENV}")
        return Auth(user=args.user, password=password)
    if args.bearer:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise PacsError(f"--bearer needs the token in the environment variable {TOKEN_ENV}")
        return Auth(token=token)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # Here, not at the top: segapp.model.weights imports torch, which --help does without.
    from segapp.model.weights import ModelLoadError

    args = build_parser().parse_args(argv)
    try:
        auth = auth_from_environment(args)
        if args.dry_run and not args.out:
            raise PacsError("--dry-run writes the files into --out: give one")
        if not args.watch and not args.study:
            raise PacsError("--study is required (or --watch)")
        store_kinds(args.store)
        options = SegmenterOptions.from_args(args)
    except (PacsError, ValueError) as exc:  # ValueError: the Segmenter's options

        print(f"error: {exc}", file=sys.stderr)
        return 2
    common: dict[str, Any] = dict(auth=auth, weights=args.weights, options=options, store=args.store,
                                  dry_run=args.dry_run, out=args.out, retry=Retry(attempts=args.retries))
    try:
        if args.watch:
            watch(args.url, state=args.state, description=args.description, interval_s=args.interval,
                  polls=args.polls, backlog=args.backlog, **common)
            return 0
        result = segment_series(args.url, study=args.study, series=args.series, **common)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(result))
    return 0


__all__ = ["STORE_FORMATS", "STORE_NAMES", "PacsResult", "WatchState", "auth_from_environment", "build_parser",
           "choose_series", "main", "report", "segment_series", "watch"]


if __name__ == "__main__":
    sys.exit(main())
