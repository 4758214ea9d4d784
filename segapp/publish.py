"""Publish a model folder on the HuggingFace hub: ``python -m segapp.publish FOLDER --repo org/name``.

Uploads exactly the saved-model contract (``config.json``, ``model.safetensors``,
``preprocessor_config.json`` and the model card ``README.md``) after checking that the folder
loads; anything else in it (a ``last/`` folder's pickled training state, notes) stays local.
The published id then works everywhere weights are taken: ``python app.py --weights org/name``,
``SEGAPP_WEIGHTS=org/name`` for a Space or a Docker build (``--build-arg HUB_WEIGHTS=org/name``).

Typical use after training: ``python -m segapp.publish runs/exp/best --repo org/name --private``.
The token comes from ``--token``, else ``HF_TOKEN``, else ``hf auth login``; it is never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi

from segapp.model.processing import PREPROCESSOR_FILE
from segapp.model.weights import CARD_FILE, WEIGHTS_FILE, ModelLoadError, load_model

CONFIG_FILE = "config.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE, CARD_FILE)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class PublishError(ValueError):
    """A folder or repository id that cannot be published; the message says what to do."""


@dataclass(frozen=True)
class PublishResult:
    """What was published.

    Attributes:
        repo_id: ``org/name`` on the hub.
        url: The repository's page.
        commit_url: The upload commit's page.
        files: Uploaded file names (always :data:`MODEL_FILES`).
        skipped: Files of the folder that were not uploaded, by name.
    """

    repo_id: str
    url: str
    commit_url: str
    files: tuple[str, ...]
    skipped: tuple[str, ...]


def publish_model(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Check a saved model folder, create the model repository if needed, and upload the folder.

    Args:
        folder: A folder written by training or :func:`segapp.model.weights.save_model`.
        repo_id: ``org/name`` (or ``user/name``) of a model repository.
        private: Create the repository as private; an existing repository keeps its visibility.
        token: A write token; None uses ``HF_TOKEN`` or the saved login.
        commit_message: Defaults to "Upload segapp model from <folder name>".

    Returns:
        Where it went and which files were uploaded or left out.

    Raises:
        PublishError: Bad repository id, missing files, or weights that do not load.
        huggingface_hub.errors.HfHubHTTPError: The hub refused (no write access, bad token).
        Exception: Network errors of the hub client, as it raises them.
    """
    if not _REPO_ID.fullmatch(repo_id):
        raise PublishError(f"'{repo_id}' is not a repository id: give it as org/name, e.g. my-lab/segapp-b0.")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise PublishError(f"{path} is not a folder: give a model folder such as runs/exp/best.")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise PublishError(
            f"{path} is not a complete model folder (missing {', '.join(missing)}). Publish a folder "
            "written by training (runs/<name>/best) or by segapp.model.weights.save_model."
        )
    try:
        load_model(path)  # never publish weights that the app could not serve
    except ModelLoadError as exc:
        raise PublishError(f"{path} does not load, so it is not published: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file raises its reader's own error types
        raise PublishError(
            f"{path} does not load, so it is not published ({type(exc).__name__}: {exc})"
        ) from None

    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(path),
        repo_id=repo_url.repo_id,
        repo_type="model",
        allow_patterns=list(MODEL_FILES),
        commit_message=commit_message or f"Upload segapp model from {path.name}",
    )
    skipped = sorted(p.name for p in path.iterdir() if p.name not in MODEL_FILES)
    return PublishResult(
        repo_id=repo_url.repo_id,
        url=str(repo_url),
        commit_url=str(commit.commit_url),
        files=MODEL_FILES,
        skipped=tuple(skipped),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m segapp.publish`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m segapp.publish",
        description="Upload a segapp model folder (weights, configs, model card) to the HuggingFace hub.",
    )
    parser.add_argument("folder", help="model folder, e.g. runs/exp/best")
    parser.add_argument("--repo", required=True, help="model repository id, org/name")
    parser.add_argument(
        "--private", action="store_true", help="create the repository as private (if it is new)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="write token (default: $HF_TOKEN or the saved `hf auth login`; prefer those, a token "
        "on the command line stays in the shell history)",
    )
    parser.add_argument("--message", default=None, help="commit message")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Returns:
        0 when published, 2 when the folder or id is refused, 1 when the upload fails (access,
        network).
    """
    args = build_parser().parse_args(argv)
    try:
        result = publish_model(
            args.folder, args.repo, private=args.private, token=args.token, commit_message=args.message
        )
    except PublishError as exc:
        print(f"segapp.publish: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - HTTP, auth and network errors (several libraries' types)
        print(f"segapp.publish: not published ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    print(f"published {', '.join(result.files)} to {result.url}")
    if result.skipped:
        print(f"left out: {', '.join(result.skipped)}")
    print(f"serve it with: python app.py --weights {result.repo_id}  (or SEGAPP_WEIGHTS={result.repo_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
