"""Every file the pipeline needs: where it lives, how to get it, how to check it.

The data folder mirrors SPIN's `data/` so that `--data-dir` can point at an existing SPIN checkout:

    model_checkpoint.pt  smpl_mean_params.npz  J_regressor_extra.npy  J_regressor_h36m.npy
    smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl (or .npz)  body_pose_model.pth  smpl_vert_segmentation.json

Location: `--data-dir`, else the environment variable MESHCONF_DATA, else a per-user cache folder.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass

from ..errors import MeshconfError
from ..files.fileio import atomic_path

ENV_DATA = "MESHCONF_DATA"
SPIN_DATA_ARCHIVE = "https://visiondata.cis.upenn.edu/spin/data.tar.gz"
SMPL_REGISTRATION = ("register at https://smpl.is.tue.mpg.de (male/female) or https://smplify.is.tue.mpg.de "
                     "(the neutral model SPIN uses), download the Python model and save "
                     "basicModel_{kind}_lbs_10_207_0_v1.0.0.pkl as {path}; `meshconf convert-smpl` makes a "
                     "pickle-free .npz of it")


@dataclass(frozen=True)
class Asset:
    name: str
    relpath: str  # inside the data folder
    description: str
    url: str | None = None  # public download; None when a registration is needed
    archive_member: str | None = None  # file inside the archive at `url`
    sha256: str | None = None
    size: int | None = None
    required: bool = True  # needed by the demo
    alternatives: tuple[str, ...] = ()  # other accepted relpaths (e.g. the .npz form of an SMPL pickle)
    instructions: str = ""
    max_bytes: int | None = None  # download cap where the exact size is not pinned


    @property
    def downloadable(self) -> bool:
        return self.url is not None


def _smpl(gender: str, kind: str, required: bool) -> Asset:
    rel = f"smpl/SMPL_{gender.upper()}.pkl"
    return Asset(f"smpl_{gender}", rel, f"SMPL body model ({gender}); licence needs a registration",
                 required=required, alternatives=(f"smpl/SMPL_{gender.upper()}.npz",),
                 instructions=SMPL_REGISTRATION.format(kind=kind, path=rel))


ASSETS: tuple[Asset, ...] = (
    Asset("spin_checkpoint", "model_checkpoint.pt", "SPIN regressor weights (108 MB)",
          url="https://visiondata.cis.upenn.edu/spin/model_checkpoint.pt", max_bytes=400 << 20),
    Asset("smpl_mean_params", "smpl_mean_params.npz", "SPIN mean pose/shape/camera (the checkpoint holds the same "
          "values; used by the tests and benchmarks)", url=SPIN_DATA_ARCHIVE, archive_member="smpl_mean_params.npz",
          required=False),
    Asset("J_regressor_extra", "J_regressor_extra.npy", "SPIN's 9 extra joint regressors",
          url=SPIN_DATA_ARCHIVE, archive_member="J_regressor_extra.npy"),
    Asset("J_regressor_h36m", "J_regressor_h36m.npy", "Human3.6M joint regressor (sensitivity analysis)",
          url=SPIN_DATA_ARCHIVE, archive_member="J_regressor_h36m.npy", required=False),
    _smpl("neutral", "neutral", True),
    _smpl("male", "m", False),
    _smpl("female", "f", False),
    Asset("openpose_body", "body_pose_model.pth", "OpenPose COCO-18 body weights (pytorch-openpose, 200 MB)",
          url="https://huggingface.co/lllyasviel/Annotators/resolve/main/body_pose_model.pth", max_bytes=400 << 20),
    Asset("part_segmentation", "smpl_vert_segmentation.json", "SMPL part segmentation (Meshcapade)",
          url="https://raw.githubusercontent.com/Meshcapade/wiki/main/assets/SMPL_body_segmentation/smpl/"
              "smpl_vert_segmentation.json", max_bytes=64 << 20),
)
ASSETS_BY_NAME = {a.name: a for a in ASSETS}
ENV_OFFLINE = "MESHCONF_OFFLINE"
ENV_MIRROR = "MESHCONF_MIRROR"


# Hosts that have served these files over plain http only: https is tried first, http only when https cannot
# connect (said in one line); what arrives is checked by structure and, from then on, by its recorded SHA-256.
HTTP_FALLBACK_HOSTS = ("visiondata.cis.upenn.edu",)
CHECKSUMS = "checksums.json"  # in the data folder: relpath -> SHA-256 of each file as first downloaded and checked


def default_data_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "meshconf")


def data_dir(explicit=None) -> str:
    """The data folder: the explicit argument, else $MESHCONF_DATA, else the per-user cache."""
    return os.fspath(explicit) if explicit else os.environ.get(ENV_DATA) or default_data_dir()


def asset(name: str) -> Asset:
    try:
        return ASSETS_BY_NAME[name]
    except KeyError:
        raise MeshconfError(f"unknown asset '{name}'; known: {', '.join(ASSETS_BY_NAME)}") from None


def locate(name: str, root=None) -> str | None:
    """Path of an asset if present (any accepted form), else None."""
    a = asset(name)
    root = data_dir(root)
    for rel in (a.relpath,) + a.alternatives:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            return path
    return None


def next_step(a: Asset, root) -> str:
    if a.downloadable:
        return f"run `meshconf fetch --data-dir {root}` (downloads {a.url})"
    return a.instructions


def require(name: str, root=None) -> str:
    """Path of an asset, or a one-line error saying how to get it."""
    root = data_dir(root)
    path = locate(name, root)
    if path is None:
        a = asset(name)
        raise MeshconfError(f"missing {a.description}: {os.path.join(root, a.relpath)}; {next_step(a, root)}")
    return path


def missing(names, root=None) -> list[Asset]:
    return [asset(n) for n in names if locate(n, root) is None]


def require_all(names, root=None) -> dict[str, str]:
    """Paths of several assets, or ONE message naming every missing one and how to get each."""
    root = data_dir(root)
    absent = missing(names, root)
    if absent:
        fetchable = [a.relpath for a in absent if a.downloadable]
        manual = [a for a in absent if not a.downloadable]
        parts = [f"missing in {root}: {', '.join(a.relpath for a in absent)}."]
        if fetchable:
            parts.append(f"`meshconf fetch --data-dir {root}` downloads {', '.join(fetchable)}.")
        for a in manual:
            parts.append(f"{a.relpath}: {a.instructions}.")
        raise MeshconfError(" ".join(parts))
    return {n: locate(n, root) for n in names}


def extract_member(archive_path, member_basename: str, dest) -> str:
    """Copy one file (matched by its base name) out of a .tar.gz atomically; never writes outside `dest`."""
    dest = os.fspath(dest)
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            for info in tar.getmembers():
                if info.isfile() and os.path.basename(info.name) == member_basename:
                    src = tar.extractfile(info)
                    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                        while True:
                            block = src.read(1 << 20)
                            if not block:
                                break
                            fh.write(block)
                    return dest
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise MeshconfError(f"cannot read archive {archive_path} ({exc}); delete it and run `meshconf fetch` "
                            f"again") from None
    raise MeshconfError(f"{member_basename} is not in {archive_path}; delete it and run `meshconf fetch` again")

