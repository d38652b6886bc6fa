"""Seeded mutations of model and data files, each read through the loader the jobs use; run in a fresh process by
`tests/test_fuzz.py` (so a crash is a signal the test sees, not the end of pytest).

    python tests/fuzz_driver.py SEED OUT.json KIND=PATH:COUNT ...

Kinds: smpl (an SMPL .pkl), estimator (a .safetensors estimator), annotations (an annotation .npz), checkpoint (a
SPIN checkpoint). Each mutant is one of: bytes flipped, a truncation, bytes inserted, a range zeroed, a chunk
duplicated, and for .npz/.safetensors also a structural edit (an array replaced by one of another shape or dtype, a
header field changed). Outcomes per mutant: "loaded" (the file still made sense), "refused" (MeshconfError, what a
job turns into one line and exit 2) or "traceback" (anything else: a bug). The report also holds the peak RSS.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import tempfile
import traceback

import numpy as np


def byte_mutants(data: bytes, rng: np.random.Generator):
    n = len(data)
    kind = rng.integers(6)
    b = bytearray(data)
    if kind == 0:  # flip a few bytes, often in the first or last 64 KiB where headers and directories live
        for _ in range(int(rng.integers(1, 9))):
            where = int(rng.choice([rng.integers(min(n, 65536)), n - 1 - rng.integers(min(n, 65536)), rng.integers(n)]))
            b[where] ^= int(rng.integers(1, 256))
        return "flip", bytes(b)
    if kind == 1:
        return "truncate", data[:int(rng.integers(n))]
    if kind == 2:
        at = int(rng.integers(n))
        return "insert", data[:at] + rng.bytes(int(rng.integers(1, 64))) + data[at:]
    if kind == 3:
        at, size = int(rng.integers(n)), int(rng.integers(1, 4096))
        b[at:at + size] = bytes(len(b[at:at + size]))
        return "zero", bytes(b)
    if kind == 4:
        at, size = int(rng.integers(n)), int(rng.integers(1, 4096))
        return "duplicate", data[:at] + data[at:at + size] + data[at:]
    huge = np.array([2 ** 31 - 1, 2 ** 40, -1, 0], dtype=np.int64)  # sizes that would ask for everything
    at = int(rng.integers(max(1, n - 8)))
    b[at:at + 8] = huge[rng.integers(len(huge))].tobytes()
    return "huge-int", bytes(b)


def npz_mutant(data: bytes, rng: np.random.Generator):
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(arrays)[int(rng.integers(len(arrays)))]
    a = arrays[key]
    choice = rng.integers(5)
    if choice == 0:
        arrays[key] = a.reshape(-1)[: max(0, a.size - 1)]
    elif choice == 1:
        arrays[key] = np.zeros((2,) * int(rng.integers(0, 4)), dtype=rng.choice(["f4", "i8", "u1", "c8"]))
    elif choice == 2:
        arrays[key] = np.full(a.shape, np.nan) if a.dtype.kind == "f" else np.array(["x"] * max(a.size, 1))
    elif choice == 3:
        del arrays[key]
    else:
        arrays[key] = np.array(1e308) if a.dtype.kind == "f" else np.array(-1)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return f"npz:{key}:{choice}", buffer.getvalue()


def safetensors_mutant(data: bytes, rng: np.random.Generator):
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    keys = sorted(header)
    key = keys[int(rng.integers(len(keys)))]
    choice = rng.integers(4)
    if key == "__metadata__":
        meta = dict(header[key])
        field = sorted(meta)[int(rng.integers(len(meta)))] if meta else "x"
        meta[field] = ["[", "{}", "1e999", "null", "\"x\"", "[[[[]]]]"][int(rng.integers(6))]
        header[key] = meta
    elif choice == 0:
        header[key]["shape"] = [int(s) * int(rng.integers(2, 50)) for s in header[key]["shape"]] or [7]
    elif choice == 1:
        header[key]["dtype"] = ["F16", "I64", "U8", "BOOL", "F64"][int(rng.integers(5))]
    elif choice == 2:
        start, end = header[key]["data_offsets"]
        header[key]["data_offsets"] = [start, end + int(rng.integers(1, 10 ** 9))]
    else:
        del header[key]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return f"st:{key}:{choice}", len(text).to_bytes(8, "little") + text + data[8 + length:]


def loader(kind: str):
    if kind == "smpl":
        from meshconf.models.smpl_file import read_smpl_file
        return read_smpl_file
    if kind == "estimator":
        from meshconf.classifier import load_file
        return load_file
    if kind == "annotations":
        from meshconf.dataset import load_annotations

        def read(path):
            annotations = load_annotations(path)
            annotations.fingerprint()
            return annotations
        return read
    if kind == "checkpoint":
        from meshconf.models import load_spin
        return load_spin
    raise SystemExit(f"unknown kind {kind}")


def main(argv) -> int:
    from meshconf.errors import MeshconfError

    os.environ["MESHCONF_FAST_LOAD"] = "0"  # mutants must not fill the fast-load cache
    limit = int(os.environ.get("FUZZ_MEMORY_LIMIT_GB", "0"))
    if limit:  # an allocation beyond what the files can justify becomes a MemoryError, reported as a traceback
        resource.setrlimit(resource.RLIMIT_AS, (limit << 30, limit << 30))
    seed, out = int(argv[0]), argv[1]
    rng = np.random.default_rng(seed)
    report = {"outcomes": {}, "tracebacks": []}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in argv[2:]:
            kind, rest = spec.split("=", 1)
            path, count = rest.rsplit(":", 1)
            data = open(path, "rb").read()
            suffix = os.path.splitext(path)[1]
            read = loader(kind)
            for k in range(int(count)):
                if suffix == ".npz" and rng.random() < 0.5:
                    how, mutant = npz_mutant(data, rng)
                elif suffix == ".safetensors" and rng.random() < 0.5:
                    how, mutant = safetensors_mutant(data, rng)
                else:
                    how, mutant = byte_mutants(data, rng)
                target = os.path.join(tmp, f"{kind}{k}{suffix}")
                with open(target, "wb") as fh:
                    fh.write(mutant)
                try:
                    read(target)
                    outcome = "loaded"
                except MeshconfError:
                    outcome = "refused"
                except Exception:
                    outcome = "traceback"
                    report["tracebacks"].append({"kind": kind, "mutant": k, "how": how,
                                                 "error": traceback.format_exc()[-1500:]})
                key = f"{kind}:{outcome}"
                report["outcomes"][key] = report["outcomes"].get(key, 0) + 1
                os.unlink(target)
    from meshconf.runtime import peak_rss_mb

    report["max_rss_mb"] = peak_rss_mb()
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
