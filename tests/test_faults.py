"""Fault injection: kill -9, damaged chunks, concurrent writers, changed model files, a full disk, hostile or
broken download servers, bad arguments, non-finite arrays and weights. Each case is one defect of issue 12."""

from __future__ import annotations

import errno
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from meshconf.engine import extraction as X
from meshconf.files.chunks import ChunkStore
from meshconf.cli import main as cli_main
from meshconf.errors import MeshconfError
from meshconf.files.fileio import FolderLock, json_bytes, write_atomic, write_json
from meshconf.cli import run_job


def _strict_json(path):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(open(path).read(), parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ chunk store
def _store(tmp_path, settings=None):
    store = ChunkStore(str(tmp_path / "chunks"), log=lambda m: None)
    store.bind(settings or {"a": 1})
    return store


def _chunk(rows, width=14, value=0.0):
    rows = np.asarray(rows)
    return {"index": rows, "x": np.full((len(rows), width), value) + rows[:, None]}


def test_merged_returns_exactly_the_requested_rows_each_once(tmp_path):
    store = _store(tmp_path)
    store.write(_chunk([0, 1, 2]))
    store.write(_chunk([3, 4]))
    merged = store.merged(["x"], rows=[0, 1, 2, 3, 4])
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert store.merged(["x"], rows=[1, 3])["index"].tolist() == [1, 3]  # another rank's rows are left out
    with pytest.raises(MeshconfError, match="lacks 1 of the requested rows"):
        store.merged(["x"], rows=[0, 1, 2, 3, 4, 5])
    store.write(_chunk([2, 3]))  # what two writers with other batch sizes leave behind
    with pytest.raises(MeshconfError, match="more than once"):
        store.merged(["x"], rows=range(5))


def test_damaged_chunks_are_moved_aside_in_one_line_each(tmp_path):
    notes = []
    store = ChunkStore(str(tmp_path / "c"), log=notes.append)
    store.bind({"a": 1})
    for start in (0, 2, 4, 6, 8):
        store.write(_chunk([start, start + 1]))
    folder = tmp_path / "c"
    (folder / "chunk_000000000.npz").write_bytes((folder / "chunk_000000000.npz").read_bytes()[:100])  # truncated
    (folder / "chunk_000000002.npz").write_bytes(b"")  # emptied
    altered = dict(np.load(folder / "chunk_000000004.npz"))
    altered["x"][0, 0] += 1  # values changed, file well-formed
    np.savez(folder / "chunk_000000004.npz", **altered)
    os.remove(folder / "chunk_000000006.json")  # a chunk without its checksum
    assert store.done() == {8, 9}
    assert len(notes) == 4 and all("damaged" in n and "\n" not in n for n in notes)
    assert sorted(os.listdir(folder / "damaged")) == sorted(
        ["chunk_000000000.npz", "chunk_000000000.json", "chunk_000000002.npz", "chunk_000000002.json",
         "chunk_000000004.npz", "chunk_000000004.json", "chunk_000000006.npz"])


def test_a_chunk_another_process_sees_has_its_checksum(tmp_path, monkeypatch):
    """torchrun ranks share a chunk folder: one rank's check must never catch the other's chunk half-written (CI
    once saw rank 1 move rank 0's fresh chunk to damaged/ between the two files of a write)."""
    import meshconf.files.chunks as chunks

    notes = []
    writer, reader = ChunkStore(str(tmp_path / "c")), ChunkStore(str(tmp_path / "c"), log=notes.append)
    writer.bind({"a": 1})
    reader.bind({"a": 1})
    seen = []

    def write_then_look(path, data):  # another rank checks the folder after each file lands
        write_atomic(path, data)
        seen.append(reader.done())

    monkeypatch.setattr(chunks, "write_atomic", write_then_look)
    writer.write(_chunk([0, 1]))
    writer.write(_chunk([2, 3]))
    assert not notes and seen[-1] == {0, 1, 2, 3} and not (tmp_path / "c" / "damaged").exists()


def test_a_well_formed_chunk_of_another_width_is_not_merged(tmp_path):
    notes = []
    store = ChunkStore(str(tmp_path / "c"), log=notes.append)
    store.bind({"a": 1})
    store.write(_chunk([0, 1]))
    store.write(_chunk([2, 3]))
    store.write(_chunk([4], width=13))
    assert store.done() == {0, 1, 2, 3} and "another shape" in notes[0]
    assert store.merged(["x"], rows=[0, 1, 2, 3])["x"].shape == (4, 14)


def test_chunks_without_settings_are_not_reused_silently(tmp_path):
    store = _store(tmp_path, {"weights": "A"})
    store.write(_chunk([0, 1]))
    os.remove(tmp_path / "chunks" / "settings.json")
    with pytest.raises(MeshconfError, match="no settings.json"):
        ChunkStore(str(tmp_path / "chunks")).bind({"weights": "B"})
    again = ChunkStore(str(tmp_path / "chunks"))
    again.bind({"weights": "A"})  # the chunks carry the hash of their settings: these are provably the same
    assert again.done() == {0, 1}


def test_lock_refuses_a_second_process_naming_its_pid(tmp_path):
    folder = tmp_path / "chunks"
    folder.mkdir()
    code = ("import sys, time; from meshconf.files.fileio import FolderLock\n"
            f"with FolderLock({str(folder)!r}, '.lock.0'):\n    print('held', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MeshconfError, match=f"pid {holder.pid}"):
            with ChunkStore(str(folder)).lock(0):
                pass
    finally:
        holder.kill()
        holder.wait()
    with ChunkStore(str(folder)).lock(0):  # a killed holder leaves no stale lock
        pass


# ------------------------------------------------------------------------------------------------ extraction
def _extract(tmp_path, data, networks, out="out", **kw):
    spin, smpl, body = networks
    return X.extract(spin, smpl, body, data, str(tmp_path / out), "t", progress=False, **kw)


@pytest.fixture
def tiny_models(spin_model, smpl_layer, body_model):
    return spin_model, smpl_layer, body_model


def _arrays(folder):
    return {s: np.load(folder / f"t_{s}.npy") for s in ("sp_op", "sp_gt", "conf")}


@pytest.mark.slow
def test_damaged_chunks_are_redone_bit_for_bit(tmp_path, tiny_dataset, tiny_models):
    from meshconf.dataset import AnnotatedCrops

    data = AnnotatedCrops(*tiny_dataset)
    assert _extract(tmp_path, data, tiny_models, "clean", batch_size=2, occlude=True, seed=1)
    assert _extract(tmp_path, data, tiny_models, "hurt", batch_size=2, occlude=True, seed=1)
    chunks = tmp_path / "hurt" / ".t_chunks"
    (chunks / "chunk_000000000.npz").write_bytes(b"\0" * 300)  # zeroed
    (chunks / "chunk_000000002.npz").write_bytes((chunks / "chunk_000000002.npz").read_bytes()[:-40])  # truncated
    assert _extract(tmp_path, data, tiny_models, "hurt", batch_size=2, occlude=True, seed=1)
    clean, hurt = _arrays(tmp_path / "clean"), _arrays(tmp_path / "hurt")
    for key in clean:
        assert clean[key].tobytes() == hurt[key].tobytes(), key
    assert len(os.listdir(chunks / "damaged")) == 4


def test_resume_with_other_model_settings_is_refused(tmp_path, tiny_dataset, tiny_models):
    from meshconf.dataset import AnnotatedCrops

    data = AnnotatedCrops(*tiny_dataset)
    first = {"sha256": {"spin": "a" * 64}, "numerics": 1, "precision": "float32", "device": "cpu"}
    assert not _extract(tmp_path, data, tiny_models, batch_size=2, max_batches=1, models=first)
    with pytest.raises(MeshconfError, match=r"other settings \(models\)"):
        _extract(tmp_path, data, tiny_models, batch_size=2, models={**first, "sha256": {"spin": "b" * 64}})


def test_nan_producing_spin_writes_no_arrays(tmp_path, tiny_dataset, tiny_models):
    from meshconf.dataset import AnnotatedCrops

    spin, smpl, body = tiny_models

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = spin

        def forward(self, x):
            rotmat, betas, camera = self.inner(x)
            return rotmat, betas, camera * float("nan")

    data = AnnotatedCrops(*tiny_dataset)
    with pytest.raises(MeshconfError, match="non-finite outputs for 5 of 5 rows"):
        _extract(tmp_path, data, (Broken(), smpl, body), batch_size=5)
    assert not list((tmp_path / "out").glob("*.npy"))


@pytest.mark.slow
def test_a_full_disk_mid_set_never_pairs_old_and_new_arrays(tmp_path, tiny_dataset, tiny_models, monkeypatch):
    from meshconf.sp_op.arrays import find_row
    from meshconf.dataset import AnnotatedCrops
    from meshconf.files import fileio

    data = AnnotatedCrops(*tiny_dataset)
    assert _extract(tmp_path, data, tiny_models, batch_size=5)
    out = tmp_path / "out"
    a = data.annotations
    found = find_row(str(out), "t", a.imgname[2], a.center[2], 2, len(a))
    assert found.matched_by == "manifest"
    merged = {"ed": np.ones((5, 14)), "se": np.ones((5, 14)), "conf": np.ones((5, 14)),
              "occluded_joint": np.full(5, -1)}
    real = fileio.write_atomic
    calls = []

    def full_disk(path, payload):
        calls.append(path)
        if len(calls) == 2:  # the second array: the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, payload)

    monkeypatch.setattr(X, "write_atomic", full_disk)
    with pytest.raises(OSError):
        X.write_outputs(str(out), "t", merged, data, False, {})
    monkeypatch.undo()
    assert np.load(out / "t_sp_op.npy").tolist() == np.ones((5, 14)).tolist()  # new
    assert json.loads((out / "t_manifest.json").read_text())["complete"] is False  # ... marked as a broken write
    with pytest.raises(MeshconfError, match="being written"):
        find_row(str(out), "t", a.imgname[2], a.center[2], 2, len(a))
    from meshconf.classifier import data as D

    with pytest.raises(MeshconfError, match="being written"):  # prepare, evaluate and calibrate read through it
        D.load_set(out, "t")
    for job in (["evaluate", "--data", str(out), "--sets", "t", "--train-sets"],
                ["prepare", "--data", str(out), "--sets", "t", "--out", str(tmp_path / "prep")],
                ["calibrate", "--data", str(out), "--out", str(tmp_path / "mine.safetensors")]):
        assert cli_main(job) == 2, job
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]


def test_manifest_hashes_catch_an_array_from_another_run(tmp_path, tiny_dataset, tiny_models):
    from meshconf.sp_op.arrays import find_row
    from meshconf.dataset import AnnotatedCrops

    data = AnnotatedCrops(*tiny_dataset)
    assert _extract(tmp_path, data, tiny_models, batch_size=5)
    np.save(tmp_path / "out" / "t_sp_gt.npy", np.zeros((5, 14)))
    a = data.annotations
    with pytest.raises(MeshconfError, match="does not match the SHA-256"):
        find_row(str(tmp_path / "out"), "t", a.imgname[0], a.center[0], 0, len(a))


def test_write_atomic_leaves_nothing_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        write_atomic(target, b"new contents")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


def test_write_atomic_on_a_real_full_filesystem(tmp_path):
    """A 64 KiB tmpfs where this machine lets us mount one (root in a container usually may)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]}); "
                    "test_write_atomic_leaves_nothing_on_a_full_disk injects ENOSPC instead")
    try:
        (mount / "x.bin").write_bytes(b"old")
        with pytest.raises(OSError) as info:
            write_atomic(mount / "x.bin", b"\1" * (1 << 20))
        assert info.value.errno == errno.ENOSPC
        assert (mount / "x.bin").read_bytes() == b"old" and os.listdir(mount) == ["x.bin"]
    finally:
        subprocess.run(["umount", str(mount)])


@pytest.mark.slow
def test_kill_9_during_extract_then_resume_equals_undisturbed(tmp_path, tiny_dataset, demo_data_dir):
    path, root = tiny_dataset
    common = ["--annotations", str(path), "--images", str(root), "--name", "t", "--occlude",
              "--data-dir", str(demo_data_dir), "--batch-size", "1", "--threads", "1"]
    assert run_job("extract", common + ["--out", str(tmp_path / "clean")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-m", "meshconf", "extract", *common, "--out", str(tmp_path / "k")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = tmp_path / "k" / ".t_chunks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("chunk_*.json"))) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 2 <= len(list(chunks.glob("chunk_*.json"))) < 5, "the job was not caught mid-run"
    assert run_job("extract", common + ["--out", str(tmp_path / "k")]) == 0
    clean, resumed = _arrays(tmp_path / "clean"), _arrays(tmp_path / "k")
    for key in clean:
        assert clean[key].tobytes() == resumed[key].tobytes(), key


@pytest.mark.slow
def test_extract_job_binds_the_checkpoint_and_the_lock(tmp_path, tiny_dataset, demo_data_dir, mean_params, capsys):
    from meshconf.models.recipe import write_spin_checkpoint

    other = tmp_path / "other.pt"
    write_spin_checkpoint(other, 1, mean_params)
    path, root = tiny_dataset
    common = ["extract", "--annotations", str(path), "--images", str(root), "--name", "t", "--out",
              str(tmp_path / "o"), "--data-dir", str(demo_data_dir), "--batch-size", "5"]
    assert cli_main(common) == 0
    manifest = _strict_json(tmp_path / "o" / "t_manifest.json")
    assert set(manifest["models"]["sha256"]) == {"spin", "openpose", "smpl", "J_regressor_extra"}
    capsys.readouterr()
    assert cli_main(common + ["--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other settings (models)" in err and len(err.strip().splitlines()) == 1
    with FolderLock(str(tmp_path / "o" / ".t_chunks"), ".lock.0"):
        assert cli_main(common) == 2
    assert f"pid {os.getpid()}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ downloads
class _Hostile:
    """A local server whose every answer a test scripts: handler(request) -> (status, headers, body or iterator)."""

    def __init__(self):
        self.script = {}
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                owner.requests.append((name, self.headers.get("Range")))
                status, headers, body = owner.script[name](self.headers.get("Range"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    for block in ([body] if isinstance(body, bytes) else body):
                        self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def hostile():
    server = _Hostile()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_endless_stream_is_capped(tmp_path, hostile):
    from meshconf.assets.download import download

    def endless(_):
        return 200, {}, iter(lambda: b"\0" * 65536, None)

    hostile.script["x"] = endless
    with pytest.raises(MeshconfError, match="limit"):
        download(f"{hostile.url}/x", tmp_path / "x", progress=False, max_bytes=1 << 20)
    assert not os.listdir(tmp_path)


def test_206_from_another_offset_is_not_spliced_in(tmp_path, hostile):
    from meshconf.assets.download import download

    data = bytes(range(256)) * 100

    def wrong_range(rng):
        if rng:  # asked for bytes 1000-, answers from 0 with a 206
            return 206, {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "Content-Length": len(data)}, data
        return 200, {"Content-Length": len(data)}, data

    hostile.script["x"] = wrong_range
    (tmp_path / "x.part").write_bytes(data[:1000])
    download(f"{hostile.url}/x", tmp_path / "x", progress=False)
    assert (tmp_path / "x").read_bytes() == data


def test_416_on_a_short_part_starts_over(tmp_path, hostile):
    from meshconf.assets.download import download

    data = b"abc" * 5000

    def refuses_ranges(rng):
        if rng:
            return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
        return 200, {"Content-Length": len(data)}, data

    hostile.script["x"] = refuses_ranges
    (tmp_path / "x.part").write_bytes(data[:100])
    download(f"{hostile.url}/x", tmp_path / "x", progress=False)
    assert (tmp_path / "x").read_bytes() == data


def test_fetch_checks_before_the_final_name_and_rechecks_what_it_finds(tmp_path, hostile, shared):
    from meshconf.assets import catalog as A
    from meshconf.engine.fetching import fetch_assets

    good = (shared / "data" / "spin" / "J_regressor_extra.npy").read_bytes()
    served = {"body": b"not an npy file at all"}
    hostile.script["J_regressor_extra.npy"] = lambda rng: (200, {"Content-Length": len(served["body"])},
                                                          served["body"])
    item = A.Asset("J_regressor_extra", "J_regressor_extra.npy", "test", url=f"{hostile.url}/J_regressor_extra.npy")
    with pytest.raises(MeshconfError, match="failed its check"):
        fetch_assets([item], str(tmp_path), progress=False, log=lambda m: None)
    assert not (tmp_path / "J_regressor_extra.npy").exists()  # never under the final name unchecked
    assert (tmp_path / "J_regressor_extra.npy.invalid").exists()
    # a damaged file already under the final name (copied in, or from an older version) is checked and replaced
    (tmp_path / "J_regressor_extra.npy").write_bytes(good[:200])
    served["body"] = good
    log = []
    fetch_assets([item], str(tmp_path), progress=False, log=log.append)
    assert (tmp_path / "J_regressor_extra.npy").read_bytes() == good
    assert any(line.strip().startswith("invalid") for line in log)


def test_truncated_archive_is_fetched_again(tmp_path, hostile, shared):
    import io
    import tarfile

    from meshconf.assets import catalog as A
    from meshconf.engine.fetching import fetch_assets

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(shared / "data" / "spin" / "J_regressor_extra.npy", arcname="data/J_regressor_extra.npy")
    archive = buffer.getvalue()
    hostile.script["data.tar.gz"] = lambda rng: (200, {"Content-Length": len(archive)}, archive)
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / "data.tar.gz").write_bytes(archive[: len(archive) // 2])  # an earlier run's half
    item = A.Asset("J_regressor_extra", "J_regressor_extra.npy", "test", url=f"{hostile.url}/data.tar.gz",
                   archive_member="J_regressor_extra.npy")
    fetch_assets([item], str(tmp_path), progress=False, log=lambda m: None)
    assert np.load(tmp_path / "J_regressor_extra.npy").shape == (9, 6890)
    assert not os.listdir(tmp_path / ".downloads")


# ------------------------------------------------------------------------------------------------ images
def test_large_boxes_are_cropped_in_strips_to_the_same_bytes(monkeypatch):
    from meshconf import geometry as G

    rng = np.random.default_rng(1)
    for trial in range(12):
        h, w = rng.integers(60, 700, 2)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 2:
            image = (image // 5 + 90).astype(np.uint8)  # a narrow range: the contrast stretch matters
        center, scale = (rng.uniform(-40, w + 40), rng.uniform(-40, h + 40)), rng.uniform(0.3, 5)
        try:
            direct = G.crop(image, center, scale)
        except ValueError:
            continue
        monkeypatch.setattr(G, "CROP_DIRECT_PIXELS", 0)
        monkeypatch.setattr(G, "CROP_STRIP_BYTES", int(rng.integers(2000, 100000)))
        assert np.array_equal(G.crop(image, center, scale), direct)
        monkeypatch.undo()


def test_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path):
    import cv2

    from meshconf.files.imageio import read_bgr

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(MeshconfError, match="400x300 px is more than the limit of 100000 pixels; .*--max-pixels"):
        read_bgr(tmp_path / "big.png", max_pixels=100000)
    assert read_bgr(tmp_path / "big.png", max_pixels=120000).shape == (300, 400, 3)


# ------------------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("extra, message", [
    (["--bbox", "10", "10", "-5", "20"], "positive width"),
    (["--bbox", "nan", "10", "5", "20"], "finite"),
    (["--bbox", "inf", "10", "5", "20"], "finite"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--every", "0"], "--every must be at least 1"),
    (["--max-people", "0"], "--max-people must be at least 1"),
    (["--max-people", "-3"], "--max-people must be at least 1"),
    (["--render-res", "8"], "--render-res must be between 32 and 4096"),
    (["--render-res", "20000"], "--render-res must be between 32 and 4096"),
])
def test_demo_refuses_bad_arguments_before_loading_models(tmp_path, capsys, extra, message):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert cli_main(["demo", str(image), "--data-dir", str(tmp_path / "nothing"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "missing" not in err


def test_demo_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert cli_main(["demo", "--out", str(tmp_path / "f"), "--data-dir", str(tmp_path)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("bbox, message", [
    (["5000", "5000", "10", "10"], "lies outside"),
    (["-500", "-500", "100", "100"], "lies outside"),
    (["0", "0", "1e7", "1e7"], "more than 4x"),
])
def test_demo_bbox_against_the_image(tmp_path, capsys, demo_data_dir, shared, bbox, message):
    image = shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"
    assert cli_main(["demo", str(image), "--bbox", *bbox, "--out", str(tmp_path / "o"),
                     "--data-dir", str(demo_data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_folder_named_like_an_image_is_skipped(tmp_path, capsys):
    from meshconf.jobs.demo import expand_inputs

    (tmp_path / "x.png").mkdir()
    (tmp_path / "y.png").write_bytes(b"")
    assert expand_inputs([str(tmp_path)]) == [("image", str(tmp_path / "y.png"))]
    assert "x.png is a folder, skipped" in capsys.readouterr().err


def test_text_file_as_checkpoint(tmp_path):
    from meshconf.models import load_spin
    from meshconf.openpose import load_body

    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n" * 20)
    for loader in (load_spin, load_body):
        with pytest.raises(MeshconfError, match="not a readable PyTorch file"):
            loader(text)


@pytest.mark.parametrize("dtype, message", [(torch.float16, "is float16"), (torch.int32, "is int32"),
                                            (torch.complex64, "is complex64"), (None, "NaN or infinite")])
def test_checkpoints_of_other_precision_or_non_finite_are_refused(tmp_path, loadable_spin_checkpoint, dtype,
                                                                 message):
    from meshconf.models import load_spin

    state = torch.load(loadable_spin_checkpoint, weights_only=True)
    key = "fc1.weight"
    model = state["model"]
    model[key] = model[key].to(dtype) if dtype is not None else model[key].clone().fill_(float("nan"))
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(MeshconfError, match=message):
        load_spin(tmp_path / "bad.pt")


def _estimator_file(tmp_path, mutate):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from meshconf.classifier.models import shipped_path

    with safe_open(shipped_path("original"), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    mutate(tensors, meta)
    path = tmp_path / "est.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda t, m: m.update(metadata="{not json"), "not a valid meshconf estimator"),
    (lambda t, m: t.pop("mc.fc1.weight"), "does not fit"),
    (lambda t, m: t.update({"mc.fc1.weight": t["mc.fc1.weight"].half()}), "is float16"),
    (lambda t, m: t["mc.fc1.weight"].fill_(float("nan")), "NaN or infinite"),
])
def test_broken_estimator_files_are_refused(tmp_path, mutate, message):
    from meshconf.classifier import load

    with pytest.raises(MeshconfError, match=message):
        load(str(_estimator_file(tmp_path, mutate)))


def test_truncated_annotation_file(tmp_path, tiny_dataset, capsys):
    path, root = tiny_dataset
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:300])
    for argv in (["extract", "--annotations", str(cut), "--images", str(root), "--out", str(tmp_path), "--name", "x"],
                 ["sensitivity", "dataset", "--annotations", str(cut), "--images", str(root), "--out",
                  str(tmp_path / "s")],
                 ["qualitative", "--dataset", "3dpw", "--img_number", "0", "--annotations", str(cut), "--images",
                  str(root), "--arrays", str(tmp_path)]):
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "not a readable annotation file" in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ non-finite
def _write_set(folder, name, ed, se, conf):
    for suffix, array in (("sp_op", ed), ("sp_gt", se), ("conf", conf)):
        np.save(folder / f"{name}_{suffix}.npy", array)


def test_prepare_refuses_non_finite_arrays_or_drops_them_when_asked(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ed, se, conf = rng.uniform(0, 1, (50, 14)), rng.uniform(0, 0.3, (50, 14)), rng.uniform(0.2, 1, (50, 14))
    ed[7, 3] = np.nan
    conf[9, 0] = np.inf
    _write_set(tmp_path, "a", ed, se, conf)
    assert cli_main(["prepare", "--data", str(tmp_path), "--sets", "a", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a_sp_op.npy: array ed holds NaN or infinite values in 1 rows (first: row 7)" in err
    assert not (tmp_path / "p").exists()
    assert cli_main(["prepare", "--data", str(tmp_path), "--sets", "a", "--out", str(tmp_path / "p"),
                     "--drop-nonfinite"]) == 0
    assert "2 of 50 rows hold non-finite values" in capsys.readouterr().out
    meta = _strict_json(tmp_path / "p" / "prepared.json")
    assert np.isfinite(meta["ed_mean"]).all()


def test_every_json_is_strict(tmp_path):
    write_json(tmp_path / "r.json", {"p_accurate": float("nan"), "x": [1.0, float("inf")], "ok": np.float32(2)})
    data = _strict_json(tmp_path / "r.json")
    assert data["p_accurate"] is None and data["x"] == [1.0, None] and data["ok"] == 2.0
    assert "p_accurate" in data["problem"] and "x[1]" in data["problem"]
    assert json_bytes([float("nan")]) == b"[\n null\n]\n"


def test_nan_openpose_confidence_is_flagged_not_silent(tiny_models, monkeypatch):
    import meshconf.engine.pipeline as P
    from meshconf.classifier import load

    spin, smpl, body = tiny_models
    crops = [np.full((224, 224, 3), 128, np.uint8)]
    models = P.Models(spin, smpl, body, load("default"), {}, {})
    real = P.sp_op.relative_ed

    def nan_conf(*args, **kwargs):  # what a damaged OpenPose network gives
        result = real(*args, **kwargs)
        result.conf[:] = np.nan
        return result

    monkeypatch.setattr(P.sp_op, "relative_ed", nan_conf)
    flagged = P.analyse_crops(models, crops)[0]
    assert flagged.problem and "non-finite confidences" in flagged.problem


# ---------------------------------------------------------------------------------------------------- model files
def _smpl_pickle(shared, path, **replace):
    """An SMPL pickle in the official layout (plain arrays and a sparse regressor), with arrays replaced."""
    import pickle

    import scipy.sparse

    from meshconf.models.smpl_file import read_smpl_file

    data = read_smpl_file(shared / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl").as_dict()
    data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    data.update(replace)
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def _crafted_regressor(**attributes):
    import scipy.sparse

    matrix = scipy.sparse.csc_matrix(np.eye(24, 6890))
    for name, value in attributes.items():  # pickling stores whatever the attributes hold
        setattr(matrix, name, value)
    return matrix


@pytest.mark.parametrize("case, replace, message", [
    ("index far outside the shape", {"J_regressor": _crafted_regressor(indices=np.full(24, 10**8, np.int32))},
     "do not fit its shape"),
    ("index just outside the shape", {"J_regressor": _crafted_regressor(indices=np.full(24, 24, np.int32))},
     "do not fit its shape"),
    ("index pointers not monotone", {"J_regressor": _crafted_regressor(indptr=np.r_[0, 5, 2, np.full(6888, 24)]
                                                                       .astype(np.int32))}, "do not fit its shape"),
    ("declared shape of 10^12 elements", {"J_regressor": _crafted_regressor(_shape=(10**6, 10**6))}, "beyond any"),
    ("face index outside the vertices", {"f": np.full((10, 3), 7000, np.uint32)}, "vertex indices outside"),
    ("kinematic tree index outside", {"kintree_table": np.array([[4294967295] + [40] * 23, list(range(24))],
                                                               np.int64)}, "joint indices outside"),
])
def test_a_crafted_smpl_file_is_refused_in_one_line_never_a_crash(shared, tmp_path, capsys, case, replace, message):
    """`convert-smpl` on the file: exit 2 with one line (before: a silent load, a 7 TiB allocation, a segfault)."""
    path = _smpl_pickle(shared, tmp_path / "SMPL_NEUTRAL.pkl", **replace)
    assert cli_main(["convert-smpl", str(path), str(tmp_path / "out.npz")]) == 2, case
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.slow
def test_a_crafted_smpl_file_never_kills_a_fresh_process(shared, tmp_path):
    """The case that wrote out of bounds, in a process of its own: exit 2, never a signal."""
    replace = {"J_regressor": _crafted_regressor(indices=np.full(24, 10**8, np.int32))}
    path = _smpl_pickle(shared, tmp_path / "SMPL_NEUTRAL.pkl", **replace)
    run = subprocess.run([sys.executable, "-m", "meshconf", "convert-smpl", str(path), str(tmp_path / "out.npz")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, (run.returncode, run.stderr[-500:])


# ---------------------------------------------------------------------------------------------------- what is bound
def test_a_resume_on_annotations_differing_only_in_joints_is_refused(tmp_path, tiny_dataset, tiny_models):
    """Interrupt on annotation file A, resume on A' that differs only in joints2d (or only in an extra array):
    refused in one line naming the annotations, never rows of both in one array."""
    from meshconf.dataset import AnnotatedCrops, load_annotations, save_annotations

    path, images = tiny_dataset
    a = load_annotations(path)
    assert not _extract(tmp_path, AnnotatedCrops(a, images), tiny_models, batch_size=2, max_batches=1)
    moved = load_annotations(path)
    moved.joints2d = moved.joints2d + 1.0
    save_annotations(tmp_path / "moved.npz", moved)
    with pytest.raises(MeshconfError, match=r"other settings \(annotations\)"):
        _extract(tmp_path, AnnotatedCrops(tmp_path / "moved.npz", images), tiny_models, batch_size=2)
    extra = load_annotations(path)
    extra.extra["joints3d"] = np.zeros((len(extra), 14, 3))
    with pytest.raises(MeshconfError, match=r"other settings \(annotations\)"):
        _extract(tmp_path, AnnotatedCrops(extra, images), tiny_models, batch_size=2)


def test_a_resume_on_other_images_of_the_same_names_is_refused(tmp_path, tiny_dataset, tiny_models):
    import cv2

    from meshconf.dataset import AnnotatedCrops

    path, images = tiny_dataset
    assert not _extract(tmp_path, AnnotatedCrops(path, images), tiny_models, batch_size=2, max_batches=2)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a.png", "b.jpg"):  # the same names, other pixels
        cv2.imwrite(str(other / name), cv2.imread(str(images / name))[:, ::-1])
    with pytest.raises(MeshconfError, match="other images: row 0's image .*a.png"):
        _extract(tmp_path, AnnotatedCrops(path, other), tiny_models, batch_size=2)
    # the original folder resumes and finishes; each row's image hash is in its chunk
    assert _extract(tmp_path, AnnotatedCrops(path, images), tiny_models, batch_size=2)
    chunk = np.load(tmp_path / "out" / ".t_chunks" / "chunk_000000000.npz")
    from meshconf.files.imageio import file_digest

    assert chunk["image_sha"].tolist() == [file_digest(images / "a.png"), file_digest(images / "b.jpg")]


def test_the_cpu_thread_count_is_bound(tmp_path, tiny_dataset, tiny_models):
    from meshconf.files.chunks import model_settings
    from meshconf.dataset import AnnotatedCrops

    previous = torch.get_num_threads()
    data = AnnotatedCrops(*tiny_dataset)
    try:
        torch.set_num_threads(1)
        one = model_settings({}, device="cpu")
        assert one["threads"] == 1 and "threads" not in model_settings({}, device="cuda")
        assert not _extract(tmp_path, data, tiny_models, batch_size=2, max_batches=1, models=one)
        torch.set_num_threads(2)
        with pytest.raises(MeshconfError, match=r"other settings \(models\)"):
            _extract(tmp_path, data, tiny_models, batch_size=2, models=model_settings({}, device="cpu"))
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------------- bad rows
@pytest.mark.slow
def test_bad_annotation_rows_are_skipped_named_and_recorded(tmp_path, tiny_dataset, tiny_models, capsys):
    """NaN, zero, negative and huge scales and a box far outside the image: each row named in one line with its
    reason, NaN in the arrays, listed in the manifest; the other rows are the same numbers as a clean run's.
    --strict stops at the first such row."""
    from meshconf.dataset import AnnotatedCrops, load_annotations, save_annotations

    path, images = tiny_dataset
    clean = AnnotatedCrops(path, images)
    assert _extract(tmp_path, clean, tiny_models, "clean", batch_size=5)
    a = load_annotations(path)
    names = np.array(list(a.imgname) * 2)
    center = np.concatenate([a.center, a.center])
    scale = np.concatenate([a.scale, a.scale])
    bad = {5: ("scale", np.nan, "not a positive number"), 6: ("scale", 0.0, "not a positive number"),
           7: ("scale", -1.0, "not a positive number"), 8: ("scale", 1e7, "more than 4x"),
           9: ("center", [1e6, 1e6], "does not overlap")}
    for row, (key, value, _) in bad.items():
        (scale if key == "scale" else center)[row] = value
    joints = np.concatenate([a.joints2d, a.joints2d])
    spine = np.concatenate([a.spine2d, a.spine2d])
    from meshconf.dataset import Annotations

    save_annotations(tmp_path / "bad.npz", Annotations(names, center, scale, joints, spine, dataset="tiny"))
    data = AnnotatedCrops(tmp_path / "bad.npz", images)
    with pytest.raises(MeshconfError, match="annotation row 5: box scale nan .*--strict"):
        _extract(tmp_path, data, tiny_models, "strict", batch_size=5, strict=True)
    capsys.readouterr()
    assert _extract(tmp_path, data, tiny_models, "skip", batch_size=5)
    err = capsys.readouterr().err
    for row, (_, _, reason) in bad.items():
        assert any(f"annotation row {row} " in line and reason in line for line in err.splitlines()), (row, err)
    got, want = _arrays(tmp_path / "skip"), _arrays(tmp_path / "clean")
    for key in got:
        assert np.isnan(got[key][5:]).all()
        assert got[key][:5].tobytes() == want[key].tobytes(), key
    manifest = json.loads((tmp_path / "skip" / "t_manifest.json").read_text())
    assert [r for r, _ in manifest["skipped_rows"]] == sorted(bad) and manifest["complete"] is True


@pytest.mark.parametrize("change, message", [
    (lambda z: z.update(center=z["center"].astype(str)), "center holds"),
    (lambda z: z.update(imgname=np.array("a.png")), "1-D array of image names"),
    (lambda z: z.update(scale=z["scale"][:-1]), "scale has shape"),
])
def test_a_malformed_annotation_file_is_refused_in_one_line(tiny_dataset, tmp_path, capsys, change, message):
    path, images = tiny_dataset
    arrays = dict(np.load(path))
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert cli_main(["extract", "--annotations", str(tmp_path / "bad.npz"), "--images", str(images), "--out",
                     str(tmp_path / "out"), "--name", "t"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _estimator_variant(tmp_path, name, tensors=None, metadata=None):
    """The shipped default estimator file with some tensors or metadata replaced."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from meshconf.classifier.models import shipped_path

    with safe_open(shipped_path("default"), framework="pt") as fh:
        header = dict(fh.metadata())
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    state.update(tensors or {})
    meta = json.loads(header["metadata"])
    meta.update(metadata or {})
    header["metadata"] = json.dumps(meta)
    save_file(state, str(tmp_path / name), metadata=header)
    return tmp_path / name


@pytest.mark.parametrize("case, tensors, metadata, message", [
    ("bounds that are text", None, {"bounds": {"coverage": 0.9, "eps": 0.01, "log_quantile": "wide"}},
     "log_quantile"),
    ("operating points that are text", None, {"operating_points": [["0.9", "high"]]}, "finite number"),
    ("an unknown recalibration", None, {"recalibration": {"method": "magic"}}, "recalibration"),
    ("20 million hidden units declared", {"network.members.0.body.0.weight": torch.zeros(20_000_000, 0)}, None,
     "does not fit"),
    ("a forest of depth 31", {"error.leaf": torch.zeros(0, 2 ** 31, dtype=torch.float64)}, None, "depth 31"),
])
def test_a_malformed_estimator_file_is_refused_before_any_allocation(tmp_path, capsys, case, tensors, metadata,
                                                                     message):
    import resource

    path = _estimator_variant(tmp_path, "bad.safetensors", tensors, metadata)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for suffix in ("sp_op", "sp_gt", "conf"):
        np.save(tmp_path / f"t_{suffix}.npy", np.full((30, 14), 0.05))
    assert cli_main(["evaluate", "--data", str(tmp_path), "--model", str(path), "--sets", "t", "--train-sets",
                     "--out", str(tmp_path / "ev"), "--no-progress"]) == 2, case
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    from meshconf.classifier.models import load_file

    with pytest.raises(MeshconfError, match=message):
        load_file(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # kB: no huge allocation


def test_staging_leftovers_of_a_killed_run_are_cleaned_on_the_next(tmp_path):
    """A kill -9 mid-write leaves `.tmp-<pid>-*` files and `.<out>.tmp-<pid>-*` folders; the next run removes those of
    dead processes and leaves a live process's alone."""
    from meshconf.files.fileio import clean_leftovers, staging_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".tmp-{pid}-abc.npy").write_bytes(b"half")
    (tmp_path / f".results.tmp-{pid}-xyz").mkdir()
    (tmp_path / f".results.tmp-{pid}-xyz" / "mesh.glb").write_bytes(b"half")
    live = tmp_path / f".tmp-{os.getpid()}-mine.npy"
    live.write_bytes(b"in progress")
    keep = tmp_path / ".tmp-note.txt"  # not ours: no pid in the name
    keep.write_bytes(b"x")
    staging = staging_folder(str(tmp_path / "results"))  # a new run's first step cleans
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([live.name, keep.name, os.path.basename(staging)])
    assert clean_leftovers(str(tmp_path)) == []


def _set(folder, name, ed, rows=None):
    """One array set `name` in `folder` with the given ED array (SE and confidence alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("sp_op", "sp_gt", "conf"):
        np.save(folder / f"{name}_{key}.npy", ed if rows is None else rows)


def _array_set(tmp_path, kind):
    good = np.abs(np.random.default_rng(0).normal(size=(300, 14))) * 0.1
    folder = tmp_path / kind
    if kind == "empty":
        _set(folder, "x_test", np.zeros((0, 14)))
    elif kind == "zerod":
        _set(folder, "x_test", np.array(1.0))
    elif kind == "allnan":
        _set(folder, "x_test", np.full((50, 14), np.nan))
    elif kind == "good":
        for name in ("3dpw_train", "3dpw_occ_train"):
            _set(folder, name, good)
    return folder


def _prepared(tmp_path, change):
    from meshconf.cli import run_job

    data = _array_set(tmp_path, "good")
    assert run_job("prepare", ["--data", str(data), "--out", str(tmp_path / "prep")]) == 0
    path = tmp_path / "prep" / "train.npz"
    arrays = dict(np.load(path))
    if change == "missing key":
        del arrays["ed"]
    else:
        arrays["ed"][:3] = np.nan
    np.savez(path, **arrays)
    return tmp_path / "prep"


# (case, job and its arguments given tmp_path, the one line it must end with)
INPUT_FAULTS = [
    ("evaluate on empty arrays", lambda t: ["evaluate", "--data", str(_array_set(t, "empty"))], "has shape (0, 14)"),
    ("evaluate on 0-d arrays", lambda t: ["evaluate", "--data", str(_array_set(t, "zerod"))], "has shape ()"),
    ("evaluate on all-NaN arrays", lambda t: ["evaluate", "--data", str(_array_set(t, "allnan")), "--drop-nonfinite"],
     "every row holds NaN"),
    ("prepare --out naming a file", lambda t: ["prepare", "--data", str(_array_set(t, "good")), "--out",
                                               str(_file(t))], "File exists"),
    ("prepare --out under a file", lambda t: ["prepare", "--data", str(_array_set(t, "good")), "--out",
                                              str(_file(t) / "sub")], "Not a directory"),
    ("prepare --out in /proc", lambda t: ["prepare", "--data", str(_array_set(t, "good")), "--out", "/proc/meshconf"],
     "/proc/meshconf"),
    ("train on a prepared folder missing a key", lambda t: ["train", "--prepared", str(_prepared(t, "missing key")),
                                                            "--out", str(t / "tr"), "--model", "v1"], "lacks ed"),
    ("train on NaN rows", lambda t: ["train", "--prepared", str(_prepared(t, "nan")), "--out", str(t / "tr"),
                                     "--model", "v1"], "holds NaN"),
    ("fetch --mirror with a malformed URL", lambda t: ["fetch", "--mirror", "ht!tp://[bad", "--data-dir",
                                                       str(t / "d")], "unknown url type"),
]


def _file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    return path


@pytest.mark.parametrize("case, argv, message", INPUT_FAULTS, ids=[c[0] for c in INPUT_FAULTS])
def test_bad_inputs_end_in_one_line_and_exit_2(tmp_path, capsys, case, argv, message):
    from meshconf.cli import run_job

    args = argv(tmp_path)
    code = run_job(args[0], args[1:])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], (case, err[-2000:])
    assert "Traceback" not in err


@pytest.mark.parametrize("text, message", [("[" * 100000 + "]" * 100000, "nested too deeply"),
                                           ('{"head": "x"}', "lacks SMPL parts"),
                                           ("[1, 2]", "not a part segmentation")])
def test_a_crafted_segmentation_file_is_refused_in_one_line(tmp_path, text, message):
    from meshconf.demo.render import read_segmentation

    path = tmp_path / "seg.json"
    path.write_text(text)
    with pytest.raises(MeshconfError, match=message):
        read_segmentation(path)


def test_a_segmentation_with_vertices_out_of_range_is_refused(tmp_path, shared):
    import json

    from meshconf.demo.render import read_segmentation

    parts = json.loads((shared / "data" / "meshcapade" / "smpl_vert_segmentation.json").read_text())
    parts["head"] = parts["head"] + [6890]
    (tmp_path / "seg.json").write_text(json.dumps(parts))
    with pytest.raises(MeshconfError, match="not a list of SMPL vertex indices"):
        read_segmentation(tmp_path / "seg.json")
