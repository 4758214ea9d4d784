"""segapp.publish beyond what test_deploy.py covers (the upload of a last/ folder, the README and
broken-weights refusals, the command's 0 and 2): the upload's file selection against a whole run
folder, every contract file's refusal, repository ids, what is passed to the hub (private flag,
token, commit message) and the exit status 1 when the hub or the network fails. No network: HfApi
is replaced by a recorder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from huggingface_hub import RepoUrl
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import filter_repo_objects

from segapp import publish

CONTRACT = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"}


class RecordingHub:
    """An HfApi stand-in: keeps the token and the keyword arguments of each call; ``failure``,
    when set, is raised by the call of that name."""

    failure: tuple[str, Exception] | None = None
    instances: list[RecordingHub] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: dict[str, dict] = {}
        RecordingHub.instances.append(self)

    def _call(self, name: str, kwargs: dict) -> None:
        self.calls[name] = kwargs
        if self.failure and self.failure[0] == name:
            raise self.failure[1]

    def create_repo(self, repo_id: str, **kwargs) -> RepoUrl:
        self._call("create_repo", {"repo_id": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self._call("upload_folder", kwargs)
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/1"})()


@pytest.fixture
def hub(monkeypatch) -> type[RecordingHub]:
    RecordingHub.failure, RecordingHub.instances = None, []
    monkeypatch.setattr(publish, "HfApi", RecordingHub)
    return RecordingHub


@pytest.fixture
def folder(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A complete model folder named ``best``."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "best"))


def _upload_call(hub: type[RecordingHub]) -> dict:
    (api,) = hub.instances
    return api.calls["upload_folder"]


def test_the_upload_selects_the_contract_files_and_nothing_else_of_a_run_folder(hub, folder: Path) -> None:
    publish.publish_model(folder, "my-lab/segapp")
    call = _upload_call(hub)
    assert call["folder_path"] == str(folder) and call["repo_type"] == "model"
    assert set(call["allow_patterns"]) == CONTRACT == set(publish.MODEL_FILES)
    assert not call.get("ignore_patterns") and not call.get("delete_patterns")
    # What those patterns let through of a run folder's files, by the hub client's own filter.
    run_files = [
        *CONTRACT,
        "training_state.pt",
        "pytorch_model.bin",
        "optimizer.pkl",
        "last/config.json",
        "last/model.safetensors",
        "last/training_state.pt",
        "metrics.jsonl",
    ]
    chosen = set(filter_repo_objects(run_files, allow_patterns=call["allow_patterns"]))
    assert chosen == CONTRACT


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_each_missing_contract_file_is_refused_by_name(hub, folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(publish.PublishError, match=f"not a complete model folder \\(missing {name}\\)"):
        publish.publish_model(folder, "my-lab/segapp")
    assert hub.instances == []


def test_pickled_weights_instead_of_safetensors_are_refused(hub, folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(publish.PublishError, match=r"missing model\.safetensors"):
        publish.publish_model(folder, "my-lab/segapp")
    assert hub.instances == []


def test_a_config_that_does_not_parse_is_refused(hub, folder: Path) -> None:
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(publish.PublishError, match="does not load, so it is not published"):
        publish.publish_model(folder, "my-lab/segapp")
    assert hub.instances == []


def test_a_file_is_not_a_folder(hub, folder: Path) -> None:
    with pytest.raises(publish.PublishError, match="is not a folder"):
        publish.publish_model(folder / "config.json", "my-lab/segapp")


@pytest.mark.parametrize("repo_id", ["segapp", "org/", "/name", "a/b/c", "my lab/x", "-org/x", "org/.x", ""])
def test_repository_ids_that_are_not_org_slash_name_are_refused(hub, folder: Path, repo_id: str) -> None:
    with pytest.raises(publish.PublishError, match="is not a repository id: give it as org/name"):
        publish.publish_model(folder, repo_id)
    assert hub.instances == []


@pytest.mark.parametrize("repo_id", ["user/model", "My-Lab.2/segapp_b0-v1.5", "a/b"])
def test_valid_repository_ids_pass_through_unchanged(hub, folder: Path, repo_id: str) -> None:
    result = publish.publish_model(folder, repo_id)
    (api,) = hub.instances
    assert api.calls["create_repo"]["repo_id"] == repo_id and api.calls["upload_folder"]["repo_id"] == repo_id
    assert result.repo_id == repo_id and result.url == f"https://huggingface.co/{repo_id}"


def test_the_command_passes_private_token_and_message_through(hub, folder: Path) -> None:
    argv = [str(folder), "--repo", "my-lab/segapp", "--private", "--token", "hf_x", "--message", "v2"]
    assert publish.main(argv) == 0
    (api,) = hub.instances
    assert api.token == "hf_x"
    assert api.calls["create_repo"] == {
        "repo_id": "my-lab/segapp",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert api.calls["upload_folder"]["commit_message"] == "v2"


def test_the_command_defaults_public_saved_login_and_a_message_naming_the_folder(hub, folder: Path) -> None:
    assert publish.main([str(folder), "--repo", "my-lab/segapp"]) == 0
    (api,) = hub.instances
    assert api.token is None  # the hub client then reads HF_TOKEN or the saved login
    assert api.calls["create_repo"]["private"] is False
    assert api.calls["upload_folder"]["commit_message"] == "Upload segapp model from best"


def test_a_complete_folder_prints_no_left_out_line(hub, folder: Path, capsys) -> None:
    assert publish.main([str(folder), "--repo", "my-lab/segapp"]) == 0
    out = capsys.readouterr().out
    assert "published config.json, model.safetensors, preprocessor_config.json, README.md" in out
    assert "left out" not in out


def _hub_refusal() -> HfHubHTTPError:
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    response = httpx.Response(403, request=request)
    return HfHubHTTPError("403 Forbidden: no write access to my-lab", response=response)


@pytest.mark.parametrize("step", ["create_repo", "upload_folder"])
@pytest.mark.parametrize("error", [_hub_refusal, lambda: ConnectionError("no route to host")])
def test_hub_and_network_failures_exit_1(hub, folder: Path, capsys, step: str, error) -> None:
    hub.failure = (step, error())
    with pytest.raises(type(hub.failure[1])):  # the function lets the hub client's error through
        publish.publish_model(folder, "my-lab/segapp", token="hf_secret")
    capsys.readouterr()
    assert publish.main([str(folder), "--repo", "my-lab/segapp", "--token", "hf_secret"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"segapp.publish: not published ({type(hub.failure[1]).__name__}: ")
    assert str(hub.failure[1]) in err
    assert "published " not in out and "hf_secret" not in out + err


def test_the_command_requires_a_repository(hub, folder: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        publish.main([str(folder)])
    assert exit_info.value.code == 2 and "--repo" in capsys.readouterr().err
    assert hub.instances == []
