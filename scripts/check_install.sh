#!/usr/bin/env bash
# Repeat the Dockerfile's install steps in a fresh virtual environment and smoke-test the result
# the way the image runs it, so a broken pin or install step is caught without a Docker engine.
#
#   bash scripts/check_install.sh                      # the Dockerfile's defaults (CPU torch)
#   TORCH_VARIANT=cuda bash scripts/check_install.sh   # any Dockerfile ARG can be overridden
#   FREEZE=lock.txt bash scripts/check_install.sh      # also write the resolved versions
#   KEEP_VENV=1 bash scripts/check_install.sh          # keep the environment for a look
#
# What it runs: every RUN between the "# >>> install" and "# <<< install" lines of the Dockerfile,
# with the Dockerfile's ARG defaults (or the same names from the environment), in the repository
# root, with the new environment first on PATH. Then: versions against the pins, the bundled
# weights segment an example, `python app.py` starts offline and the Dockerfile's HEALTHCHECK
# command passes, and SIGINT (the image's STOPSIGNAL) stops it and deletes its cache.
#
# Slow and needs the package indexes (about 1 GB of downloads for the CPU build): opt-in, also
# run by `SEGAPP_SLOW=1 python -m pytest tests/test_deploy.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

python_version="$(sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile | head -n 1)"
PYTHON="${PYTHON:-$(command -v "python${python_version}" || command -v python3)}"
if ! "$PYTHON" -c "import sys; sys.exit(sys.version.startswith('${python_version}.') is False)"; then
    echo "check_install: warning: $PYTHON is not Python ${python_version} (the Dockerfile's)" >&2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/segapp-check-install.XXXXXX")"
APP_PID=""
cleanup() {
    if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then kill "$APP_PID" 2>/dev/null || true; fi
    if [ "${KEEP_VENV:-0}" = 1 ]; then echo "check_install: kept $WORK/venv"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== fresh virtual environment ($("$PYTHON" --version)) in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
export VIRTUAL_ENV="$WORK/venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
unset PYTHONPATH

# The Dockerfile's install steps, run as `RUN` runs them (sh -c), with its ARG values.
python - "$ROOT/Dockerfile" "$WORK/steps.json" <<'EOF'
import json, os, re, shlex, sys

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
args, steps, inside, logical = {}, [], False, ""
for line in lines:
    stripped = line.strip()
    if stripped == "# >>> install":
        inside = True
    elif stripped == "# <<< install":
        inside = False
    if not logical and (not stripped or stripped.startswith("#")):
        continue
    logical += line[:-1] + " " if line.endswith("\\") else line
    if line.endswith("\\"):
        continue
    keyword, _, rest = logical.strip().partition(" ")
    if keyword.upper() == "ARG" and "=" in rest:
        name, _, default = rest.partition("=")
        args[name] = os.environ.get(name, " ".join(shlex.split(default)))
    elif keyword.upper() == "RUN" and inside:
        steps.append(rest.strip())
    logical = ""
if not steps:
    sys.exit("check_install: no RUN steps between '# >>> install' and '# <<< install' in the Dockerfile")
json.dump({"args": args, "steps": steps}, open(sys.argv[2], "w"))
EOF

python - "$WORK/steps.json" <<'EOF'
import json, os, subprocess, sys

spec = json.load(open(sys.argv[1]))
env = dict(os.environ, **spec["args"])
print("== Dockerfile ARGs:", ", ".join(f"{k}={v}" for k, v in spec["args"].items()), flush=True)
for i, step in enumerate(spec["steps"], 1):
    print(f"== install step {i}/{len(spec['steps'])}: RUN {step}", flush=True)
    status = subprocess.run(["sh", "-c", step], env=env).returncode
    if status:
        sys.exit(f"check_install: install step {i} failed with status {status}")
EOF

if [ -n "${FREEZE:-}" ]; then
    pip freeze --exclude-editable > "$FREEZE"
    echo "== resolved versions written to $FREEZE"
fi

echo "== versions against the pins"
python - "$WORK/steps.json" <<'EOF'
import json, re, sys
from importlib.metadata import version

args = json.load(open(sys.argv[1]))["args"]
pins = dict(p.split("==") for p in args["PINNED"].split())
pins["torch"] = args["TORCH_VERSION"]
req = open("requirements.txt", encoding="utf-8").read()
pins.update(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", req, flags=re.M))
wrong = []
for name, pinned in sorted(pins.items()):
    found = version(name)
    print(f"   {name} {found}")
    if found.split("+")[0] != pinned:
        wrong.append(f"{name} {found} (pinned {pinned})")
if wrong:
    sys.exit("check_install: installed versions differ from the pins: " + ", ".join(wrong))
EOF

echo "== the bundled weights segment an example (offline)"
HF_HUB_OFFLINE=1 python - <<'EOF'
from segapp.bundled import EXAMPLES_DIR, MODEL_DIR
from segapp.inference.segmenter import Segmenter

example = sorted(EXAMPLES_DIR.glob("*.png"))[0]
prediction = Segmenter.from_pretrained(MODEL_DIR, device="cpu").predict(example)
assert prediction.mask.ndim == 2 and prediction.mask.max() > 0, "no organ found in an example slice"
print(f"   {example.name}: classes {sorted(set(prediction.mask.ravel().tolist()))}")
EOF

echo "== python app.py starts offline and passes the Dockerfile's HEALTHCHECK"
PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
HEALTHCHECK="$(python - <<'EOF'
import json, re, shlex

text = open("Dockerfile", encoding="utf-8").read().replace("\\\n", " ")
match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, flags=re.M)
print(shlex.join(json.loads(match.group(1))))
EOF
)"
# Job control on: a background job of a script otherwise starts with SIGINT ignored, and then
# Python installs no KeyboardInterrupt handler (the image's python is PID 1 and gets it).
set -m
HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False GRADIO_SERVER_PORT="$PORT" \
    GRADIO_TEMP_DIR="$WORK/gradio" python app.py --port "$PORT" > "$WORK/app.log" 2>&1 &
APP_PID=$!
set +m
healthy=0
for _ in $(seq 1 90); do
    if GRADIO_SERVER_PORT="$PORT" sh -c "$HEALTHCHECK" 2>/dev/null; then healthy=1; break; fi
    if ! kill -0 "$APP_PID" 2>/dev/null; then break; fi
    sleep 2
done
if [ "$healthy" != 1 ]; then
    cat "$WORK/app.log" >&2
    echo "check_install: the app did not become healthy on port $PORT" >&2
    exit 1
fi
echo "   healthy on port $PORT"
EXAMPLE="$(python -c 'from segapp.bundled import EXAMPLES_DIR; print(sorted(EXAMPLES_DIR.glob("*.png"))[0])')"
python - "http://127.0.0.1:$PORT/" "$EXAMPLE" <<'EOF'
import sys

from gradio_client import Client, handle_file

client = Client(sys.argv[1], verbose=False, download_files=False)
stats = client.predict(handle_file(sys.argv[2]), api_name="/segment")[1]
print(f"   /segment: {sorted(stats['classes'])}")
EOF
kill -INT "$APP_PID"
for _ in $(seq 1 30); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 1; done
if kill -0 "$APP_PID" 2>/dev/null; then
    echo "check_install: the app did not stop on SIGINT" >&2
    exit 1
fi
APP_PID=""
if [ -n "$(find "$WORK/gradio" -name "$(basename "$EXAMPLE")")" ]; then
    echo "check_install: the uploaded slice is still in the app's cache after it stopped" >&2
    exit 1
fi
echo "   stopped on SIGINT; the upload left the cache"
echo "== check_install: OK"
