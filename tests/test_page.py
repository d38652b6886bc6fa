"""The demo's results page in a real headless browser (Debian's Chromium, software WebGL): the 3D view draws the
mesh, and the page loads nothing from the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

PROBE = """<script>
setTimeout(function () {
  var out = {resources: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
             location: location.href, canvases: []};
  document.querySelectorAll("canvas.mesh").forEach(function (c) {
    var copy = document.createElement("canvas");
    copy.width = c.width; copy.height = c.height;
    var ctx = copy.getContext("2d");
    ctx.drawImage(c, 0, 0);
    var px = ctx.getImageData(0, 0, c.width, c.height).data, drawn = 0;
    for (var i = 0; i < px.length; i += 4) {  // background is rgb(245, 245, 247)
      if (Math.abs(px[i] - 245) + Math.abs(px[i + 1] - 245) + Math.abs(px[i + 2] - 247) > 30) drawn++;
    }
    out.canvases.push({drawn_flag: c.dataset.drawn || "", mesh_pixels: drawn, pixels: c.width * c.height});
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 300);
</script>"""

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--no-first-run", "--window-size=1200,1400", "--virtual-time-budget=5000"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "needs Debian's chromium for the browser test (`apt-get install -y chromium`; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " - required under CI=true")
    pytest.skip(message)


@pytest.mark.slow
def test_results_page_draws_the_mesh_offline(tmp_path, demo_data_dir, shared):
    from meshconf.cli import main

    browser = _chromium()
    crop = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    out = tmp_path / "result"
    assert main(["demo", str(crop), "--cropped", "--renderer", "software", "--out", str(out), "--data-dir",
                 str(demo_data_dir), "--no-progress"]) == 0
    page = (out / "index.html").read_text()
    # nothing in the page points at the network: every src/href is a relative file
    assert not re.findall(r"""(?:src|href)=['"](?:https?:)?//""", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "person 0" in page and "class='worst'" in page
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    # a request over the network would be listed (file:// loads are not): none may be
    assert not [url for url in result["resources"] if not url.startswith(("file:", "data:"))], result
    [canvas] = result["canvases"]
    assert canvas["drawn_flag"] == "1"
    assert canvas["mesh_pixels"] > 0.05 * canvas["pixels"], canvas  # the mesh covers part of the view
    shot = tmp_path / "page.png"
    subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    (out / "index.html").as_uri()], capture_output=True, timeout=180)
    assert shot.stat().st_size > 10000
