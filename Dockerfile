# meshconf in a container: the project's own install command, a non-root user, the data folder (model files and the
# fast-load cache) as one volume.
#   docker build -t meshconf .                               # GPU: torch==2.13.0 from PyPI, CUDA 13 libraries inside
#   docker build -t meshconf:cpu --build-arg TORCH=cpu .     # CPU only: the 200 MB CPU wheel instead
#   docker run --gpus all -v ~/.cache/meshconf:/data -v "$PWD":/work -w /work meshconf demo photo.jpg --out results
# The PyPI torch wheel brings its own CUDA runtime (pip's nvidia-* packages), so the base image needs none: the host
# needs an NVIDIA driver new enough for CUDA 13 (R580 or later) and the NVIDIA container toolkit. Check inside the
# container: python -c "import torch; print(torch.version.cuda, torch.cuda.is_available())".
FROM ubuntu:24.04
ARG TORCH=cuda
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libegl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 meshconf && mkdir -p /data /opt/meshconf && chown meshconf /data /opt/meshconf
USER meshconf
WORKDIR /opt/meshconf
COPY --chown=meshconf pyproject.toml requirements.txt README.md ./
COPY --chown=meshconf meshconf ./meshconf
# TORCH=cpu: the CPU wheel of the same torch version (2.13.0+cpu satisfies the exact pin of requirements.txt)
RUN if [ "$TORCH" = "cpu" ]; then export PIP_INDEX_URL=https://download.pytorch.org/whl/cpu \
        PIP_EXTRA_INDEX_URL=https://pypi.org/simple; fi \
    && python3 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt -e ".[render]"
# Model files in /data (MESHCONF_DATA); the fast-load cache too (XDG_CACHE_HOME), so it survives the container.
ENV PATH=/opt/meshconf/.venv/bin:$PATH MESHCONF_DATA=/data XDG_CACHE_HOME=/data/cache PYOPENGL_PLATFORM=egl
VOLUME /data
ENTRYPOINT ["meshconf"]
CMD ["demo"]
