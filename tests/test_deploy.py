"""Deployment: Spaces front matter, the Dockerfile (parsed, and its shell steps run with stubs),
what `gradio deploy` and `docker build` leave out, start-up as a Space starts the app, login,
upload clean-up, and publishing weights (against a stand-in for HfApi, never the network).

No Docker engine is needed: the Dockerfile's properties are read from the file, and its RUN
steps are executed with stub ``pip``/``python`` commands. The real install in a fresh virtual
environment is ``scripts/check_install.sh`` (slow, ``SEGAPP_SLOW=1``).
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import re
import runpy
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from helpers import free_port
from huggingface_hub import HfApi, RepoUrl, SpaceHardware, metadata_load
from huggingface_hub.utils import filter_repo_objects
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from PIL import Image

from segapp import publish
from segapp.bundled import EXAMPLES_DIR, MODEL_DIR
from segapp.synthetic import generate_slice
from segapp.ui import build_demo, default_source, launch_options
from segapp.ui.page import DELETE_CACHE, TITLE
from segapp.ui.server import LazySegmenter, closing_on_signals, main

gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCKERFILE = ROOT / "Dockerfile"
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
VOLUME_MB = 80  # the volume upload bound of the Space-like app (the default, 500 MB, is slow to exceed)


# ----------------------------------------------------------------------------- reading the Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    value: str  # the rest, continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comments and blank lines dropped, ``\\`` continuations joined."""
    instructions, logical = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, value = (logical + line).strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip()))
        logical = ""
    return instructions


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.value:
            name, _, default = ins.value.partition("=")
            defaults[name] = " ".join(shlex.split(default))
    return defaults


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def env_settings(instructions: list[Instruction]) -> list[tuple[int, str, str]]:
    """(instruction index, name, value) of every ENV assignment, ARG defaults expanded."""
    args = arg_defaults(instructions)
    found = []
    for index, ins in enumerate(instructions):
        if ins.keyword == "ENV":
            for item in shlex.split(ins.value):
                name, _, value = item.partition("=")
                found.append((index, name, expand(value, args)))
    return found


def final_env(instructions: list[Instruction]) -> dict[str, str]:
    return {name: value for _, name, value in env_settings(instructions)}


def strip_run_flags(value: str) -> str:
    while value.startswith("--"):
        value = value.split(" ", 1)[1].lstrip()
    return value


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def install_steps() -> list[str]:
    """RUN bodies between the ``# >>> install`` markers (what scripts/check_install.sh runs)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    block = text.split("# >>> install\n", 1)[1].split("# <<< install\n", 1)[0]
    return [strip_run_flags(ins.value) for ins in parse_dockerfile(block) if ins.keyword == "RUN"]


def stub_command(folder: Path, name: str) -> Path:
    """An executable ``name`` in ``folder`` that appends its arguments (one JSON list a line) to
    ``folder/<name>.calls``, with the content of a file given after ``-c`` and HF_HUB_OFFLINE."""
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "extra = {'HF_HUB_OFFLINE': os.environ.get('HF_HUB_OFFLINE'), 'HF_TOKEN': os.environ.get('HF_TOKEN')}\n"
        "if '-c' in args and args.index('-c') + 1 < len(args) and os.path.isfile(args[args.index('-c') + 1]):\n"
        "    extra['constraints'] = open(args[args.index('-c') + 1]).read().split()\n"
        f"with open({str(folder / (name + '.calls'))!r}, 'a') as out:\n"
        "    out.write(json.dumps({'args': args, **extra}) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder / f"{name}.calls"


def run_with_stubs(body: str, args: dict[str, str], stubs: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "HOME": str(stubs), **args}
    return subprocess.run(["sh", "-c", body], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# ----------------------------------------------------------------------------- front matter


@pytest.fixture(scope="module")
def front_matter() -> dict:
    """README.md's YAML block, read the way `gradio deploy` reads it."""
    meta = metadata_load(README) if README.exists() else None
    assert meta, "README.md has no Spaces front matter (the block is in .devwork/frontmatter.md)"
    return meta


def pinned_requirements() -> dict[str, str]:
    return {
        r.name.lower(): str(r.specifier)[2:]
        for r in map(Requirement, _requirement_lines())
        if str(r.specifier).startswith("==")
    }


def _requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_front_matter_is_what_gradio_deploy_and_spaces_read(front_matter: dict, dockerfile) -> None:
    import gradio
    from gradio.cli.commands.deploy_space import format_title

    meta = front_matter
    for key in (
        "title",
        "emoji",
        "colorFrom",
        "colorTo",
        "sdk",
        "sdk_version",
        "python_version",
        "app_file",
        "short_description",
        "suggested_hardware",
        "tags",
        "license",
        "startup_duration_timeout",
    ):
        assert key in meta, f"front matter lacks {key}"
    # `gradio deploy` passes the title to create_repo as the Space's name, unchanged.
    assert format_title(meta["title"]) == meta["title"] and len(meta["title"]) <= 96
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pinned_requirements()["gradio"] == gradio.__version__
    assert isinstance(meta["python_version"], str)  # unquoted 3.10 would be read as 3.1
    assert meta["python_version"] == arg_defaults(dockerfile)["PYTHON_VERSION"]
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert SpecifierSet(requires.group(1)).contains(meta["python_version"] + ".0")
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["emoji"] and not any(ch.isascii() for ch in meta["emoji"])
    assert 0 < len(meta["short_description"]) <= 60
    assert meta["suggested_hardware"] in {hw.value for hw in SpaceHardware}
    license_text = re.search(
        r'license\s*=\s*\{\s*text\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert meta["license"] == license_text.group(1).lower()
    assert meta["tags"] and all(isinstance(tag, str) and tag for tag in meta["tags"])
    assert re.fullmatch(r"\d+[smh]", str(meta["startup_duration_timeout"]))
    for repo in meta.get("models", []):
        assert REPO_ID.fullmatch(repo)
    for entry in meta.get("preload_from_hub", []):
        assert REPO_ID.fullmatch(entry.split()[0])  # "org/name [file,file] [commit]"

    # The app file is what Spaces runs: a module-level `demo` and a __main__ start.
    app_file = ROOT / meta["app_file"]
    tree = ast.parse(app_file.read_text(encoding="utf-8"))
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    assert "demo" in assigned
    assert "__main__" in app_file.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_user_port_and_environment(dockerfile: list[Instruction]) -> None:
    args = arg_defaults(dockerfile)
    bases = [expand(ins.value, args) for ins in dockerfile if ins.keyword == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base) for base in bases)

    # A user with uid 1000 (what Docker Spaces require) runs the app; no root after it.
    useradd = [i for i, ins in enumerate(dockerfile) if ins.keyword == "RUN" and "useradd" in ins.value]
    assert useradd
    match = re.search(r"useradd\b.*?(?:--uid|-u)\s+1000\b.*?\s(\w+)\s*(?:&&|$)", dockerfile[useradd[0]].value)
    assert match, "the user must be created with uid 1000"
    users = [(i, ins.value) for i, ins in enumerate(dockerfile) if ins.keyword == "USER"]
    assert users and users[-1][1] in (match.group(1), "1000")
    last_user = users[-1][0]
    assert last_user > useradd[0]
    cmd = [i for i, ins in enumerate(dockerfile) if ins.keyword == "CMD"]
    assert cmd and cmd[-1] > last_user
    assert json.loads(dockerfile[cmd[-1]].value) == ["python", "app.py"]

    exposed = [ins.value for ins in dockerfile if ins.keyword == "EXPOSE"]
    assert exposed == ["7860"]
    env = final_env(dockerfile)
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0"
    assert env["GRADIO_SERVER_PORT"] == "7860"
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"].startswith("/home/")  # the hub cache belongs to the app's user
    assert not any("TOKEN" in name for _, name, _ in env_settings(dockerfile))  # no secret in layers
    assert any(ins.keyword == "HEALTHCHECK" and " CMD " in f" {ins.value} " for ins in dockerfile)
    # SIGINT makes Gradio close and delete the uploads still cached; SIGTERM would just kill it.
    assert [ins.value for ins in dockerfile if ins.keyword == "STOPSIGNAL"] == ["SIGINT"]


def test_dockerfile_pins_every_requirement(dockerfile: list[Instruction]) -> None:
    args = arg_defaults(dockerfile)
    pins = {name.lower(): version for name, version in (p.split("==") for p in args["PINNED"].split())}
    pins["torch"] = args["TORCH_VERSION"]
    for name, version in pinned_requirements().items():
        assert pins.setdefault(name, version) == version
    for requirement in map(Requirement, _requirement_lines()):
        name = requirement.name.lower()
        assert name in pins, f"{name} is not pinned in the Dockerfile"
        assert requirement.specifier.contains(pins[name]), f"pin {name}=={pins[name]} breaks {requirement}"


def test_install_steps_install_the_pins_from_the_chosen_torch_index(dockerfile, tmp_path: Path) -> None:
    args = arg_defaults(dockerfile)
    steps = install_steps()
    assert len(steps) >= 2
    expected_index = {
        "cpu": "https://download.pytorch.org/whl/cpu",
        "cuda": "https://pypi.org/simple",  # PyPI's Linux wheel is the CUDA build
        "cu126": "https://download.pytorch.org/whl/cu126",
    }
    for variant, index in expected_index.items():
        stubs = tmp_path / variant
        stubs.mkdir()
        log = stub_command(stubs, "pip")
        for step in steps:
            result = run_with_stubs(step, {**args, "TORCH_VARIANT": variant}, stubs)
            assert result.returncode == 0, result.stderr
        made = calls(log)
        torch_call = made[0]["args"]
        assert torch_call[:2] == ["install", f"torch=={args['TORCH_VERSION']}"]
        assert torch_call[torch_call.index("--index-url") + 1] == index
        requirements_call = next(c for c in made if "-r" in c["args"])
        assert requirements_call["args"][requirements_call["args"].index("-r") + 1] == "requirements.txt"
        assert set(requirements_call["constraints"]) == {
            f"torch=={args['TORCH_VERSION']}",
            *args["PINNED"].split(),
        }
        assert made[-1]["args"] == ["check"]

    # An unknown variant stops the build before anything is installed.
    stubs = tmp_path / "bogus"
    stubs.mkdir()
    log = stub_command(stubs, "pip")
    result = run_with_stubs(steps[0], {**args, "TORCH_VARIANT": "rocm"}, stubs)
    assert result.returncode != 0 and "TORCH_VARIANT" in result.stderr and not calls(log)


def test_dockerfile_bakes_weights_in_and_runs_offline(dockerfile, tmp_path: Path, monkeypatch) -> None:
    # The bundled weights are copied into the image (they are package data, inside segapp/).
    copied = [shlex.split(ins.value) for ins in dockerfile if ins.keyword == "COPY"]
    sources = {src.rstrip("/") for parts in copied for src in parts[:-1] if not src.startswith("--")}
    assert "segapp" in sources and MODEL_DIR.is_relative_to(ROOT / "segapp")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (MODEL_DIR / name).is_file()

    # HUB_WEIGHTS: downloaded (and loaded, which checks them) at build time with the hub
    # reachable, then the image runs with HF_HUB_OFFLINE=1 and SEGAPP_WEIGHTS pointing at them.
    args = arg_defaults(dockerfile)
    assert args["HUB_WEIGHTS"] == ""
    bake = [
        (i, strip_run_flags(ins.value))
        for i, ins in enumerate(dockerfile)
        if ins.keyword == "RUN" and "HUB_WEIGHTS" in ins.value
    ]
    assert len(bake) == 1
    bake_index, body = bake[0]
    assert "load_model" in body
    offline = [i for i, name, value in env_settings(dockerfile) if name == "HF_HUB_OFFLINE" and value == "1"]
    assert offline and min(offline) > bake_index
    assert final_env(dockerfile)["SEGAPP_WEIGHTS"] == ""  # ${HUB_WEIGHTS} with the default

    log = stub_command(tmp_path, "python")
    assert run_with_stubs(body, {**args, "HUB_WEIGHTS": ""}, tmp_path).returncode == 0
    assert not calls(log)  # no hub weights asked for: nothing is downloaded
    result = run_with_stubs(
        body, {**args, "HUB_WEIGHTS": "my-lab/segapp-b0", "HF_HUB_OFFLINE": "1"}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    (made,) = calls(log)
    assert made["args"][-1] == "my-lab/segapp-b0" and made["HF_HUB_OFFLINE"] == "0"

    # An empty SEGAPP_WEIGHTS (the image's default) means the bundled weights.
    monkeypatch.setenv("SEGAPP_WEIGHTS", "")
    assert default_source(MODEL_DIR) == str(MODEL_DIR)
    monkeypatch.setenv("SEGAPP_WEIGHTS", "my-lab/segapp-b0")
    assert default_source(MODEL_DIR) == "my-lab/segapp-b0"


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, ``!`` re-includes, a matched folder
    excludes everything below it."""
    parts = path.split("/")
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _dockerignore_regex(raw.lstrip("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_image_copies_and_nothing_private(dockerfile) -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    needed = ["app.py", "requirements.txt", "assets/style.css"]
    needed += [str(p.relative_to(ROOT)) for p in MODEL_DIR.iterdir()]
    needed += [str(p.relative_to(ROOT)) for p in EXAMPLES_DIR.iterdir()]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "segapp").rglob("*.py")]
    for path in needed:
        assert not dockerignored(path, patterns), f"{path} is needed in the image but ignored"
    for ins in dockerfile:
        if ins.keyword == "COPY" and "--from" not in ins.value:
            for src in shlex.split(ins.value)[:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists() and not dockerignored(src.rstrip("/"), patterns)
    for path in (
        ".git/config",
        ".devwork/notes.md",
        "runs/exp/last/training_state.pt",
        "data/train/case1_day1_slice_0001.png",
        "test-artifacts/app-page.png",
        ".env",
        ".venv/bin/python",
        "segapp/__pycache__/x.cpython-311.pyc",
        "tests/test_deploy.py",
        "weights.ckpt",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker builder"


def test_gitignore_keeps_local_and_private_files_out_of_a_space() -> None:
    # `gradio deploy` uploads the folder and the hub applies the uploaded .gitignore (git's rules).
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def ignored(path: str) -> bool:
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, capture_output=True, timeout=30
        )
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 0

    for path in (
        "runs/exp/best/model.safetensors",
        "data/train/case1_day1_slice_0001.png",
        ".devwork/notes.md",
        ".venv/bin/python",
        "test-artifacts/app-page.png",
        ".gradio/flagged/log.csv",
        "flagged/log.csv",
        ".env",
        "model.ckpt",
        "segapp/__pycache__/x.pyc",
    ):
        assert ignored(path), f"{path} would be uploaded to the Space"
    needed = ["app.py", "requirements.txt", "README.md", "segapp/ui/page.py", "assets/style.css"]
    needed += [str(p.relative_to(ROOT)) for p in MODEL_DIR.iterdir()]
    needed += [str(p.relative_to(ROOT)) for p in EXAMPLES_DIR.iterdir()]
    for path in needed:
        assert not ignored(path), f"{path} is needed by the Space but ignored"


# ----------------------------------------------------------------------------- start-up as on Spaces


class Serving:
    """Stands between ``main`` and the real page: ``launch`` returns instead of blocking."""

    def __init__(self, demo) -> None:
        self.demo = demo
        self.options: dict = {}

    def queue(self, **options):
        self.demo.queue(**options)
        return self

    def launch(self, **options) -> None:
        self.options = options
        self.demo.launch(**options, prevent_thread_lock=True, quiet=True)


def client(url: str, **kwargs):
    return gradio_client.Client(url, verbose=False, analytics_enabled=False, download_files=False, **kwargs)


def write_slice(folder: Path, seed: int) -> Path:
    phantom = generate_slice(seed, empty=False)
    path = folder / phantom.file_name
    Image.fromarray(phantom.image16).save(path)
    return path


@pytest.fixture(scope="module")
def spaces_app(tiny_model_dir):
    """app.py run with the environment a Gradio Space gives it (host, port, SSR and example
    caching on), started through ``main`` as ``python app.py`` does; served until the module ends."""
    from gradio import http_server

    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
        env.setenv("GRADIO_SERVER_PORT", str(port))
        env.setenv("GRADIO_SSR_MODE", "true")
        env.setenv("GRADIO_CACHE_EXAMPLES", "true")
        env.setenv("SEGAPP_WEIGHTS", str(tiny_model_dir))
        env.setenv("SEGAPP_MAX_VOLUME_MB", str(VOLUME_MB))  # small, so the bound is quick to test
        env.delenv("SEGAPP_AUTH", raising=False)
        # gradio.http_server reads host and port from the environment once, at its import
        # (before a Space's app runs); in this shared test process, set what it would have read.
        env.setattr(http_server, "LOCALHOST_NAME", "0.0.0.0")
        env.setattr(http_server, "INITIAL_PORT_VALUE", port)
        namespace = runpy.run_path(str(ROOT / "app.py"), run_name="space_app")
        loaded_at_build = namespace["segmenter"].loaded
        serving = Serving(namespace["demo"])
        status = main(serving, namespace["segmenter"], [], css_path=namespace["STYLE"])
    try:
        yield SimpleNamespace(
            demo=namespace["demo"],
            segmenter=namespace["segmenter"],
            serving=serving,
            status=status,
            port=port,
            url=f"http://127.0.0.1:{port}/",
            loaded_at_build=loaded_at_build,
        )
    finally:
        namespace["demo"].close()


def test_app_starts_the_way_a_space_starts_it(spaces_app, tmp_path: Path) -> None:
    demo = spaces_app.demo
    assert spaces_app.status == 0
    # Host and port come from the environment Spaces sets; SSR stays off (no Node needed)
    # although GRADIO_SSR_MODE asks for it, because launch_options passes ssr_mode=False.
    assert (
        spaces_app.serving.options["server_name"] is None
        and spaces_app.serving.options["server_port"] is None
    )
    assert demo.server_name == "0.0.0.0" and demo.server_port == spaces_app.port
    assert demo.ssr_mode is False
    # Building the page ran nothing, even with GRADIO_CACHE_EXAMPLES=true; the model was loaded
    # by main before serving, from SEGAPP_WEIGHTS.
    assert spaces_app.loaded_at_build is False and spaces_app.segmenter.loaded
    assert Path(spaces_app.segmenter.source).name == "tiny"

    # Without --auth everything is open, and the page segments.
    with httpx.Client(base_url=spaces_app.url, timeout=30) as http:
        assert http.get("/").status_code == 200
        config = http.get("/config")
        assert config.status_code == 200 and TITLE in config.text
        # The upload bound of the running server is the volume bound ($SEGAPP_MAX_VOLUME_MB): a
        # file above the slice bound is taken (the slice tab refuses it itself), one above it is not.
        assert demo.max_file_size == VOLUME_MB * 1024**2
        volume = http.post("/gradio_api/upload", files={"files": ("series.zip", bytes(60 * 1024**2))})
        assert volume.status_code == 200
        too_big = http.post("/gradio_api/upload", files={"files": ("big.zip", bytes(demo.max_file_size + 1))})
        assert too_big.status_code == 413 and "exceeded maximum allowed size" in too_big.text
    result = client(spaces_app.url).predict(
        gradio_client.handle_file(str(write_slice(tmp_path, 41))), api_name="/segment"
    )
    assert {"stomach", "small_bowel", "large_bowel"} <= set(result[1]["classes"])


def test_healthcheck_command_passes_on_the_app_and_fails_without_it(spaces_app, dockerfile) -> None:
    (check,) = [ins.value for ins in dockerfile if ins.keyword == "HEALTHCHECK"]
    argv = json.loads(check.split(" CMD ", 1)[1])
    assert argv[0] == "python"

    def run(port: int) -> int:
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
        return subprocess.run(
            [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=60
        ).returncode

    assert run(spaces_app.port) == 0
    assert run(free_port()) != 0


def test_stop_signals_close_the_page_completely() -> None:
    class Page:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    page = Page()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), closing_on_signals(page):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # the handler runs on the main thread between bytecodes
            time.sleep(0.01)
    assert page.closed == 1
    assert signal.getsignal(signal.SIGTERM) is before  # restored on leaving
    with closing_on_signals(page):
        pass
    assert page.closed == 1  # leaving without a signal leaves a running page alone


# ----------------------------------------------------------------------------- login


def test_login_refuses_anonymous_requests_and_accepts_the_user(
    tiny_model_dir, tmp_path: Path, monkeypatch, caplog, capfd
) -> None:
    password = "pw-Zq81:xy"  # with a ':' that parse_auth must keep
    monkeypatch.setenv("SEGAPP_AUTH", f"ann:{password}")
    caplog.set_level(logging.DEBUG)
    segmenter = LazySegmenter(tiny_model_dir, device="cpu")
    demo = build_demo(segmenter, examples_dir=None)
    serving = Serving(demo)
    port = free_port()
    assert main(serving, segmenter, ["--port", str(port)]) == 0
    try:
        url = f"http://127.0.0.1:{port}/"
        assert serving.options["auth"] == ("ann", password)
        assert demo.server_name == "127.0.0.1"  # no host given and no GRADIO_SERVER_NAME

        # Gradio 6.31: the page itself answers 200 with only the login form; every route that
        # carries the app, its files or its API answers 401 until the login cookie is sent.
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            page = anonymous.get("/")
            assert page.status_code == 200 and TITLE not in page.text
            assert anonymous.get("/config").status_code == 401
            assert anonymous.get("/gradio_api/info").status_code == 401
            assert anonymous.post("/gradio_api/upload", files={"files": ("x.png", b"x")}).status_code == 401
            assert anonymous.post("/gradio_api/call/segment", json={"data": [None]}).status_code == 401
            assert anonymous.post("/login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert anonymous.get("/config").status_code == 401

        with httpx.Client(base_url=url, timeout=30) as user:
            assert user.post("/login", data={"username": "ann", "password": password}).status_code == 200
            config = user.get("/config")
            assert config.status_code == 200 and TITLE in config.text

        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError here
            client(url)
        result = client(url, auth=("ann", password)).predict(
            gradio_client.handle_file(str(write_slice(tmp_path, 42))), api_name="/segment"
        )
        assert result[1]["classes"]
    finally:
        demo.close()

    out, err = capfd.readouterr()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert password not in out + err + logged


# ----------------------------------------------------------------------------- upload clean-up


def test_uploads_and_results_leave_the_server_within_minutes(
    tiny_segmenter, tmp_path: Path, monkeypatch, caplog, capfd
) -> None:
    every_s, older_than_s = DELETE_CACHE
    assert every_s <= 60 and older_than_s <= 600  # the README's "within minutes"

    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="segapp")
    demo = build_demo(tiny_segmenter, examples_dir=None)
    assert demo.delete_cache == DELETE_CACHE
    demo.delete_cache = (1, 3)  # the same mechanism, on a test's time scale
    _, url, _ = demo.launch(**launch_options(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        upload = write_slice(tmp_path, 43)
        before = {p for p in cache.rglob("*") if p.is_file()}
        client(url).predict(gradio_client.handle_file(str(upload)), api_name="/segment")
        created = {p for p in cache.rglob("*") if p.is_file()} - before
        # gr.File(type="filepath") leaves one empty, untracked "tmpXXXXXXXX" file per call in the
        # cache (Gradio 6.31): no content and no name of the upload; everything else must go.
        placeholders = {p for p in created if p.name.startswith("tmp") and p.stat().st_size == 0}
        uploads = {p for p in created if p.name == upload.name}
        assert uploads, "the upload was not seen in Gradio's cache"
        assert created - placeholders - uploads, "no result file was seen in Gradio's cache"
        deadline = time.monotonic() + 30
        while any(p.exists() for p in created - placeholders) and time.monotonic() < deadline:
            time.sleep(0.25)
        left = sorted(str(p.relative_to(cache)) for p in created - placeholders if p.exists())
        assert not left, f"still on the server: {left}"
    finally:
        demo.close()

    # The file name (a patient id, in real data) is in no log line and on no console.
    case_id = upload.name.split("_slice")[0]
    out, err = capfd.readouterr()
    server_logs = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in ("segapp", "gradio", "uvicorn", "fastapi", "httpx")
    ]
    assert case_id not in out + err + "\n".join(server_logs)


# ----------------------------------------------------------------------------- publishing weights


class FakeHfApi:
    """Stands in for ``huggingface_hub.HfApi``: checks each call against the real method's
    signature, applies the real allow/ignore pattern filter, and "uploads" into a local folder."""

    remote_root: Path
    made: list[FakeHfApi] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        FakeHfApi.made.append(self)

    def _record(self, name: str, *args, **kwargs) -> dict:
        bound = inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)
        self.calls.append((name, dict(bound.arguments)))
        return bound.arguments

    def create_repo(self, *args, **kwargs) -> RepoUrl:
        arguments = self._record("create_repo", *args, **kwargs)
        return RepoUrl(f"https://huggingface.co/{arguments['repo_id']}")

    def upload_folder(self, *args, **kwargs):
        arguments = self._record("upload_folder", *args, **kwargs)
        folder = Path(arguments["folder_path"])
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        chosen = filter_repo_objects(
            names,
            allow_patterns=arguments.get("allow_patterns"),
            ignore_patterns=arguments.get("ignore_patterns"),
        )
        remote = self.remote_root / arguments["repo_id"]
        remote.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            shutil.copy2(folder / name, remote / name)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{arguments['repo_id']}/commit/abc123")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path: Path):
    FakeHfApi.made = []
    FakeHfApi.remote_root = tmp_path / "hub"
    monkeypatch.setattr(publish, "HfApi", FakeHfApi)
    return FakeHfApi


@pytest.fixture
def trained_folder(tiny_model_dir, tmp_path: Path) -> Path:
    """A last/-style run folder: the model contract plus training state and a note."""
    folder = tmp_path / "run" / "last"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "training_state.pt").write_bytes(b"pickled optimizer state")
    (folder / "notes.txt").write_text("lr sweep 3")
    return folder


def test_publish_uploads_the_model_folder_with_its_card_only(fake_hub, trained_folder: Path) -> None:
    from segapp.model.weights import load_model

    result = publish.publish_model(trained_folder, "my-lab/segapp-tiny", private=True, token="hf_secret")
    (api,) = fake_hub.made
    assert api.token == "hf_secret"
    (create, create_args), (upload, upload_args) = api.calls
    assert create == "create_repo" and upload == "upload_folder"
    assert create_args["repo_id"] == "my-lab/segapp-tiny" and create_args["private"] is True
    assert create_args["repo_type"] == "model" and create_args["exist_ok"] is True
    assert upload_args["repo_id"] == "my-lab/segapp-tiny" and upload_args["repo_type"] == "model"

    remote = fake_hub.remote_root / "my-lab" / "segapp-tiny"
    uploaded = sorted(p.name for p in remote.iterdir())
    assert uploaded == sorted(["config.json", "model.safetensors", "preprocessor_config.json", "README.md"])
    assert (remote / "README.md").read_text() == (trained_folder / "README.md").read_text()
    assert load_model(remote).card == load_model(trained_folder).card  # what the app will load
    assert result.repo_id == "my-lab/segapp-tiny"
    assert result.url == "https://huggingface.co/my-lab/segapp-tiny"
    assert sorted(result.files) == uploaded and result.skipped == ("notes.txt", "training_state.pt")


def test_publish_refuses_what_the_app_could_not_serve(fake_hub, trained_folder: Path) -> None:
    with pytest.raises(publish.PublishError, match="org/name"):
        publish.publish_model(trained_folder, "segapp-tiny")
    with pytest.raises(publish.PublishError, match="not a folder"):
        publish.publish_model(trained_folder / "missing", "my-lab/x")
    (trained_folder / "README.md").unlink()
    with pytest.raises(publish.PublishError, match="missing README.md"):
        publish.publish_model(trained_folder, "my-lab/x")
    (trained_folder / "README.md").write_text("card")
    (trained_folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(publish.PublishError, match="does not load"):
        publish.publish_model(trained_folder, "my-lab/x")
    assert fake_hub.made == []  # nothing reached the hub


def test_publish_command_line(fake_hub, trained_folder: Path, capsys) -> None:
    status = publish.main([str(trained_folder), "--repo", "my-lab/segapp-tiny", "--token", "hf_secret"])
    out, err = capsys.readouterr()
    assert status == 0 and "https://huggingface.co/my-lab/segapp-tiny" in out
    assert "training_state.pt" in out and "--weights my-lab/segapp-tiny" in out
    assert "hf_secret" not in out + err
    assert fake_hub.made[0].calls[0][1]["private"] is False
    assert publish.main([str(trained_folder / "nope"), "--repo", "my-lab/x"]) == 2
    assert "not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- slow: real processes


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.slow
def test_python_app_py_as_a_space_runs_it(tiny_model_dir, tmp_path: Path) -> None:
    """``python app.py`` in a subprocess with a Space's environment: listens on all interfaces,
    serves, and on SIGTERM (how Spaces and Kubernetes stop it) stops and deletes the uploads.
    scripts/check_install.sh does the same with SIGINT, the image's STOPSIGNAL."""
    port = free_port()
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "SYSTEM": "spaces",
        "SPACE_ID": "my-lab/segapp-test",
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SSR_MODE": "true",
        "GRADIO_CACHE_EXAMPLES": "true",
        "GRADIO_TEMP_DIR": str(cache),
        "SEGAPP_WEIGHTS": str(tiny_model_dir),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SEGAPP_AUTH", None)
    log = tmp_path / "app.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        assert process.poll() is None, log.read_text()
        assert _listening_addresses(port) & {"00000000", "00000000000000000000000000000000"}
        upload = write_slice(tmp_path, 44)
        client(url).predict(gradio_client.handle_file(str(upload)), api_name="/segment")
        assert list(cache.rglob(upload.name))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert not list(cache.rglob(upload.name)), "the upload outlived the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.slow
def test_dockerfile_install_steps_in_a_fresh_virtual_environment() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_install.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
