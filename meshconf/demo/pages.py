"""Results pages: one self-contained `index.html` per result folder, readable offline from file://.

The demo's page shows the overview, then one card per person: the crop, the mesh-classifier and per-part renders,
the per-joint table (ED, estimated error, bound where the estimator gives one; the worst joint highlighted) and an
interactive 3D view of the confidence-coloured mesh. The mesh is the person's `mesh.glb`, embedded as base64 and
drawn by `web/viewer.js` (plain WebGL, inlined): no CDN, no request leaves the page, which a Content-Security-Policy
also enforces. Other jobs write a page of their figures (`gallery`).
"""

from __future__ import annotations

import base64
import html
import os
from importlib import resources

from .. import constants as C
from ..files.fileio import write_atomic

PX = C.NORM_UNIT_PX
CSP = ("default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; "
       "script-src 'unsafe-inline'; style-src 'unsafe-inline'")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; padding: 0 12px; max-width: 1180px;
       color: #1d1d1f; overflow-wrap: anywhere; }
* { box-sizing: border-box; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin: 0 0 8px; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 16px; margin: 18px 0; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.row img { width: 224px; max-width: 100%; height: auto; border: 1px solid #eee; } figure { margin: 0; max-width: 100%; }
.overview { max-width: 100%; border: 1px solid #eee; }
.view { width: 360px; max-width: 100%; } canvas.mesh { width: 100%; aspect-ratio: 1; height: auto;
  border: 1px solid #ddd; border-radius: 6px; cursor: grab; touch-action: none; }
canvas.mesh:focus { outline: 3px solid #0b57d0; }
.legend { height: 10px; border-radius: 3px; background: linear-gradient(to right, #00007f, #0000ff, #007fff, #00ffff,
  #7fff7f, #ffff00, #ff7f00, #ff0000, #7f0000); } .scale { display: flex; justify-content: space-between; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr.worst { background: #ffe1dc; font-weight: 600; }
.ok { color: #1a7f37; } .bad { color: #c62828; } .note { color: #666; font-size: 13px; }
"""


def _viewer_js() -> str:
    return (resources.files("meshconf") / "web" / "viewer.js").read_text()


def _page(title: str, body: str, with_viewer: bool = False) -> bytes:
    script = f"<script>{_viewer_js()}</script>" if with_viewer else ""
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}{script}</body></html>\n").encode()


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _joint_table(report: dict) -> str:
    ed = report.get("ed_px", {})
    est = report.get("estimated_joint_error_px") or {}
    bound = report.get("joint_error_bound_px") or {}
    worst = report.get("worst_joint")
    head = "<tr><th>joint</th><th>ED px</th><th>estimated error px</th>" + \
           ("<th>bound px</th>" if bound else "") + "<th>P(worst)</th></tr>"
    rows = []
    for name in C.J14_NAMES:
        cells = [html.escape(name), _fmt(ed.get(name)), _fmt(est.get(name))]
        if bound:
            cells.append(_fmt(bound.get(name)))
        cells.append(_fmt(report.get("worst_joint_prob", {}).get(name), 2))
        cls = " class='worst'" if name == worst else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _colour_scale(report: dict) -> tuple[str, str, str]:
    """(what the colours mean, low end, high end), the range `demo.figures.joint_scores` paints with."""
    error = report.get("estimated_joint_error_px")
    if error:
        return "estimated joint error (px)", "0", f"{max(30.0, max(error.values())):.0f}"
    prob = report.get("worst_joint_prob") or {"": 0.0}
    return "worst-joint probability", "0", f"{max(0.2, max(prob.values())):.2f}"


def person_card(k: int, person_folder: str, report: dict) -> str:
    rel = os.path.basename(person_folder)
    p = report.get("p_accurate")
    verdict = ("<span class='note'>no estimate</span>" if p is None else
               f"<span class='{'ok' if report.get('accurate') else 'bad'}'>P(accurate) = {p:.2f}</span>")
    if "accepted" in report:
        target = report["acceptance"]["target_precision"]
        verdict += (f", <span class='{'ok' if report['accepted'] else 'bad'}'>"
                    f"{'accepted' if report['accepted'] else 'rejected'} at {target:.0%} precision</span>")
    if report.get("problem"):
        return (f"<div class='card'><h2>person {k}</h2><p>{verdict}</p><p class='note'>"
                f"{html.escape(str(report['problem']))}</p><div class='row'><img src='{rel}/crop.png' alt='crop'>"
                f"</div></div>")
    glb_path = os.path.join(person_folder, "mesh.glb")
    mesh = ""
    if os.path.isfile(glb_path):
        with open(glb_path, "rb") as fh:
            encoded = base64.b64encode(fh.read()).decode()
        label, low, high = _colour_scale(report)
        mesh = (f"<script type='application/octet-stream' id='mesh{k}'>{encoded}</script>"
                f"<div class='view'><canvas class='mesh' width='720' height='720' data-mesh='mesh{k}' tabindex='0' "
                f"role='img' aria-label='3D mesh of person {k}, each part coloured by {html.escape(label)}; arrow "
                f"keys rotate, plus and minus zoom, 0 resets' title='drag to rotate; click, then wheel or + - to "
                f"zoom; double-click or 0 to reset'></canvas><div class='legend' role='presentation'></div>"
                f"<div class='scale note'><span>{low}</span><span>{html.escape(label)}</span><span>{high}</span>"
                f"</div></div>")
    images = "".join(f"<figure><img src='{rel}/{name}.png' alt='{label}'><figcaption class='note'>{label}"
                     f"</figcaption></figure>" for name, label in (("crop", "crop"), ("mc", "mesh classifier"),
                                                                   ("parts", "estimated error per part")))
    return (f"<div class='card'><h2>person {k}: {verdict}, worst joint "
            f"{html.escape(str(report.get('worst_joint')))}</h2><div class='row'>{images}</div>"
            f"<div class='row'>{mesh}<div class='table'>{_joint_table(report)}</div></div>"
            f"<p class='note'>files: <a href='{rel}/report.json'>report.json</a>, <a href='{rel}/mesh.glb'>mesh.glb"
            f"</a>, <a href='{rel}/mesh.ply'>mesh.ply</a>, <a href='{rel}/panel.png'>panel.png</a></p></div>")


def write_demo_page(folder: str, report: dict) -> str:
    """`index.html` for one image's result folder (its `report.json` as `report`)."""
    cards = "".join(person_card(k, os.path.join(folder, f"person{k}"), person)
                    for k, person in enumerate(report.get("people", [])))
    labels = f"{html.escape(str(report.get('device')))}, {html.escape(str(report.get('precision')))}"
    shown = os.path.basename(str(report.get("input")))  # never the input's local path: pages get shared
    body = (f"<p class='note'>{html.escape(shown)}: {len(report.get('people', []))} "
            f"person(s); {labels}; renderer {html.escape(str(report.get('renderer')))}</p>"
            f"<img class='overview' src='overview.png' alt='overview'>" +
            (f"<p>{html.escape(report['message'])}</p>" if report.get("message") else "") + cards)
    path = os.path.join(folder, "index.html")
    write_atomic(path, _page(f"meshconf: {os.path.basename(str(report.get('input')))}", body, with_viewer=True))
    return path


def write_video_page(folder: str, report: dict) -> str:
    links = "".join(f"<li><a href='{html.escape(os.path.dirname(r))}/index.html'>{html.escape(os.path.dirname(r))}"
                    f"</a></li>" for r in report.get("frame_reports", []))
    body = (f"<video src='annotated.mp4' controls style='max-width:100%'></video>"
            f"<p class='note'>{report.get('frames')} analysed frames (every {report.get('every')}-th)</p><ol>{links}</ol>")
    path = os.path.join(folder, "index.html")
    write_atomic(path, _page(f"meshconf: {os.path.basename(str(report.get('input')))}", body))
    return path


def gallery(folder: str, title: str, figures: list[tuple[str, str]], note: str = "",
            name: str = "index.html") -> str:
    """A page of a job's figures: (file name in `folder`, caption) each; missing files are left out."""
    items = "".join(f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}' style='max-width:100%'>"
                    f"<figcaption class='note'>{html.escape(caption)}</figcaption></figure>"
                    for name, caption in figures if os.path.isfile(os.path.join(folder, name)))
    path = os.path.join(folder, name)
    write_atomic(path, _page(title, (f"<p class='note'>{html.escape(note)}</p>" if note else "") + items))
    return path
