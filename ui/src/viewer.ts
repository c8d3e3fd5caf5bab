// Three linked views (axial, coronal, sagittal) of a canonical-LPS int16 volume on 2-D canvases.
// Axial: screen x = i (patient right → left), y = j (anterior → posterior).
// Coronal: x = i, y = superior → inferior. Sagittal: x = j (anterior → posterior), y = superior → inferior.
import { gray, Window } from "./presets";

type Plane = "axial" | "coronal" | "sagittal";

interface ViewState { canvas: HTMLCanvasElement; plane: Plane; zoom: number; panX: number; panY: number }

const LETTERS: Record<Plane, [string, string, string, string]> = {
  // left, right, top, bottom
  axial: ["R", "L", "A", "P"],
  coronal: ["R", "L", "S", "I"],
  sagittal: ["A", "P", "S", "I"],
};

export class Mpr {
  dims: [number, number, number] = [1, 1, 1];
  spacing: [number, number, number] = [1, 1, 1];
  data: Int16Array = new Int16Array(1);
  cross: [number, number, number] = [0, 0, 0];
  win: Window = { width: 400, level: 40 };
  views: ViewState[];
  onChange: (status: string) => void = () => {};
  onWindow: (w: Window) => void = () => {};
  private lut = new Uint8ClampedArray(65536);
  private pending = false;

  constructor(root: HTMLElement) {
    this.views = Array.from(root.querySelectorAll<HTMLElement>(".view")).map((el) => ({
      canvas: el.querySelector("canvas")!,
      plane: el.dataset.plane as Plane,
      zoom: 1,
      panX: 0,
      panY: 0,
    }));
    for (const v of this.views) this.bind(v);
    new ResizeObserver(() => this.draw()).observe(root);
    this.buildLut();
  }

  load(data: Int16Array, dims: [number, number, number], spacing: [number, number, number]) {
    this.data = data;
    this.dims = dims;
    this.spacing = spacing;
    this.cross = [dims[0] >> 1, dims[1] >> 1, dims[2] >> 1];
    for (const v of this.views) Object.assign(v, { zoom: 1, panX: 0, panY: 0 });
    this.draw();
  }

  setWindow(w: Window) {
    this.win = { width: Math.max(1, w.width), level: w.level };
    this.buildLut();
    this.onWindow(this.win);
    this.draw();
  }

  resetView() {
    for (const v of this.views) Object.assign(v, { zoom: 1, panX: 0, panY: 0 });
    this.draw();
  }

  private buildLut() {
    for (let i = 0; i < 65536; i++) this.lut[i] = gray(i - 32768, this.win);
  }

  /** Plane size in voxels (w, h) and mm per voxel along each screen axis. */
  private planeGeom(p: Plane): { w: number; h: number; sx: number; sy: number } {
    const [nx, ny, nz] = this.dims;
    const [dx, dy, dz] = this.spacing;
    if (p === "axial") return { w: nx, h: ny, sx: dx, sy: dy };
    if (p === "coronal") return { w: nx, h: nz, sx: dx, sy: dz };
    return { w: ny, h: nz, sx: dy, sy: dz };
  }

  /** Voxel (i, j, k) under screen pixel (u, v) of a plane image. */
  private voxelAt(p: Plane, u: number, v: number): [number, number, number] {
    const [, , nz] = this.dims;
    const [ci, cj, ck] = this.cross;
    if (p === "axial") return [u, v, ck];
    if (p === "coronal") return [u, cj, nz - 1 - v];
    return [ci, u, nz - 1 - v];
  }

  /** Fit transform: plane pixel → canvas pixel. */
  private fit(v: ViewState) {
    const g = this.planeGeom(v.plane);
    const cw = v.canvas.width, ch = v.canvas.height;
    const mmW = g.w * g.sx, mmH = g.h * g.sy;
    const scale = Math.min(cw / mmW, ch / mmH) * v.zoom; // canvas px per mm
    const ox = (cw - mmW * scale) / 2 + v.panX, oy = (ch - mmH * scale) / 2 + v.panY;
    return { g, scale, ox, oy, px: g.sx * scale, py: g.sy * scale };
  }

  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      for (const v of this.views) this.drawView(v);
      this.onChange(this.status());
    });
  }

  private drawView(v: ViewState) {
    const c = v.canvas;
    const dpr = window.devicePixelRatio || 1;
    const W = Math.max(1, Math.round(c.clientWidth * dpr)), H = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== W || c.height !== H) { c.width = W; c.height = H; }
    const ctx = c.getContext("2d")!;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, W, H);
    const f = this.fit(v);
    const { w, h } = f.g;
    const img = new ImageData(w, h);
    const out = img.data;
    const [nx, ny, nz] = this.dims;
    const d = this.data, lut = this.lut;
    const [ci, cj, ck] = this.cross;
    let o = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let idx: number;
        if (v.plane === "axial") idx = x + nx * (y + ny * ck);
        else if (v.plane === "coronal") idx = x + nx * (cj + ny * (nz - 1 - y));
        else idx = ci + nx * (x + ny * (nz - 1 - y));
        const g = lut[d[idx] + 32768];
        out[o] = g; out[o + 1] = g; out[o + 2] = g; out[o + 3] = 255;
        o += 4;
      }
    }
    const off = new OffscreenCanvas(w, h);
    off.getContext("2d")!.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(off, f.ox, f.oy, w * f.px, h * f.py);
    // Crosshair.
    const [cu, cv] = v.plane === "axial" ? [ci, cj] : v.plane === "coronal" ? [ci, nz - 1 - ck] : [cj, nz - 1 - ck];
    const X = f.ox + (cu + 0.5) * f.px, Y = f.oy + (cv + 0.5) * f.py;
    ctx.strokeStyle = "rgba(76,195,217,0.7)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(X, f.oy); ctx.lineTo(X, f.oy + h * f.py);
    ctx.moveTo(f.ox, Y); ctx.lineTo(f.ox + w * f.px, Y);
    ctx.stroke();
    // Orientation letters and slice number.
    const [l, r, t, b] = LETTERS[v.plane];
    ctx.fillStyle = "#e5c07b";
    ctx.font = `${Math.round(14 * dpr)}px sans-serif`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "left"; ctx.fillText(l, 6 * dpr, H / 2);
    ctx.textAlign = "right"; ctx.fillText(r, W - 6 * dpr, H / 2);
    ctx.textAlign = "center"; ctx.fillText(t, W / 2, 10 * dpr); ctx.fillText(b, W / 2, H - 10 * dpr);
    ctx.textAlign = "left"; ctx.fillStyle = "#9aa5b1";
    const slice = v.plane === "axial" ? `${ck + 1}/${nz}` : v.plane === "coronal" ? `${cj + 1}/${ny}` : `${ci + 1}/${nx}`;
    ctx.fillText(`${v.plane} ${slice}`, 6 * dpr, 12 * dpr);
  }

  hu(i: number, j: number, k: number): number {
    const [nx, ny] = this.dims;
    return this.data[i + nx * (j + ny * k)];
  }

  status(): string {
    const [i, j, k] = this.cross;
    return `voxel (${i}, ${j}, ${k})  ${this.hu(i, j, k)} HU`;
  }

  /** Move the slice shown in view `v` by `n`. */
  step(v: ViewState, n: number) {
    const a = v.plane === "axial" ? 2 : v.plane === "coronal" ? 1 : 0;
    this.cross[a] = Math.min(this.dims[a] - 1, Math.max(0, this.cross[a] + n));
    this.draw();
  }

  viewUnder(el: EventTarget | null): ViewState | undefined {
    return this.views.find((v) => v.canvas === el);
  }

  private planePoint(v: ViewState, e: MouseEvent): [number, number] | null {
    const dpr = window.devicePixelRatio || 1;
    const f = this.fit(v);
    const u = Math.floor((e.offsetX * dpr - f.ox) / f.px), w = Math.floor((e.offsetY * dpr - f.oy) / f.py);
    return u >= 0 && w >= 0 && u < f.g.w && w < f.g.h ? [u, w] : null;
  }

  private bind(v: ViewState) {
    const c = v.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (e.ctrlKey) { v.zoom = Math.min(20, Math.max(0.5, v.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1))); this.draw(); }
      else this.step(v, e.deltaY > 0 ? 1 : -1);
    }, { passive: false });
    let drag: { mode: "wl" | "pan" | "cross"; x: number; y: number; w: Window; px: number; py: number } | null = null;
    c.addEventListener("mousedown", (e) => {
      const mode = e.button === 2 || e.shiftKey ? "wl" : e.button === 1 || e.ctrlKey ? "pan" : "cross";
      drag = { mode, x: e.clientX, y: e.clientY, w: { ...this.win }, px: v.panX, py: v.panY };
      if (mode === "cross") this.setCross(v, e);
    });
    window.addEventListener("mouseup", () => (drag = null));
    c.addEventListener("mousemove", (e) => {
      const p = this.planePoint(v, e);
      if (p) {
        const [i, j, k] = this.voxelAt(v.plane, p[0], p[1]);
        this.onChange(`voxel (${i}, ${j}, ${k})  ${this.hu(i, j, k)} HU`);
      }
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.mode === "wl") this.setWindow({ width: drag.w.width + dx * 4, level: drag.w.level + dy * 2 });
      else if (drag.mode === "pan") { const dpr = window.devicePixelRatio || 1; v.panX = drag.px + dx * dpr; v.panY = drag.py + dy * dpr; this.draw(); }
      else this.setCross(v, e);
    });
  }

  private setCross(v: ViewState, e: MouseEvent) {
    const p = this.planePoint(v, e);
    if (!p) return;
    this.cross = this.voxelAt(v.plane, p[0], p[1]);
    this.draw();
  }
}
