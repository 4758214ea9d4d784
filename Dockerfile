# syntax=docker/dockerfile:1
# segapp web app image: runs offline, as uid 1000, on port 7860 (the same as a HuggingFace Space).
#
#   CPU:  docker build -t segapp .
#         docker run --rm -p 7860:7860 segapp
#   GPU:  docker build -t segapp:cuda --build-arg TORCH_VARIANT=cuda .
#         docker run --rm --gpus all -p 7860:7860 segapp:cuda
#   Hub weights baked in at build time (the container then never reaches the hub):
#         docker build -t segapp:hub --build-arg HUB_WEIGHTS=org/name .
#         (private repository: add --secret id=hf_token,env=HF_TOKEN)
#
# scripts/check_install.sh repeats the install steps below in a fresh virtual environment.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# Exact versions: the set the test suite runs with. requirements.txt states the ranges that work.
# TORCH_VARIANT: cpu (small image, default), cuda (PyPI's Linux wheel, which brings its own CUDA
# libraries; the host needs only the NVIDIA driver and the container toolkit), or a PyTorch CUDA
# tag such as cu126 to match an older driver.
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG PINNED="transformers==5.24.0 safetensors==0.8.0 pillow==12.3.0 numpy==2.4.6 huggingface_hub==2.4.0 tqdm==4.70.1 scipy==1.17.1 pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0 nibabel==5.4.2 highdicom==0.28.2 scikit-image==0.26.0 dicomweb-client==0.61.2"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# uid 1000, as HuggingFace Docker Spaces require; the app never runs as root.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin user \
    && python -m venv /opt/venv

WORKDIR /home/user/app
COPY requirements.txt ./

# >>> install
RUN case "${TORCH_VARIANT}" in \
        cpu) index="https://download.pytorch.org/whl/cpu" ;; \
        cuda) index="https://pypi.org/simple" ;; \
        cu[0-9]*) index="https://download.pytorch.org/whl/${TORCH_VARIANT}" ;; \
        *) echo "TORCH_VARIANT must be cpu, cuda or a CUDA tag such as cu126, not '${TORCH_VARIANT}'" >&2; exit 2 ;; \
    esac \
    && pip install "torch==${TORCH_VERSION}" --index-url "${index}"
RUN printf '%s\n' "torch==${TORCH_VERSION}" ${PINNED} > /tmp/segapp-constraints.txt \
    && pip install -r requirements.txt -c /tmp/segapp-constraints.txt \
    && rm /tmp/segapp-constraints.txt
RUN pip check
# <<< install

# The app, the package with its bundled weights (segapp/bundled/), the example slices (examples/,
# which segapp.bundled.EXAMPLES_DIR finds next to the package) and the style sheet (assets/);
# nothing else. Owned by root, so read-only to the app's user: it writes nothing but its upload
# cache in /tmp.
COPY app.py ./
COPY segapp/ segapp/
COPY examples/ examples/
COPY assets/ assets/

USER user
ENV HOME=/home/user \
    HF_HOME=/home/user/.cache/huggingface \
    GRADIO_TEMP_DIR=/tmp/gradio

# Optional: weights from the hub, downloaded and checked now (load_model fails the build on a
# bad repository), read from the image's hub cache at run time. Empty: the bundled weights.
ARG HUB_WEIGHTS=""
RUN --mount=type=secret,id=hf_token,uid=1000 \
    if [ -n "${HUB_WEIGHTS}" ]; then \
        if [ -f /run/secrets/hf_token ]; then export HF_TOKEN="$(cat /run/secrets/hf_token)"; fi; \
        HF_HUB_OFFLINE=0 python -c "import sys; from segapp.model.weights import load_model; load_model(sys.argv[1])" "${HUB_WEIGHTS}"; \
    fi

# Offline and private at run time: no hub, no analytics or version checks; listen on all
# interfaces of the container (publish the port on the host to choose who can reach it).
ENV SEGAPP_WEIGHTS=${HUB_WEIGHTS} \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860

EXPOSE 7860

# "/" answers 200 with or without --auth (the login form); the model loads before the server starts.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/' % os.environ.get('GRADIO_SERVER_PORT', '7860'), timeout=8)"]

# app.py closes cleanly on SIGINT or SIGTERM, deleting the uploads still in its cache; SIGINT is
# also the signal Gradio itself handles.
STOPSIGNAL SIGINT
CMD ["python", "app.py"]
