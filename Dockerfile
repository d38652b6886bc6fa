# meshconf for GPU users: a CUDA runtime with Python, the project's own install command, the data folder as a volume.
#   docker build -t meshconf .
#   docker run --gpus all -v ~/.cache/meshconf:/data -v "$PWD":/work -w /work meshconf demo photo.jpg --out results
# torch==2.13.0 from PyPI is the CUDA build on Linux x86_64 (the CPU wheel of the dev machines comes from their own
# wheel folder); check inside the container: python -c "import torch; print(torch.cuda.is_available())".
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv libgl1 libegl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/meshconf
COPY pyproject.toml README.md ./
COPY meshconf ./meshconf
RUN python3 -m venv .venv && .venv/bin/python -m pip install -e ".[render]"
ENV PATH=/opt/meshconf/.venv/bin:$PATH MESHCONF_DATA=/data PYOPENGL_PLATFORM=egl
VOLUME /data
ENTRYPOINT ["meshconf"]
CMD ["demo"]
