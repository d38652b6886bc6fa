"""The demo's results page in a real headless browser (Debian's Chromium, software WebGL): the 3D view draws the
mesh, and the page loads nothing from the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

# what every probe ends with: its findings as JSON in <pre id="probe">, which --dump-dom prints
# Chromium can hang in a broken headless set-up; this only ends such a hang (a busy machine may take minutes).
HANG_GUARD_S = 1800
EMIT = 'var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out); ' \
       'document.body.appendChild(pre);'
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
  EMIT
}, 300);
</script>""".replace("EMIT", EMIT)

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
                           probe.as_uri()], capture_output=True, text=True, timeout=HANG_GUARD_S)
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
                    (out / "index.html").as_uri()], capture_output=True, timeout=HANG_GUARD_S)
    assert shot.stat().st_size > 10000


INTERACT = """<script>
setTimeout(function () {
  // headless Chromium's window is at least 500 px wide: a phone's 375 px is laid out by narrowing the root
  if (LAYOUT_WIDTH) document.documentElement.style.width = LAYOUT_WIDTH + "px";
  var canvases = document.querySelectorAll("canvas.mesh"), c = canvases[0], yaw = [c.dataset.yaw];
  c.focus();
  c.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true}));
  yaw.push(c.dataset.yaw);
  var at = c.getBoundingClientRect();
  function pointer(type, x) {
    c.dispatchEvent(new PointerEvent(type, {pointerId: 7, pointerType: "touch", clientX: at.left + x,
                                            clientY: at.top + 50, bubbles: true, isPrimary: true}));
  }
  pointer("pointerdown", 50); pointer("pointermove", 120); pointer("pointerup", 120);
  yaw.push(c.dataset.yaw);
  var wheel = new WheelEvent("wheel", {deltaY: 100, bubbles: true, cancelable: true});
  c.blur();
  var trapped = !document.body.dispatchEvent(wheel) || !c.dispatchEvent(new WheelEvent("wheel", {deltaY: 100,
                                                                       bubbles: true, cancelable: true}));
  var out = {drawn: Array.prototype.filter.call(canvases, function (x) { return x.dataset.drawn === "1"; }).length,
             views: canvases.length, yaw: yaw, focusable: c.tabIndex, role: c.getAttribute("role"),
             label: c.getAttribute("aria-label") || "", wheel_trapped_unfocused: trapped,
             buffer: [c.width, c.height], shown: c.clientWidth, dpr: window.devicePixelRatio || 1,
             content_right: Math.max.apply(null, Array.prototype.map.call(document.querySelectorAll("body *"),
                                           function (e) { return e.getBoundingClientRect().right; })),
             layout_width: document.documentElement.getBoundingClientRect().width,
             text: document.body.innerText};
  EMIT
}, 300);
</script>""".replace("EMIT", EMIT)


def _probe(browser, page, tmp_path, width=None):
    probe = page.parent / "probe.html"
    script = INTERACT.replace("LAYOUT_WIDTH", str(width or 0))
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / f'profile{width}'}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=HANG_GUARD_S)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@pytest.mark.slow
def test_the_3d_view_takes_touch_keyboard_a_phone_and_24_people(tmp_path, demo_data_dir, shared):
    """Keyboard and touch rotate the view; it is focusable and labelled; the wheel scrolls the page until a view
    is focused; at 375 px the page is no wider than the screen; 24 people all draw (one shared WebGL context); the
    page shows no local path."""
    from meshconf.cli import main
    from meshconf.demo.pages import write_demo_page

    browser = _chromium()
    crop = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    out = tmp_path / "deep" / "local" / "folder" / "result"
    assert main(["demo", str(crop), "--cropped", "--renderer", "software", "--out", str(out), "--data-dir",
                 str(demo_data_dir), "--no-progress"]) == 0
    one = _probe(browser, out / "index.html", tmp_path)
    assert one["drawn"] == one["views"] == 1
    assert one["yaw"][0] != one["yaw"][1] != one["yaw"][2], one["yaw"]  # keyboard, then touch, turned it
    assert one["focusable"] == 0 and one["role"] == "img" and "arrow keys" in one["label"]
    assert not one["wheel_trapped_unfocused"]
    # the drawing buffer is the size shown (a larger one costs software WebGL its time for nothing)
    assert one["buffer"] == [round(one["shown"] * one["dpr"])] * 2, one
    assert str(tmp_path) not in one["text"] and str(crop.parent) not in one["text"]
    phone = _probe(browser, out / "index.html", tmp_path, width=375)
    assert phone["layout_width"] == 375 and phone["content_right"] <= 375, phone  # nothing wider than the phone
    assert phone["drawn"] == 1
    assert phone["buffer"] == [round(phone["shown"] * phone["dpr"])] * 2 and phone["shown"] < one["shown"], phone
    # a page of 24 people: the person folder copied 24 times
    report = json.loads((out / "report.json").read_text())
    crowd = tmp_path / "crowd"
    crowd.mkdir()
    shutil.copy(out / "overview.png", crowd)
    for k in range(24):
        shutil.copytree(out / "person0", crowd / f"person{k}")
    write_demo_page(str(crowd), {**report, "people": report["people"] * 24})
    many = _probe(browser, crowd / "index.html", tmp_path)
    assert many["views"] == 24 and many["drawn"] == 24, many
