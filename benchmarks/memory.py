"""Memory benchmark: peak resident memory of `meshconf demo` as a whole process on big photos.

    python benchmarks/memory.py [--json benchmarks/results/memory.json]

Each image is a photo (the im1010 example) scaled up to 4000x3000 and 20000x20000 px and saved as JPEG. The demo runs
in a fresh process twice per image: with person detection (boxes searched on a downscaled copy) and `--cropped` (one
box spanning the whole image: the crop path at full size). Peak RSS is the child's VmHWM, polled every 20 ms (not
`wait4`'s ru_maxrss, which a child inherits from its parent's size at fork).
Beside it, in the same run, the original structure of the crop (the whole box copied into a float64 canvas, then
byte-scaled and resized) on the same image, alone in a fresh process; at 20000x20000 it would need 24000^2 x 3 x 8 B
= 13.8 GB for the canvas, more than this machine can spare, so it is not run there (reported as such).
Target (issue 12): the demo under 2.5 GB for both images. Recipe weights, synthetic SMPL.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
TARGET_GB = 2.5

ORIGINAL_CROP = """
import sys, numpy as np, cv2
from meshconf import geometry
image = cv2.imread(sys.argv[1])[:, :, ::-1]
center, scale = geometry.centered_box(*image.shape[:2])
ul, br = geometry.crop_box(center, scale)
canvas = np.zeros((br[1] - ul[1], br[0] - ul[0], 3))  # the original: a float64 canvas of the whole box
h, w = image.shape[:2]
canvas[max(0, -ul[1]):min(br[1], h) - ul[1], max(0, -ul[0]):min(br[0], w) - ul[0]] = \\
    image[max(0, ul[1]):min(h, br[1]), max(0, ul[0]):min(w, br[0])]
geometry._imresize_rgb(canvas, 224)
"""


MAKE_IMAGE = """
import sys, cv2
photo = cv2.imread(sys.argv[1])
cv2.imwrite(sys.argv[2], cv2.resize(photo, (int(sys.argv[3]), int(sys.argv[4]))), [cv2.IMWRITE_JPEG_QUALITY, 90])
"""


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS in GB, seconds, exit status) of a fresh process: its VmHWM (the kernel's high-water mark of
    resident memory, per address space, so nothing of this process is counted) read until it exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_kb = 0
    status_path = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(status_path) as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    err = proc.stderr.read().decode()
    if proc.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    return peak_kb * 1024 / 1e9, time.perf_counter() - start, proc.returncode


def write_result(path, result: dict) -> None:
    """A benchmark's JSON, its folder made if needed, and the line saying where it went."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def data_dir(tmp: pathlib.Path) -> pathlib.Path:
    import numpy as np

    from meshconf.models.recipe import write_openpose_weights, write_spin_checkpoint

    root = tmp / "data"
    (root / "smpl").mkdir(parents=True)
    write_spin_checkpoint(root / "model_checkpoint.pt", 0, dict(np.load(SHARED / "data" / "spin" /
                                                                        "smpl_mean_params.npz")))
    write_openpose_weights(root / "body_pose_model.pth", 0)
    shutil.copy(SHARED / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl", root / "smpl" / "SMPL_NEUTRAL.pkl")
    for name in ("J_regressor_extra.npy", "smpl_mean_params.npz"):
        shutil.copy(SHARED / "data" / "spin" / name, root)
    shutil.copy(SHARED / "data" / "meshcapade" / "smpl_vert_segmentation.json", root)
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "memory.json"))
    args = parser.parse_args(argv)
    rows = []
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        root = data_dir(tmp)
        images = {}
        for w, h in ((4000, 3000), (20000, 20000)):
            path = tmp / f"photo_{w}x{h}.jpg"
            subprocess.run([sys.executable, "-c", MAKE_IMAGE, str(SHARED / "data" / "meshconfidence" / "examples" /
                                                                  "im1010.jpg"), str(path), str(w), str(h)],
                           check=True)  # in its own process, so that this one stays small
            images[(w, h)] = path
        demo = [sys.executable, "-m", "meshconf", "demo", "--data-dir", str(root), "--renderer", "software"]
        print(f"{'image':>12} {'run':44} {'peak RSS GB':>12} {'s':>7} {'exit':>5}")
        for (w, h), path in images.items():
            cases = [("meshconf demo (person detection)", demo + [str(path), "--out", str(tmp / "o1")]),
                     ("meshconf demo --cropped (whole-image box)", demo + [str(path), "--cropped", "--out",
                                                                         str(tmp / "o2")])]
            if w * h <= 20_000_000:
                cases.append(("original structure: crop alone", [sys.executable, "-c", ORIGINAL_CROP, str(path)]))
            for name, command in cases:
                gb, seconds, code = peak_rss(command)
                rows.append(dict(image=f"{w}x{h}", run=name, peak_rss_gb=round(gb, 3), seconds=round(seconds, 1),
                                 exit=code, under_target=gb < TARGET_GB))
                print(f"{w}x{h:<6} {name:44} {gb:12.2f} {seconds:7.1f} {code:5d}", flush=True)
            if w * h > 20_000_000:
                rows.append(dict(image=f"{w}x{h}", run="original structure: crop alone", peak_rss_gb=None,
                                 note="not run: the float64 canvas alone would be 13.8 GB"))
                print(f"{w}x{h:<6} {'original structure: crop alone':44} {'not run (13.8 GB canvas)':>12}")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(benchmark="memory", cpu=cpu_name(), target_gb=TARGET_GB, rows=rows), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
