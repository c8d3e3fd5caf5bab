"""End-to-end test of the real Radbridge window (tauri-driver + WebKitWebDriver under Xvfb).

Opens the shared chest CT by path, runs the analysis with the configured model, clicks the top
finding, checks on the screen (pixels grabbed from the X server) that heat colours appear in the
views only once the overlay is shown and that the crosshair crosses the overlay's hottest spot,
checks against the heat-map file the app wrote (read with nibabel) that the crosshair is at the
map's maximum, checks the knowledge panel, marks the finding a false positive, and saves a
screenshot of each step. Then it opens the study library: the study is listed, a text search
ranks it with the typed finding's score, and it reopens with its run and verdict restored
without running the model. Then the PACS (a real Orthanc): a server added in the dialog, a
search, a retrieve that opens the study, an analysis, and the report sent back into the
patient's study. It also reads the UI's performance.now()
marks (first slice on screen, volume ready) and measures slice-scrolling frames per second.
Run it through tests/e2e/run.sh.
"""

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageGrab
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.support.ui import Select


def wait_port(port, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"tauri-driver exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("tauri-driver did not open its port")


def study_rows(driver):
    """The study panel as {label: value}, read from the page's DOM rows."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('[data-testid=study-info] > div')].map(d => [...d.children].map(c => c.textContent))")
    return {r[0]: r[1] for r in rows if len(r) == 2}


def heatmap_peaks_in_ct_voxels(heatmap_path, ct):
    """Every voxel where the heat-map file is at its maximum, as voxel indices of the CT file,
    computed with nibabel from the two files' affines (independently of the app)."""
    hm = nib.load(str(heatmap_path))
    arr = np.asarray(hm.dataobj, dtype=np.float64)
    arr = np.where(np.isfinite(arr), arr, -np.inf)
    top = np.argwhere(arr == arr.max())
    world = hm.affine @ np.c_[top, np.ones(len(top))].T
    vox = np.linalg.inv(ct.affine) @ world
    return np.rint(vox[:3].T).astype(int), float(arr.max())


def tile_box(driver, plane):
    """A view's tile on the X server's screen: (left, top, right, bottom) pixels, 2 px inside
    its edges. The page sits at the bottom of the window, under the native menu bar."""
    tile, inner = driver.execute_script(
        "return [window.__radbridge.viewer.tileRect(arguments[0]), [window.innerWidth, window.innerHeight]]", plane)
    assert tile, f"no {plane} tile on the page"
    win = driver.get_window_rect()
    ox, oy = win["x"] + (win["width"] - inner[0]), win["y"] + (win["height"] - inner[1])
    left, top, w, h = tile
    return (int(ox + left + 2), int(oy + top + 2), int(ox + left + w - 2), int(oy + top + h - 2))


def settle(driver):
    """Let pending draws reach the screen: two animation frames, then a short pause for the
    compositor (and NiiVue's full-resolution redraw after an interaction)."""
    driver.execute_async_script("const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")
    time.sleep(0.5)


def grab(box):
    """RGB pixels (int32 array, rows x columns x 3) of a screen box, from the X server."""
    return np.asarray(ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]).convert("RGB"), dtype=np.int32)


def heat_mask(px):
    """Pixels in the heat map's colours. The overlay uses NiiVue's "warm" colour map (red 255,
    green 127..254, blue 0) blended over the grey CT, so a heat pixel has red >= green > blue;
    the CT is grey (r = g = b) and the crosshair cyan (blue above red)."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return (r - b >= 12) & (g - b >= 6) & (r >= g - 2)


def heat_level(px):
    """Where in the colour map a heat pixel is, independently of the blend and the grey under
    it: (g - b) / (r - b) = G / R of the colour map, 0.5 at the threshold, 1.0 at the maximum."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return np.where(r - b > 0, (g - b) / np.maximum(r - b, 1), 0.0)


def crosshair_centre(px):
    """Where the crosshair's two lines cross in a tile: the column and the row with the most
    crosshair-coloured (cyan: 0.15, 0.75, 1.0) pixels."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    cyan = (b - r > 120) & (g - r > 60)
    cols, rows = cyan.sum(axis=0), cyan.sum(axis=1)
    assert cols.max() > px.shape[0] // 4 and rows.max() > px.shape[1] // 4, f"no crosshair lines in the tile ({cols.max()}, {rows.max()})"
    return int(cols.argmax()), int(rows.argmax())


def check_crosshair_on_heat_maximum(px, radius=6, slack=0.03):
    """On screen: the crosshair crosses where the overlay shows (close to) its hottest colour.
    Looks at the heat pixels within `radius` px of the crossing (off the crosshair's lines) and
    compares their hottest level with the hottest in the whole tile. Returns the numbers."""
    cx, cy = crosshair_centre(px)
    heat = heat_mask(px)
    strong = heat & (px[..., 0] - px[..., 2] >= 20)  # enough colour for a stable level
    level = heat_level(px)
    assert strong.any(), "no heat colours in the tile"
    tile_max = float(level[strong].max())
    yy, xx = np.mgrid[0:px.shape[0], 0:px.shape[1]]
    near = strong & ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2) & (np.abs(xx - cx) > 1) & (np.abs(yy - cy) > 1)
    near_max = float(level[near].max()) if near.any() else 0.0
    info = {"crossing_px": [cx, cy], "tile_max_level": round(tile_max, 3), "near_crossing_max_level": round(near_max, 3),
            "heat_px": int(heat.sum())}
    assert near.any() and near_max >= tile_max - slack, f"the crosshair is not on the heat map's hottest spot on screen: {info}"
    return info


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# A <div> over the axial tile that changes colour on each of n animation frames; resolves to
# the animation frames per second.
PEER_ANIMATION = """
const done = arguments[arguments.length - 1], n = arguments[0];
const [l, t, w, h] = window.__radbridge.viewer.tileRect('axial');
const el = document.createElement('div');
el.style.cssText = `position:fixed;left:${l}px;top:${t}px;width:${w}px;height:${h}px;z-index:99999;pointer-events:none`;
document.body.appendChild(el);
let i = 0, t0 = 0;
const step = (ts) => {
  if (i === 0) t0 = ts;
  el.style.background = `rgb(${(i * 37) % 256}, ${(i * 91) % 256}, 128)`;
  if (++i <= n) requestAnimationFrame(step);
  else requestAnimationFrame(() => { el.remove(); done((n - 1) * 1000 / (ts - t0)); });
};
requestAnimationFrame(step);
"""


class ScreenWatch(threading.Thread):
    """Grabs a horizontal band through the middle of a view's tile from the X server in a loop
    and counts how often it changes: frames that reached the screen, sampled at the grab rate
    (a lower bound on the frame rate when the grab rate is not well above it)."""

    def __init__(self, driver, plane):
        super().__init__(daemon=True)
        left, top, right, bottom = tile_box(driver, plane)
        y = (top + bottom) // 2
        self.bbox = (left, y - 4, right, y + 4)
        self.halt = threading.Event()
        self.grabs = []

    def run(self):
        while not self.halt.is_set():
            img = ImageGrab.grab(bbox=self.bbox, xdisplay=os.environ["DISPLAY"])
            self.grabs.append((time.perf_counter(), img.tobytes()))

    def stop(self):
        self.halt.set()
        self.join(10)
        g = self.grabs
        changes = [t for (t, b), (_, prev) in zip(g[1:], g) if b != prev]
        span = changes[-1] - changes[0] if len(changes) > 1 else 0.0
        total = g[-1][0] - g[0][0] if len(g) > 1 else 0.0
        return {
            "changes": len(changes),
            "fps": round((len(changes) - 1) / span, 1) if span > 0 else 0.0,
            "grabs_per_s": round((len(g) - 1) / total, 1) if total > 0 else 0.0,
            "band_px": list(self.bbox),
        }


class Steps:
    def __init__(self, driver, shots):
        self.d = driver
        self.shots = Path(shots)
        self.n = 0

    def until(self, script, what, timeout=120.0, *args):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = self.d.execute_script(script, *args)
            if last:
                return last
            time.sleep(0.2)
        self.shot("failed")
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value {last!r})")

    def tid(self, testid):
        return self.d.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def shot(self, name):
        """The window as the X server shows it, grabbed from Xvfb: what the user sees, with the
        native menu bar that WebDriver's page snapshot leaves out, and a check that the
        picture is not blank."""
        self.n += 1
        path = self.shots / f"{self.n:02d}-{name}.png"
        settle(self.d)
        img = ImageGrab.grab(xdisplay=os.environ["DISPLAY"])
        try:
            r = self.d.get_window_rect()
            box = (max(0, r["x"]), max(0, r["y"]), min(img.width, r["x"] + r["width"]), min(img.height, r["y"] + r["height"]))
            if box[2] > box[0] + 100 and box[3] > box[1] + 100:
                img = img.crop(box)
        except Exception as e:  # a driver without Get Window Rect: keep the whole screen
            print(f"  (window rect unavailable: {e})")
        lo, hi = zip(*img.getextrema())
        assert max(hi) - min(lo) > 50, f"screenshot {path} is blank"
        img.save(path)
        print(f"  screenshot {path} {img.width}x{img.height}")


PACS_USER, PACS_PASSWORD = "radbridge", "e2e-orthanc-secret"
PACS_STUDY, PACS_SERIES = "2.25.318620114239047321190581", "2.25.318620114239047321190582"


class Orthanc:
    """A real Orthanc with DICOMweb on free loopback ports, holding the shared 20-instance
    JPEG 2000 CT series (given UIDs and a patient in copies: the originals have none)."""

    def __init__(self, work):
        import base64
        import urllib.request
        import pydicom
        self.dir = Path(work) / "orthanc"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http = free_port()
        cfg = {"Name": "E2E", "StorageDirectory": str(self.dir / "db"), "IndexDirectory": str(self.dir / "db"),
               "HttpPort": self.http, "DicomPort": free_port(), "RemoteAccessAllowed": False,
               "AuthenticationEnabled": True, "RegisteredUsers": {PACS_USER: PACS_PASSWORD},
               "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (self.dir / "orthanc.json").write_text(json.dumps(cfg))
        self.log = open(self.dir / "orthanc.log", "w")
        self.proc = subprocess.Popen(["Orthanc", str(self.dir / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "LC_ALL": "C.UTF-8"})
        auth = "Basic " + base64.b64encode(f"{PACS_USER}:{PACS_PASSWORD}".encode()).decode()

        def rest(path, data=None):
            req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data, method="POST" if data is not None else "GET")
            req.add_header("Authorization", auth)
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        self.rest = rest
        for _ in range(300):
            try:
                rest("/system")
                break
            except Exception:
                time.sleep(0.1)
        src = Path(__file__).resolve().parents[1] / "data/totalsegmentator/example_ct_dicom"
        for f in sorted(src.iterdir()):
            ds = pydicom.dcmread(f)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = PACS_STUDY, PACS_SERIES
            ds.SOPInstanceUID, ds.SOPClassUID = ds.file_meta.MediaStorageSOPInstanceUID, ds.file_meta.MediaStorageSOPClassUID
            ds.PatientID, ds.PatientName, ds.AccessionNumber = "RBE2E01", "Test^Jane", "E2E001"
            out = self.dir / f"{f.name}.dcm"
            ds.save_as(out)
            assert rest("/instances", out.read_bytes())["Status"] == "Success"

    def web(self):
        return f"http://127.0.0.1:{self.http}/dicom-web"

    def modalities_of_study(self):
        """The modalities of the study's series, as Orthanc has them."""
        found = self.rest("/tools/find", json.dumps({"Level": "Series", "Query": {"StudyInstanceUID": PACS_STUDY}, "Expand": True}).encode())
        return sorted(s["MainDicomTags"].get("Modality", "") for s in found)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--driver", required=True)
    ap.add_argument("--ct", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    port, native = free_port(), free_port()
    driver_log = open(Path(a.out) / "tauri-driver.log", "w")
    # The app writes its heat maps (NIfTI) under its session folder in the temporary directory:
    # give it one of its own, where the test reads them back.
    tmp = Path(a.out) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env["TMPDIR"] = str(tmp)
    # Reports are saved where the native dialog would put them; the tests cannot drive that
    # dialog, so the app (not the page) is told the folder at start.
    exports = Path(a.out) / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    env["RADBRIDGE_TEST_SAVE_DIR"] = str(exports)
    drv = subprocess.Popen([a.driver, "--port", str(port), "--native-port", str(native), "--native-driver", "/usr/bin/WebKitWebDriver"],
                           stdout=driver_log, stderr=subprocess.STDOUT, env=env)
    ct = nib.load(a.ct)
    metrics = {}
    try:
        wait_port(port, drv)
        wait_port(native, drv)  # WebKitWebDriver, started by tauri-driver
        opts = ArgOptions()
        opts.set_capability("browserName", "wry")
        opts.set_capability("tauri:options", {"application": a.app, "args": [a.ct]})
        t0 = time.time()
        d = webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=opts)
        s = Steps(d, a.shots)
        try:
            print("1. launch: research-use notice, acknowledge")
            s.until("return document.querySelector('[data-testid=notice]') && !document.querySelector('[data-testid=notice]').hidden", "the research-use notice", 60)
            assert s.tid("research-banner")[0].is_displayed()
            s.shot("notice")
            s.tid("acknowledge-notice")[0].click()
            ack = Path(os.environ["RADBRIDGE_DATA_DIR"]) / "research-use-notice-acknowledged"
            s.until("return document.querySelector('[data-testid=notice]').hidden", "the notice to close", 10)
            assert ack.exists(), f"{ack} was not written"

            print("2. the chest CT opened from the command line")
            perf = s.until("const p = window.__radbridgePerf; return p && p.volume_ready ? p : null", "the volume to be ready", 120)
            metrics["startup_open"] = {k: round(v - perf["open_start"], 1) for k, v in perf.items()}
            metrics["window_to_ready_s"] = round(time.time() - t0, 2)
            info = s.tid("study-info")[0].text
            assert "chest_ct.nii.gz" in info and "× 191" in info, info
            # The stored orientation the app shows is nibabel's for the file; the CT is stored
            # LPS, so the canonical grid is the file's grid and HU under the crosshair = the
            # file's voxel there (read with nibabel).
            rows = study_rows(d)
            assert "Stored orientation" in rows, f"no 'Stored orientation' row in the study panel: {rows}"
            codes = "".join(nib.aff2axcodes(ct.affine))
            assert rows["Stored orientation"] == codes, f"app shows {rows['Stored orientation']!r}, nibabel says {codes!r}"
            assert codes == "LPS", f"{a.ct} is stored {codes}: the HU check below assumes LPS"
            vox = d.execute_script("return window.__radbridge.viewer.crosshairVoxel()")
            hu = d.execute_script("return window.__radbridge.viewer.huAt(arguments[0])", vox)
            ref = float(ct.dataobj[tuple(vox)])
            print(f"  crosshair voxel {vox}: app HU {hu}, file {ref}")
            assert hu is not None and abs(hu - ref) < 0.5, (hu, ref)
            s.shot("opened")

            assert d.execute_script("return document.querySelector('[data-testid=layout-select]').value") == "1x3", "the default layout is 1 x 3"
            print("3. open again by path (warm) and measure; scroll frames per second")
            d.set_script_timeout(120)
            perf2 = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__radbridge.open(arguments[0]).then(() => done(window.__radbridgePerf), e => done({error: String(e)}));", a.ct)
            assert "error" not in perf2, perf2
            metrics["reopen"] = {k: round(v - perf2["open_start"], 1) for k, v in perf2.items()}
            # Wheel events into the axial tile, one per frame; fps = distinct slices drawn per
            # second (the page's count). Meanwhile a thread grabs a band of the axial tile from the
            # X server as fast as it can: the frames that really reached the screen.
            watch = ScreenWatch(d, "axial")
            watch.start()
            scroll = d.execute_async_script("const done = arguments[arguments.length - 1]; window.__radbridge.benchScroll(60).then(done, e => done({error: String(e)}));")
            on_screen = watch.stop()
            assert "error" not in scroll, scroll
            metrics["scroll_on_screen"] = on_screen
            print(f"  on screen: {on_screen}")
            assert on_screen["changes"] >= 10, f"scrolling did not reach the screen: {on_screen}"
            # The peer, measured the same way in the same run: a plain <div> over the same tile
            # whose colour changes every animation frame, i.e. the most frames this WebView
            # and display can show; the scroll rate is reported against it.
            watch = ScreenWatch(d, "axial")
            watch.start()
            ceiling = d.execute_async_script(PEER_ANIMATION, 60)
            peer = watch.stop()
            peer["raf_per_s"] = round(ceiling, 1)
            metrics["peer_css_animation_on_screen"] = peer
            if peer["fps"] > 0:
                metrics["scroll_vs_peer"] = round(on_screen["fps"] / peer["fps"], 2)
            print(f"  peer (a div changing colour every frame): {peer}; scroll / peer = {metrics.get('scroll_vs_peer')}")
            fps = scroll["fps"]
            metrics["scroll_fps_axial_60_steps"] = round(fps, 1)
            metrics["scroll"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in scroll.items()}
            metrics["draw_ms_per_slice_step"] = round(d.execute_script("return window.__radbridge.benchDraw(30)"), 1)
            canvas = d.execute_script("const c = document.getElementById('gl'); return [c.width, c.height];")
            metrics["canvas_px"] = canvas
            print(f"  first slice {metrics['reopen'].get('first_slice')} ms, volume ready {metrics['reopen'].get('volume_ready')} ms, scroll {fps:.1f} fps ({scroll['draw_ms_median']:.1f} ms per scroll redraw at scale {scroll['scale']}, {metrics['draw_ms_per_slice_step']} ms per full redraw) on a {canvas[0]}x{canvas[1]} canvas")

            print("4. run the analysis")
            s.tid("run-analysis")[0].click()
            s.until("return document.querySelectorAll('[data-testid=finding]').length > 0", "findings", 600)
            rows = d.execute_script("return [...document.querySelectorAll('[data-testid=finding]')].map(e => [e.dataset.label, Number(e.dataset.score), e.dataset.flagged])")
            model = json.loads((Path(os.environ["RADBRIDGE_MODEL"]) / "model.json").read_text())
            print(f"  {len(rows)} findings; top: {rows[0]}")
            expected = {l for ls in model["label_sets"].values() for l in ls} if model.get("default_label_set", "all") == "all" else set(model["label_sets"][model["default_label_set"]])
            assert {r[0] for r in rows} == expected, "the findings list is not the model's label set"
            stages = d.execute_script("return [...document.querySelectorAll('[data-testid=progress-stage]')].map(e => e.dataset.state)")
            assert stages and all(x == "done" for x in stages), stages
            # A synthetic-data model on this real CT says its scores mean nothing.
            notice = d.execute_script("const e = document.querySelector('[data-testid=model-notice]'); return e && !e.hidden ? e.textContent : null")
            if model.get("synthetic"):
                assert notice and "synthetic data only" in notice, notice
                print(f"  notice: {notice}")
            else:
                assert notice is None, notice
            s.shot("analysis")

            print("5. click the top finding: heat map overlay, jump to its peak, knowledge panel")
            # The on-screen colour checks read tiles at the 2 x 2 layout's size (larger tiles).
            Select(s.tid("layout-select")[0]).select_by_value("2x2")
            top = s.tid("finding")[0]
            label = top.get_attribute("data-label")
            before = d.execute_script("return window.__radbridge.viewer.crosshairVoxel()")
            planes = ("axial", "coronal", "sagittal")
            settle(d)
            shown_before = {p: grab(tile_box(d, p)) for p in planes}
            clicked = time.time()
            top.click()
            s.until("const e = document.querySelector('[data-testid=overlay-info]'); return e.dataset.state === 'shown' || e.dataset.state === 'error' ? e.dataset.state : null", "the heat map", 300)
            assert s.tid("overlay-info")[0].get_attribute("data-state") == "shown", s.tid("overlay-info")[0].text
            assert s.tid("overlay-info")[0].get_attribute("data-label") == label
            settle(d)
            shown_after = {p: grab(tile_box(d, p)) for p in planes}
            for p in planes:
                for when, px in (("before", shown_before[p]), ("after", shown_after[p])):
                    Image.fromarray(px.astype(np.uint8)).save(Path(a.shots) / f"tile-{p}-{when}.png")
            # The screen: no heat colours in the views before, heat colours after.
            heat_before = {p: int(heat_mask(px).sum()) for p, px in shown_before.items()}
            heat_after = {p: int(heat_mask(px).sum()) for p, px in shown_after.items()}
            print(f"  heat-coloured pixels on screen before {heat_before}, after {heat_after}")
            assert sum(heat_before.values()) == 0, f"heat colours on screen before any heat map: {heat_before}"
            assert heat_after["axial"] >= 50, f"no heat map on screen after selecting {label}: {heat_after}"
            # Jump to the peak: the heat map the app wrote for the finding (its NIfTI file, read
            # with nibabel) is highest at the voxel under the crosshair...
            written = [f for f in list(tmp.glob("radbridge-*/study*/h*/*.nii*")) if f.stat().st_mtime >= clicked - 1]
            assert len(written) == 1, f"expected one heat map written for {label} under {tmp}: {written}"
            peaks, top_value = heatmap_peaks_in_ct_voxels(written[0], ct)
            after = d.execute_script("return window.__radbridge.viewer.crosshairVoxel()")
            off = int(np.abs(peaks - np.array(after)).max(axis=1).min())
            print(f"  crosshair {before} -> {after}; {written[0].name} is highest ({top_value:.4g}) at CT voxel(s) {peaks[:4].tolist()} (off by {off})")
            assert off <= 1, f"the crosshair {after} is not at the heat map's maximum {peaks[:4].tolist()}"
            # ...and on screen, the crosshair crosses the axial view where the overlay is hottest.
            on_screen = check_crosshair_on_heat_maximum(shown_after["axial"])
            print(f"  on screen (axial): {on_screen}")
            metrics["peak_on_screen"] = on_screen
            entries = s.tid("bank-entry")
            kinds = {e.get_attribute("data-kind") for e in entries}
            assert entries and {"image", "finding", "shared"} <= kinds, kinds
            words = [e.text for e in entries if "no words" not in e.text]
            assert words, "bank entries have no descriptions"
            s.shot("finding")

            print("6. mark it a false positive (reason: artefact)")
            Select(s.tid("fp-reason")[0]).select_by_value("artefact")
            s.tid("fp-note")[0].send_keys("streak artefact from the arms")
            s.tid("mark-false-positive")[0].click()
            s.until(f"return document.querySelector('[data-testid=finding][data-verdict=false_positive]')", "the false-positive verdict", 30)
            err = s.tid("analysis-error")[0]
            assert not err.is_displayed(), err.text
            # The review went to the feedback store, with the run and the audit trail.
            db = Path(os.environ["RADBRIDGE_DATA_DIR"]) / "radbridge.sqlite3"
            assert db.exists(), f"{db}: no feedback store"
            con = sqlite3.connect(db)
            events = con.execute("select label, action, reason, note from review_events").fetchall()
            assert events == [(label, "false_positive", "artefact", "streak artefact from the arms")], events
            runs = con.execute("select count(*) from run_findings").fetchone()[0]
            assert runs == len(rows), (runs, len(rows))
            actions = [r[0] for r in con.execute("select action from audit_log order by id")]
            print(f"  store: {events}, audit {actions}")
            for want in ("open_study", "run", "view", "feedback"):
                assert want in actions, (want, actions)
            con.close()
            metrics["feedback_store"] = str(db)
            s.shot("false-positive")

            print("6b. propose thresholds from the feedback (Settings → Propose; nothing is written)")
            model_dir = Path(os.environ["RADBRIDGE_MODEL"])
            th = model_dir / "thresholds.json"
            before = th.read_bytes() if th.exists() else None
            s.tid("settings-button")[0].click()
            s.tid("recalibrate-propose")[0].click()
            s.until("const e = document.querySelector('[data-testid=recalibrate-result]'); return e && e.textContent.length > 0", "the threshold proposal", 60)
            proposal = s.tid("recalibrate-result")[0].text
            print(f"  {proposal}")
            assert "→" in proposal or "No threshold change" in proposal, proposal
            assert (th.read_bytes() if th.exists() else None) == before, "Propose changed the thresholds file"
            d.execute_script("document.getElementById('settings-close').click()")

            print("7. export the report (JSON, de-identified) through the app's export command")
            # The page cannot name the file: an `output` it passes is ignored.
            stray = Path(a.out) / "stray-report.json"
            out = exports / "radbridge-report.json"
            res = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__TAURI_INTERNALS__.invoke('export_report', {format: 'json', deidentify: true, runId: arguments[1], exportAnyway: true, output: arguments[0]})"
                ".then(r => done(r), e => done({error: String(e)}));", str(stray),
                d.execute_script("return window.__radbridge.runId()"))
            assert res and "error" not in res, res
            assert res["path"] == str(out) and not stray.exists(), (res, stray)
            report = json.loads(out.read_text())
            text = json.dumps(report)
            assert "false_positive" in text and label in text, "the report lacks the review"
            assert report["model"].get("notice") == (notice if model.get("synthetic") else None), report["model"]
            assert str(Path(a.ct).parent) not in text, "the de-identified report names the study's folder"
            print(f"  wrote {out} ({out.stat().st_size} bytes)")
            for fmt, name, magic, at in (("pdf", "radbridge-report.pdf", b"%PDF", 0), ("sr", "radbridge-report.dcm", b"DICM", 128)):
                out = exports / name
                res = d.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "window.__TAURI_INTERNALS__.invoke('export_report', {format: arguments[1], deidentify: true, runId: arguments[0], exportAnyway: true})"
                    ".then(r => done(r), e => done({error: String(e)}));", d.execute_script("return window.__radbridge.runId()"), fmt)
                assert res and "error" not in res, res
                assert out.read_bytes()[at:at + 4] == magic, f"{out} is not a {fmt.upper()} file"
                print(f"  wrote {out} ({out.stat().st_size} bytes)")

            print("7b. the page cannot open a path the user did not choose")
            res = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__TAURI_INTERNALS__.invoke('open_path', {path: '/etc', series: null})"
                ".then(r => done({opened: r.path}), e => done({error: e}));")
            assert res.get("error", {}).get("code") == "not_permitted", res
            print(f"  refused: {res['error']['message']}")

            print("8. type a finding and score it on the spot")
            box = s.tid("finding-input")[0]
            box.send_keys("small left pleural effusion")
            s.tid("finding-score")[0].click()
            s.until("return document.querySelector('[data-testid=finding][data-label=\"small left pleural effusion\"]')", "the typed finding", 300)
            assert len(s.tid("finding")) == len(rows) + 1
            # It is selected and its own heat map replaces the previous one.
            s.until("const e = document.querySelector('[data-testid=overlay-info]'); return e.dataset.state === 'shown' && e.dataset.label === 'small left pleural effusion'", "the typed finding's heat map", 300)
            d.execute_script("document.querySelector('[data-testid=finding][data-label=\"small left pleural effusion\"]').scrollIntoView()")
            s.shot("typed-finding")

            print("9. the study library: the analysed study is listed, a search ranks it, and it reopens with its run and verdict (no new run)")
            typed = float(d.execute_script("return document.querySelector('[data-testid=finding][data-label=\"small left pleural effusion\"]').dataset.score"))
            con = sqlite3.connect(db)
            runs_before = con.execute("select count(*) from runs").fetchone()[0]
            con.close()
            s.tid("library-open")[0].click()
            s.until("const p = window.__radbridgePerf; return p && p.library_painted ? true : null", "the library's first paint", 30)
            lib = d.execute_script("return [...document.querySelectorAll('[data-testid=library-row]')].map(e => [e.dataset.studyId, e.dataset.status, e.dataset.flagged, e.textContent])")
            perf = d.execute_script("return window.__radbridgePerf")
            metrics["library_first_paint_ms"] = round(perf["library_painted"] - perf["library_open"], 1)
            print(f"  {lib}; first paint {metrics['library_first_paint_ms']} ms")
            # One study (opened twice, analysed once); its report was exported in step 7.
            assert len(lib) == 1 and lib[0][1] == "reported", lib
            assert int(lib[0][2]) == sum(1 for r in rows if r[2] == "true"), (lib, rows)
            study_id = lib[0][0]
            # The search score of a sentence is the score it gets as a typed finding (step 8).
            s.tid("library-search")[0].send_keys("small left pleural effusion")
            s.tid("library-search-go")[0].click()
            hits = s.until("const h = [...document.querySelectorAll('[data-testid=search-result]')]; return h.length ? h.map(e => [e.dataset.studyId, e.dataset.score]) : null", "the search results", 120)
            print(f"  search: {hits} (typed finding score {typed})")
            assert hits[0][0] == study_id and abs(float(hits[0][1]) - typed) < 1e-4, (hits, typed)
            s.shot("library")
            d.execute_script("delete window.__radbridgePerf.volume_ready")
            d.find_element(By.CSS_SELECTOR, f'[data-testid=library-row][data-study-id="{study_id}"]').click()
            s.until("const p = window.__radbridgePerf; return p && p.volume_ready && p.analysis_restored ? true : null", "the study to reopen from the library", 120)
            restored = d.execute_script("return [...document.querySelectorAll('[data-testid=finding]')].map(e => [e.dataset.label, Number(e.dataset.score), e.dataset.flagged, e.dataset.verdict])")
            assert sorted(r[:3] for r in restored) == sorted(r[:3] for r in rows), "the restored findings are not the recorded run's"
            assert [r[3] for r in restored if r[0] == label] == ["false_positive"], restored
            con = sqlite3.connect(db)
            assert con.execute("select count(*) from runs").fetchone()[0] == runs_before, "opening from the library ran the model"
            last_run = con.execute("select max(id) from runs").fetchone()[0]
            assert d.execute_script("return window.__radbridge.runId()") == last_run, "review and export do not work on the restored run"
            opened = [json.loads(r[0]) for r in con.execute("select detail from audit_log where action = 'open_study' order by id")]
            con.close()
            assert opened[-1].get("from") == "library" and str(opened[-1].get("study_id")) == study_id, opened[-1]
            print(f"  restored {len(restored)} findings, '{label}' false positive; audit {opened[-1]}")
            s.shot("library-opened")

            print("10. the PACS: add a server, test it, search, retrieve a study (it opens), analyse it, send the report back")
            pacs = Orthanc(a.out)
            try:
                s.tid("pacs-open")[0].click()
                s.until("const f = document.querySelector('[data-testid=pacs-server-form]'); return f && !f.hidden", "the server form (no server yet)", 30)
                s.tid("pacs-f-name")[0].send_keys("hospital")
                s.tid("pacs-f-address")[0].send_keys(pacs.web())
                Select(s.tid("pacs-f-auth")[0]).select_by_value("basic")
                s.tid("pacs-f-user")[0].send_keys(PACS_USER)
                s.tid("pacs-f-secret")[0].send_keys(PACS_PASSWORD)
                s.tid("pacs-f-save")[0].click()
                s.until("return document.querySelector('[data-testid=pacs-status]').textContent.startsWith('saved hospital')", "the server saved", 30)
                assert not s.tid("pacs-server-form")[0].is_displayed(), "the server form stays open after Save"
                data_dir = Path(os.environ["RADBRIDGE_DATA_DIR"])
                settings_text = (data_dir / "pacs-servers.json").read_text()
                assert "hospital" in settings_text and PACS_PASSWORD not in settings_text, settings_text
                assert oct((data_dir / "pacs-secrets.json").stat().st_mode & 0o777) == "0o600"
                s.tid("pacs-test")[0].click()
                s.until("return document.querySelector('[data-testid=pacs-status]').textContent.includes('answers')", "the connection test", 30)
                s.tid("pacs-q-pid")[0].send_keys("RBE2E01")
                s.tid("pacs-search")[0].click()
                row = s.until(f"return document.querySelector('[data-testid=pacs-study][data-study-uid=\"{PACS_STUDY}\"]')", "the study in the results", 60)
                assert "Test, Jane" in row.text and "RBE2E01" in row.text, row.text
                s.tid("pacs-expand")[0].click()
                series = d.execute_script("return [...document.querySelectorAll('[data-testid=pacs-series]')].map(e => [e.dataset.seriesUid, e.textContent])")
                assert len(series) == 1 and series[0][0] == PACS_SERIES and "20 images" in series[0][1], series
                s.shot("pacs-search")
                d.execute_script("delete window.__radbridgePerf.volume_ready")
                d.find_element(By.CSS_SELECTOR, f'[data-testid=pacs-retrieve][data-study-uid="{PACS_STUDY}"]').click()
                s.until("const p = window.__radbridgePerf; return p && p.volume_ready ? true : null", "the retrieved study to open", 120)
                info = study_rows(d)
                print(f"  opened: {info}")
                assert any("512" in v and "20" in v for v in info.values()), info
                retrieved = sorted((data_dir / "pacs" / PACS_STUDY / PACS_SERIES).glob("*.dcm"))
                assert len(retrieved) == 20, retrieved
                for f in retrieved:
                    assert f.read_bytes() == (pacs.dir / f"CT.{f.name}").read_bytes(), f"{f} differs from what the PACS holds"
                s.tid("run-analysis")[0].click()
                s.until("return document.querySelectorAll('[data-testid=finding]').length > 0 && window.__radbridge.runId() ? true : null", "findings of the retrieved study", 600)
                s.tid("report-anyway")[0].click()
                Select(s.tid("pacs-send-server")[0]).select_by_value("hospital")
                s.tid("pacs-send")[0].click()
                confirm = s.until("const e = document.querySelector('[data-testid=pacs-confirm]'); return e && !e.hidden ? e.textContent : null", "the send confirmation", 30)
                print(f"  confirm: {confirm.strip()[:200]}")
                assert "Test, Jane" in confirm and "RBE2E01" in confirm and "hospital" in confirm, confirm
                s.shot("pacs-send-confirm")
                assert pacs.modalities_of_study() == ["CT"], pacs.modalities_of_study()
                s.tid("pacs-send-confirm")[0].click()
                sent = s.until("const e = document.querySelector('[data-testid=report-status]'); return e.dataset.sent || null", "the send", 120)
                assert sent == "stored", s.tid("report-status")[0].text
                # The PACS filed the SR into the patient's study.
                assert pacs.modalities_of_study() == ["CT", "SR"], pacs.modalities_of_study()
                con = sqlite3.connect(data_dir / "radbridge.sqlite3")
                acts = [(r[0], r[1]) for r in con.execute("select action, detail from audit_log where action like 'pacs_%' order by id")]
                origin = con.execute("select origin from study_info i join pacs_retrievals p on p.study_id = i.study_id").fetchall()
                con.close()
                assert [x[0] for x in acts] == ["pacs_query", "pacs_retrieve", "pacs_send"], acts
                assert all(PACS_PASSWORD not in x[1] for x in acts), "a credential in the audit log"
                assert origin == [("pacs",)], origin
                print(f"  audit: {[x[0] for x in acts]}; the PACS now has {pacs.modalities_of_study()}")
                s.shot("pacs-sent")
            finally:
                pacs.stop()
            print("11. layouts: 1 x 3 by default, 2 x 2 with the 3-D view, one view; double-click enlarges a view and goes back")
            views = lambda: sorted(d.execute_script("return window.__radbridge.viewer.visibleViews()"))
            layout = lambda: d.execute_script("return document.querySelector('[data-testid=layout-select]').value")
            Select(s.tid("layout-select")[0]).select_by_value("1x3")
            settle(d)
            assert views() == ["axial", "coronal", "sagittal"], views()
            s.shot("layout-1x3")
            Select(s.tid("layout-select")[0]).select_by_value("2x2-3d")
            settle(d)
            assert views() == ["axial", "coronal", "render", "sagittal"], views()
            s.shot("layout-2x2-3d")
            Select(s.tid("layout-select")[0]).select_by_value("axial")
            settle(d)
            assert views() == ["axial"], views()
            Select(s.tid("layout-select")[0]).select_by_value("1x3")
            settle(d)
            dbl = ("const r = window.__radbridge.viewer.tileRect(arguments[0]);"
                   "document.getElementById('gl').dispatchEvent(new MouseEvent('dblclick', {bubbles: true, clientX: r[0] + r[2] / 2, clientY: r[1] + r[3] / 2}));")
            d.execute_script(dbl, "coronal")
            settle(d)
            assert views() == ["coronal"] and layout() == "coronal", (views(), layout())
            s.shot("layout-enlarged")
            d.execute_script(dbl, "coronal")
            settle(d)
            assert views() == ["axial", "coronal", "sagittal"] and layout() == "1x3", (views(), layout())
            print(f"  layouts ok: {layout()}")
            print("12. measure on the chest CT: a distance, an ellipse and a rectangle ROI and an angle clicked on the axial view, checked with nibabel + numpy; kept with the study, in the report")
            res = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__radbridge.open(arguments[0]).then(() => done(true), e => done({error: String(e)}));", a.ct)
            assert res is True, res
            Select(s.tid("layout-select")[0]).select_by_value("2x2")
            settle(d)
            from selenium.webdriver.common.action_chains import ActionChains
            canvas = d.find_element(By.ID, "gl")

            def click_tile(fx, fy):
                t = d.execute_script("return window.__radbridge.viewer.tileRect('axial')")
                r = d.execute_script("const r = document.getElementById('gl').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]")
                x, y = t[0] + fx * t[2], t[1] + fy * t[3]
                ActionChains(d).move_to_element_with_offset(canvas, int(x - (r[0] + r[2] / 2)), int(y - (r[1] + r[3] / 2))).click().perform()
                time.sleep(0.5)
                return d.execute_script("return window.__radbridge.viewer.crosshairVoxel()")

            canon = nib.as_closest_canonical(ct)
            ras = np.asarray(canon.dataobj, dtype=np.float64)
            lps = ras[::-1, ::-1, :]
            nx, ny = lps.shape[:2]

            def world(p):
                w = canon.affine @ np.array([nx - 1 - p[0], ny - 1 - p[1], p[2], 1.0])
                return np.array([-w[0], -w[1], w[2]])

            s.tid("tool-distance")[0].click()
            pa, pb = click_tile(0.35, 0.45), click_tile(0.62, 0.58)
            got = s.until("const e = document.querySelector('[data-testid=measurement][data-kind=distance]'); return e && e.dataset.value", "the distance", 30)
            want = float(np.linalg.norm(world(pa) - world(pb)))
            print(f"  distance {pa} -> {pb}: app {got} mm, nibabel {want:.4f} mm")
            assert pa != pb and abs(float(got) - want) < 1e-3, (got, want)
            s.tid("tool-roi")[0].click()
            c, e = click_tile(0.5, 0.5), click_tile(0.53, 0.54)
            got = s.until("const e = document.querySelector('[data-testid=measurement][data-kind=ellipse]'); return e && e.dataset.value", "the ROI", 30)
            assert c[2] == e[2], (c, e)
            ru, rv = max(1, abs(e[0] - c[0])), max(1, abs(e[1] - c[1]))
            u, v = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
            mask = ((u - c[0]) / ru) ** 2 + ((v - c[1]) / rv) ** 2 <= 1
            want = float(lps[:, :, c[2]][mask].mean())
            print(f"  ellipse at {c} radii ({ru}, {rv}): app mean {got} HU, numpy {want:.4f} HU over {int(mask.sum())} voxels")
            assert abs(float(got) - want) < 1e-3, (got, want)
            s.tid("tool-rect")[0].click()
            ra, rb = click_tile(0.45, 0.4), click_tile(0.5, 0.44)
            got = s.until("const e = document.querySelector('[data-testid=measurement][data-kind=rectangle]'); return e && e.dataset.value", "the rectangle", 30)
            lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
            want = float(lps[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, ra[2]].mean())
            print(f"  rectangle {ra} -> {rb}: app mean {got} HU, numpy {want:.4f} HU")
            assert abs(float(got) - want) < 1e-3, (got, want)
            s.tid("tool-angle")[0].click()
            qa, qv, qb = click_tile(0.3, 0.3), click_tile(0.5, 0.5), click_tile(0.7, 0.35)
            got = s.until("const e = document.querySelector('[data-testid=measurement][data-kind=angle]'); return e && e.dataset.value", "the angle", 30)
            u_, v_ = world(qa) - world(qv), world(qb) - world(qv)
            want = float(np.degrees(np.arccos(np.clip(u_ @ v_ / np.linalg.norm(u_) / np.linalg.norm(v_), -1, 1))))
            print(f"  angle {qa} {qv} {qb}: app {got} deg, numpy {want:.4f} deg")
            assert abs(float(got) - want) < 1e-3, (got, want)
            s.shot("measurements")
            listed = lambda: d.execute_script("return [...document.querySelectorAll('[data-testid=measurement]')].map(e => [e.dataset.kind, e.dataset.value])")
            before = listed()
            assert [k for k, _ in before] == ["distance", "ellipse", "rectangle", "angle"], before
            # Closed and opened again: they come back from the database.
            res = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__radbridge.open(arguments[0]).then(() => done(true), e => done({error: String(e)}));", a.ct)
            s.until("return document.querySelectorAll('[data-testid=measurement]').length === 4 ? true : null", "the measurements after reopening", 30)
            assert listed() == before, (listed(), before)
            s.tid("measurement-delete")[0].click()
            s.until("return document.querySelectorAll('[data-testid=measurement]').length === 3 ? true : null", "the deletion", 30)
            assert [k for k, _ in listed()] == ["ellipse", "rectangle", "angle"], listed()
            roi_value = float(listed()[0][1])
            # The report lists the study's measurements (JSON and PDF).
            s.tid("run-analysis")[0].click()
            s.until("return document.querySelectorAll('[data-testid=finding]').length > 0 && window.__radbridge.runId() ? true : null", "findings of the chest CT", 600)
            for fmt, name in (("json", "radbridge-report.json"), ("pdf", "radbridge-report.pdf")):
                res = d.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "window.__TAURI_INTERNALS__.invoke('export_report', {format: arguments[1], deidentify: true, runId: arguments[0], exportAnyway: true})"
                    ".then(r => done(r), e => done({error: String(e)}));", d.execute_script("return window.__radbridge.runId()"), fmt)
                assert res and "error" not in res, res
            rep = json.loads((exports / "radbridge-report.json").read_text())
            assert [m["kind"] for m in rep["measurements"]] == ["ellipse", "rectangle", "angle"] and abs(rep["measurements"][0]["value"] - roi_value) < 1e-3, rep["measurements"]
            pdf_text = subprocess.run(["pdftotext", str(exports / "radbridge-report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
            assert "Measurements" in pdf_text and "ellipse: mean" in pdf_text, pdf_text[-800:]
            print(f"  report: {rep['measurements']}")

            print("13. a 10 mm MIP on the axial view: the shown values are numpy's window maxima; scrolling it against thin slices")
            Select(s.tid("layout-select")[0]).select_by_value("axial")
            settle(d)
            plain = d.execute_async_script("const done = arguments[arguments.length - 1]; window.__radbridge.benchScroll(60).then(done, e => done({error: String(e)}));")
            d.execute_script("const e = document.querySelector('[data-testid=slab-thickness]'); e.value = '10'; e.dispatchEvent(new Event('change'));")
            info = s.until("const e = document.querySelector('[data-testid=slab-info]'); return e.textContent.startsWith('MIP') ? e.textContent : null", "the MIP", 30)
            assert info == "MIP 10 mm (7 slices)", info
            vox = d.execute_script("return window.__radbridge.viewer.crosshairVoxel()")
            for di, dj, dk in ((0, 0, 0), (10, -7, 0), (-20, 15, 0), (0, 0, -vox[2])):
                p_ = [vox[0] + di, vox[1] + dj, vox[2] + dk]
                shown = d.execute_script("return window.__radbridge.viewer.shownAt(arguments[0])", p_)
                want = int(lps[p_[0], p_[1], max(0, p_[2] - 3):p_[2] + 4].max())
                assert shown == want, (p_, shown, want)
            s.shot("mip")
            slab = d.execute_async_script("const done = arguments[arguments.length - 1]; window.__radbridge.benchScroll(60).then(done, e => done({error: String(e)}));")
            metrics["mip_scroll_fps"], metrics["plain_scroll_fps_axial_single"] = round(slab["fps"], 1), round(plain["fps"], 1)
            metrics["mip_scroll_vs_plain"] = round(slab["fps"] / plain["fps"], 2)
            print(f"  {info}; scrolling {slab['fps']:.1f} fps against {plain['fps']:.1f} fps thin ({metrics['mip_scroll_vs_plain']}x)")
            d.execute_script("const e = document.querySelector('[data-testid=slab-thickness]'); e.value = '0'; e.dispatchEvent(new Event('change'));")
            settle(d)
            assert d.execute_script("return window.__radbridge.viewer.shownAt(arguments[0])", vox) == int(lps[vox[0], vox[1], vox[2]])
            # A slab needs a single view: in the 1 x 3 layout it is refused with a message.
            Select(s.tid("layout-select")[0]).select_by_value("1x3")
            d.execute_script("const e = document.querySelector('[data-testid=slab-thickness]'); e.value = '10'; e.dispatchEvent(new Event('change'));")
            msg = s.tid("slab-info")[0].text
            assert "single view" in msg, msg
        finally:
            d.quit()
    finally:
        drv.terminate()
        drv.wait(10)
    (Path(a.out) / "e2e-metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print("e2e: passed")


if __name__ == "__main__":
    sys.exit(main())
