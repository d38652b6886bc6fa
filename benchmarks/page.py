"""The results page's load time: headless Chromium on software WebGL (SwiftShader), real time, no GPU.

    python benchmarks/page.py [--people 1 8 24] [--rounds 3] [--json benchmarks/results/page.json]

One `meshconf demo --cropped` on the 3DOH example (recipe weights, synthetic SMPL), its person folder copied to make
pages of 1, 8 and 24 people (what tests/test_page.py does). Each page is opened in a fresh Chromium profile; a probe
at the end of the page reads `performance.now()` once the viewer's script has run (it draws every view before it
returns) and has read a pixel of each view back (WebGL draws lazily; the readback waits for the drawing), so the figure
is navigation start to every 3D view drawn. Beside it, in the same rounds, the previous
viewer (one WebGL context per view, a fixed 720 px buffer; from git history: `PREVIOUS`) on the same pages, when git can show it; the issue
measured 14.8 s for 8 people with it on another machine. Interleaved rounds; median, min and max in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from memory import cpu_name, data_dir, write_result  # noqa: E402

PREVIOUS = "7ec6e94^"  # the commit before the shared-context viewer
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--no-first-run", "--window-size=1200,1400"]
PROBE = """<script>
(function () {
  var views = document.querySelectorAll("canvas.mesh"), copy = document.createElement("canvas");
  copy.width = copy.height = 1;
  views.forEach(function (c) {  // WebGL draws lazily: reading a pixel back waits until each view's drawing is done
    var ctx = copy.getContext("2d");
    ctx.drawImage(c, 0, 0, 1, 1);
    ctx.getImageData(0, 0, 1, 1);
  });
  var drawn = Array.prototype.filter.call(views, function (c) { return c.dataset.drawn === "1"; }).length;
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify({ms: performance.now(), views: views.length, drawn: drawn});
  document.body.appendChild(pre);
})();
</script>"""


def previous_viewer() -> str | None:
    done = subprocess.run(["git", "-C", str(REPO), "show", f"{PREVIOUS}:meshconf/web/viewer.js"],
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def make_pages(tmp: pathlib.Path, counts: list[int]) -> dict[int, pathlib.Path]:
    from meshconf.cli import main as meshconf
    from meshconf.demo.pages import write_demo_page

    out = tmp / "result"
    crop = SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    if meshconf(["demo", str(crop), "--cropped", "--renderer", "software", "--out", str(out), "--data-dir",
                 str(data_dir(tmp)), "--no-progress"]) != 0:
        raise SystemExit("the demo failed")
    report = json.loads((out / "report.json").read_text())
    pages = {}
    for n in counts:
        folder = tmp / f"people{n}"
        folder.mkdir()
        shutil.copy(out / "overview.png", folder)
        for k in range(n):
            shutil.copytree(out / "person0", folder / f"person{k}")
        pages[n] = pathlib.Path(write_demo_page(str(folder), {**report, "people": report["people"] * n}))
    return pages


def load_ms(browser: str, page: pathlib.Path, viewer: str | None, profile: pathlib.Path) -> tuple[float, float]:
    """(ms from navigation to every view drawn, the browser process's wall ms), from a fresh profile."""
    from meshconf.demo.pages import _viewer_js

    html = page.read_text()
    if viewer is not None:
        html = html.replace(_viewer_js(), viewer)
    probe = page.parent / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    start = time.perf_counter()
    done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=1800)
    wall = (time.perf_counter() - start) * 1e3
    shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise SystemExit(f"no probe output from {page}: {done.stderr[-1000:]}")
    result = json.loads(found.group(1).replace("&quot;", '"'))
    if result["drawn"] != result["views"]:
        raise SystemExit(f"{page}: {result['drawn']} of {result['views']} views drawn")
    return result["ms"], wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "page.json"))
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise SystemExit("needs Debian's chromium (`apt-get install -y chromium`)")
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; {version}; software WebGL (SwiftShader)")
    viewers = {"meshconf (one shared context)": None}
    old = previous_viewer()
    if old is None:
        print(f"the previous viewer ({PREVIOUS}) is not in this clone's history: measured alone")
    else:
        viewers["previous (one context a view)"] = old
    times = {(name, n): ([], []) for name in viewers for n in args.people}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        pages = make_pages(tmp, args.people)
        sizes = {n: page.stat().st_size / 1e6 for n, page in pages.items()}
        for r in range(args.rounds):
            for n, page in pages.items():
                for name, viewer in viewers.items():
                    drawn, wall = load_ms(browser, page, viewer, tmp / f"profile{r}{n}")
                    times[(name, n)][0].append(drawn)
                    times[(name, n)][1].append(wall)
                    print(f"  round {r + 1}: {n:3d} people, {name}: {drawn:8.0f} ms to draw, browser {wall:6.0f} ms",
                          flush=True)
    rows = []
    print(f"\n{'viewer':32} {'people':>6} {'page MB':>8} {'drawn ms (median, min-max)':>28} {'browser ms':>11}")
    for (name, n), (drawn, wall) in times.items():
        size = sizes[n]
        rows.append({"viewer": name, "people": n, "page_mb": round(size, 2), "drawn_ms": drawn,
                     "drawn_ms_median": statistics.median(drawn), "browser_ms_median": statistics.median(wall)})
        print(f"{name:32} {n:6d} {size:8.2f} {statistics.median(drawn):10.0f} ({min(drawn):6.0f}-{max(drawn):6.0f})"
              f"       {statistics.median(wall):11.0f}")
    write_result(args.json, {"cpu": cpu_name(), "cores": os.cpu_count(), "browser": version, "rounds": args.rounds,
                             "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
