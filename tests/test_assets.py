import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import numpy as np
import pytest

from meshconf.assets import catalog as A
from meshconf.cli import main as cli_main
from meshconf.assets.download import download
from meshconf.errors import MeshconfError
from meshconf.engine.fetching import fetch_assets


class _Server:
    """A local HTTP server with Range support whose files and failure modes a test controls."""

    def __init__(self):
        self.files = {}
        self.cut_after = {}  # name -> bytes to send before dropping the connection (once)
        self.ignore_range = False
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_download_complete_and_checksummed(tmp_path, server):
    data = os.urandom(3_000_000)
    server.files["a.bin"] = data
    dest = tmp_path / "a.bin"
    download(f"{server.url}/a.bin", dest, sha256=hashlib.sha256(data).hexdigest(), size=len(data), progress=False)
    assert dest.read_bytes() == data and not (tmp_path / "a.bin.part").exists()


def test_interrupted_download_resumes(tmp_path, server):
    data = os.urandom(2_500_000)
    server.files["big.bin"] = data
    server.cut_after["big.bin"] = 1_000_000
    dest = tmp_path / "big.bin"
    with pytest.raises(MeshconfError) as e:
        download(f"{server.url}/big.bin", dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert "again" in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists()  # nothing half-written under the final name
    part = tmp_path / "big.bin.part"
    assert 0 < part.stat().st_size < len(data)
    download(f"{server.url}/big.bin", dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data
    assert server.requests[-1][1] is not None and server.requests[-1][1].startswith("bytes=")  # it resumed


def test_server_without_range_support_restarts_cleanly(tmp_path, server):
    data = os.urandom(100_000)
    server.files["x.bin"] = data
    server.ignore_range = True
    (tmp_path / "x.bin.part").write_bytes(data[:5000])
    download(f"{server.url}/x.bin", tmp_path / "x.bin", progress=False)
    assert (tmp_path / "x.bin").read_bytes() == data


def test_corrupted_download_is_rejected(tmp_path, server):
    good = os.urandom(50_000)
    server.files["c.bin"] = bytearray(good)
    server.files["c.bin"][100] ^= 0xFF
    dest = tmp_path / "c.bin"
    with pytest.raises(MeshconfError) as e:
        download(f"{server.url}/c.bin", dest, sha256=hashlib.sha256(good).hexdigest(), progress=False)
    assert "corrupt" in str(e.value)
    assert not dest.exists() and not (tmp_path / "c.bin.part").exists()


def test_unreachable_and_404_are_one_line(tmp_path, server):
    with pytest.raises(MeshconfError) as e:
        download(f"{server.url}/missing.bin", tmp_path / "m.bin", progress=False)
    assert "404" in str(e.value)
    with pytest.raises(MeshconfError) as e:
        download("http://127.0.0.1:9/none", tmp_path / "n.bin", progress=False, timeout=2)
    assert "cannot reach" in str(e.value)


def _spin_archive(shared) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("smpl_mean_params.npz", "J_regressor_extra.npy", "J_regressor_h36m.npy"):
            tar.add(shared / "data" / "spin" / name, arcname=f"data/{name}")
    return buf.getvalue()


def test_fetch_cli_with_mirror_extracts_and_validates(tmp_path, server, shared, capsys):
    server.files["data.tar.gz"] = _spin_archive(shared)
    server.files["smpl_vert_segmentation.json"] = (shared / "data" / "meshcapade" /
                                                   "smpl_vert_segmentation.json").read_bytes()
    root = tmp_path / "data"
    rc = cli_main(["fetch", "--data-dir", str(root), "--mirror", server.url, "--no-progress", "--only",
                   "smpl_mean_params", "J_regressor_extra", "J_regressor_h36m", "part_segmentation"])
    assert rc == 0
    for name in ("smpl_mean_params.npz", "J_regressor_extra.npy", "J_regressor_h36m.npy",
                 "smpl_vert_segmentation.json"):
        assert (root / name).read_bytes() == (shared / "data" / ("meshcapade" if name.endswith("json") else "spin")
                                              / name).read_bytes()
    assert sum(1 for n, _ in server.requests if n == "data.tar.gz") == 1  # one archive for three files
    assert not (root / ".downloads" / "data.tar.gz").exists()
    out = capsys.readouterr().out
    assert "manual" in out and "SMPL_NEUTRAL.pkl" in out
    # A second run downloads nothing.
    server.requests.clear()
    assert cli_main(["fetch", "--data-dir", str(root), "--mirror", server.url, "--no-progress", "--only",
                     "smpl_mean_params"]) == 0
    assert server.requests == []


def test_fetch_rejects_a_file_that_fails_its_check(tmp_path, server):
    server.files["smpl_vert_segmentation.json"] = b'{"head": [1, 2]}'
    with pytest.raises(MeshconfError) as e:
        fetch_assets([A.asset("part_segmentation")], tmp_path, mirror=server.url, progress=False, log=lambda m: None)
    assert "failed its check" in str(e.value)
    assert not (tmp_path / "smpl_vert_segmentation.json").exists()


def test_checksums_are_recorded_on_first_download_and_checked_ever_after(tmp_path, server, shared, capsys):
    """Trust on first use: the SHA-256 of each fetched file is recorded; a later download of other bytes is refused,
    and a file changed on disk is reported by fetch and doctor."""
    import json

    good = (shared / "data" / "meshcapade" / "smpl_vert_segmentation.json").read_bytes()
    server.files["smpl_vert_segmentation.json"] = good
    root = tmp_path / "data"
    argv = ["fetch", "--data-dir", str(root), "--mirror", server.url, "--no-progress", "--only", "part_segmentation"]
    assert cli_main(argv) == 0
    record = json.loads((root / A.CHECKSUMS).read_text())
    assert record == {"smpl_vert_segmentation.json": hashlib.sha256(good).hexdigest()}
    # the same file with other content that still passes the structural check
    other = json.loads(good)
    other["head"] = other["head"][:-1]
    server.files["smpl_vert_segmentation.json"] = json.dumps(other).encode()
    capsys.readouterr()
    assert cli_main(argv + ["--force"]) == 2
    assert "recorded when it was downloaded" in capsys.readouterr().err
    assert (root / "smpl_vert_segmentation.json").read_bytes() == good  # the checked file stays
    # a file changed on disk: doctor and fetch say so
    (root / "smpl_vert_segmentation.json").write_text(json.dumps(other))
    rows = {a.name: (status, detail) for a, status, detail in
            __import__("meshconf.jobs.doctor", fromlist=["diagnose"]).diagnose(str(root))}
    assert rows["part_segmentation"][0] == "broken" and "recorded when it was downloaded" in rows["part_segmentation"][1]


def test_https_falls_back_to_http_only_for_listed_hosts(tmp_path, monkeypatch):
    from meshconf.assets.download import Unreachable
    from meshconf.engine import fetching

    tried, lines = [], []

    def fetch(url):
        tried.append(url)
        if url.startswith("https://"):
            raise Unreachable(f"cannot reach {url}")
        return url

    assert fetching._with_fallback("https://visiondata.cis.upenn.edu/spin/x", fetch, lines.append) == \
        "http://visiondata.cis.upenn.edu/spin/x"
    assert tried == ["https://visiondata.cis.upenn.edu/spin/x", "http://visiondata.cis.upenn.edu/spin/x"]
    assert "over http" in lines[0]
    with pytest.raises(Unreachable):
        fetching._with_fallback("https://huggingface.co/x", fetch, lines.append)
    assert all(a.url is None or a.url.startswith("https://") for a in A.ASSETS)


def test_doctor_and_require(tmp_path, shared, capsys, monkeypatch):
    root = tmp_path / "d"
    (root / "smpl").mkdir(parents=True)
    for name in ("smpl_mean_params.npz", "J_regressor_extra.npy"):
        (root / name).write_bytes((shared / "data" / "spin" / name).read_bytes())
    (root / "smpl" / "SMPL_NEUTRAL.pkl").write_bytes(
        (shared / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl").read_bytes())
    (root / "J_regressor_h36m.npy").write_bytes(b"garbage")
    monkeypatch.setenv(A.ENV_DATA, str(root))
    assert A.data_dir() == str(root)
    assert cli_main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "$MESHCONF_DATA" in out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert lines["smpl_mean_params.npz"] == "ok" and lines["smpl/SMPL_NEUTRAL.pkl"] == "ok"
    assert lines["J_regressor_h36m.npy"] == "broken" and lines["model_checkpoint.pt"] == "missing"
    assert cli_main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)  # stdout is the JSON document alone
    assert report["ready"] is False and report["source"] == "$MESHCONF_DATA"
    with pytest.raises(MeshconfError) as e:
        A.require_all(["spin_checkpoint", "openpose_body", "smpl_neutral", "smpl_male"])
    msg = str(e.value)
    assert "model_checkpoint.pt" in msg and "body_pose_model.pth" in msg and "SMPL_MALE.pkl" in msg
    assert "meshconf fetch" in msg and "smpl.is.tue.mpg.de" in msg and "\n" not in msg
    assert A.require("smpl_neutral").endswith("SMPL_NEUTRAL.pkl")
    assert np.load(A.require("J_regressor_extra")).shape == (9, 6890)


def test_cli_help_and_version(capsys):
    assert cli_main([]) == 0
    assert "fetch" in capsys.readouterr().out
    assert cli_main(["--version"]) == 0
    assert "meshconf" in capsys.readouterr().out
