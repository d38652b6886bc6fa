"""The install story: the README's first command is the Dockerfile's install step, and requirements.txt carries
one exact pin inside each of pyproject.toml's ranges. (`docker build` itself cannot run here.)"""

from __future__ import annotations

import pathlib
import re
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALL = 'python3 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt -e ".[render]"'


def test_readme_first_command_installs_and_runs_the_demo():
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)\n```", readme, re.S).group(1).strip()
    assert first == INSTALL + " && .venv/bin/meshconf demo"


def test_dockerfile_installs_as_the_readme_does():
    """The README's install command; no CUDA runtime in the base image (the torch wheel brings CUDA 13's), a CPU
    variant by build argument, no pip cache, a non-root user, the model files and the fast-load cache in /data."""
    docker = (REPO / "Dockerfile").read_text()
    lines = docker.replace("\\\n", " ").splitlines()
    assert re.search(r"^FROM ubuntu:\S+$", docker, re.M) and "nvidia/cuda" not in docker.split("FROM", 1)[1]
    runs = [line[4:].strip() for line in lines if line.startswith("RUN ")]
    assert any(run.endswith(INSTALL) for run in runs)
    assert "PIP_NO_CACHE_DIR=1" in docker and "ARG TORCH=cuda" in docker and "download.pytorch.org/whl/cpu" in docker
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] != "root" and docker.index("USER ") < docker.index(INSTALL)
    assert 'ENTRYPOINT ["meshconf"]' in docker and "VOLUME /data" in docker and "MESHCONF_DATA=/data" in docker
    assert "XDG_CACHE_HOME=/data/" in docker  # checkpoint.fast_form_dir lives under it


def test_requirements_pin_a_version_inside_each_range():
    """pyproject.toml: ranges (users with an environment of their own); requirements.txt: one exact pin for each
    dependency and extra, inside its range; nothing more, nothing less."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [Requirement(d) for d in project["dependencies"] + extras["render"] + extras["test"]
                if not d.startswith("meshconf")]
    pins = [Requirement(line.strip()) for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert sorted(r.name.lower() for r in pins) == sorted(r.name.lower() for r in declared)
    ranges = {r.name.lower(): r.specifier for r in declared}
    for pin in pins:
        (spec,) = pin.specifier  # exactly one clause: ==version
        assert spec.operator == "==", pin
        assert ranges[pin.name.lower()].contains(spec.version), (pin, ranges[pin.name.lower()])
        assert len(ranges[pin.name.lower()]) == 2, pin  # a floor and a ceiling, never open-ended
    assert str(next(p for p in pins if p.name == "torch")) == "torch==2.13.0"  # the goldens' torch


def test_one_version():
    import meshconf
    from meshconf.constants import VERSION

    declared = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert declared == f'version = "{VERSION}"' and meshconf.__version__ == VERSION
