# Image that runs the experiment on CUDA GPUs: every stage by default, or one stage given as the command.
#
#   docker build -t rgb-alignment .
#   docker run --gpus all --user "$(id -u):$(id -g)" \
#       -v "$PWD/outputs:/app/outputs" -v "$HOME/.cache/huggingface:/cache/huggingface" rgb-alignment
#
# The base image ships torch 2.13.0 built for CUDA 12.6, the same torch version that CI pins for its CPU run.
FROM pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Like the README and CI, the project goes into a virtual environment. It sees the base image's
# packages, so the CUDA build of torch satisfies the torch requirement and pip leaves it alone.
# `--without-pip` skips ensurepip, which the base Python may lack, so the base image's pip installs into it.
RUN python -m venv --system-site-packages --without-pip "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies change less often than the recipes, so they get their own layer.
# The constraint pins torch to the base image's build. If a dependency ever needs another torch,
# the build fails here instead of downloading a different torch over the CUDA one.
COPY pyproject.toml README.md ./
COPY rgb_tokenizer/ rgb_tokenizer/
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/base-torch.txt \
    && python -m pip install --no-cache-dir --constraint /tmp/base-torch.txt . \
    && rm /tmp/base-torch.txt

COPY . .

# Processes run as uid 1000, so files written to a bind mount are not owned by root.
# Ubuntu 24.04 images already have that user ("ubuntu"), and other bases get an "app" user.
# Both volume folders are writable by any uid because `docker run --user "$(id -u):$(id -g)"`
# may run the container as a user that the image does not know.
RUN getent passwd 1000 > /dev/null || useradd --create-home --uid 1000 --user-group app \
    && mkdir -p /app/outputs "$HF_HOME" \
    && chmod 1777 /app/outputs "$HF_HOME"
USER 1000

# HF_TOKEN, when a run needs the Hub, comes from the environment at run time (`docker run -e HF_TOKEN`).
VOLUME ["/app/outputs", "/cache/huggingface"]

CMD ["bash", "recipes/reproduce.sh"]
