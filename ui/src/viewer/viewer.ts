// The main view: NiiVue (WebGL2) in a three-plane layout (axial, coronal, sagittal) with
// orientation letters, a linked crosshair, slice scrolling, zoom, pan, window/level by drag and
// presets, HU under the cursor, and a heat-map overlay. Before the whole volume has arrived, a
// plain 2-D canvas shows the middle axial slice so the first image appears at once.
import { Niivue, NVImage, SHOW_RENDER, DRAG_MODE, MULTIPLANAR_TYPE, SLICE_TYPE } from "@niivue/niivue";
import { DEFAULT_LAYOUT, layoutSettings, toggleEnlarge, type Layout } from "./layout";
import { slabHalf, slabProject, type SlabMode } from "./slab";
import { reversePlanes, spacingOf } from "./nifti";
import { gray, type Window } from "../presets";
import { lpsToVoxel, makeRasNifti } from "./nifti";
import { heatmapAffine, topFractionThreshold, voxelToLps, type Heatmap } from "./heatmap";
import { mark } from "../perf/marks";

import type { Plane } from "./layout";
export type { Plane };
/** One draw: when it started (performance.now()), how long it took (gl.finish included), at which scale. */
export interface DrawSample { t: number; ms: number; low: boolean }
const PLANE_AXIS: Record<Plane, number> = { sagittal: 0, coronal: 1, axial: 2 };
const SLICE_PLANE: Record<number, Plane> = { [SLICE_TYPE.AXIAL]: "axial", [SLICE_TYPE.CORONAL]: "coronal", [SLICE_TYPE.SAGITTAL]: "sagittal" };

export class Viewer {
  readonly nv: Niivue;
  /** NiiVue's WebGL canvas. */
  readonly canvas: HTMLCanvasElement;
  private preview: HTMLCanvasElement;
  private ready: Promise<unknown>;
  private ct: NVImage | null = null;
  private overlay: NVImage | null = null;
  private affine: number[][] = [];
  private data: Int16Array = new Int16Array(0);
  dims: [number, number, number] = [1, 1, 1];
  win: Window = { width: 400, level: 40 };
  overlayOpacity = 0.5;
  overlayVisible = true;
  /** Canonical voxel of the shown heat map's maximum. */
  peakVoxel: [number, number, number] | null = null;
  private mouse: [number, number] | null = null;
  onStatus: (s: string) => void = () => {};
  onWindow: (w: Window) => void = () => {};
  /**
   * Backing-store scale while the user scrolls or drags (1 = full resolution). Software GL is
   * fill-rate bound, so the views are drawn at this fraction of the device pixel ratio during an
   * interaction and redrawn at full resolution `idleMs` after the last input.
   */
  interactiveScale = 0.35;
  idleMs = 150;
  /**
   * While the user scrolls or drags, the status line (position, HU) is rewritten at most this
   * often (its trailing update always shows the latest state): a DOM text change costs the
   * software compositor ~12 ms a frame, as much as the whole low-resolution draw.
   */
  statusIntervalMs = 250;
  private lastStatusAt = -Infinity;
  private statusTimer: ReturnType<typeof setTimeout> | null = null;
  private drawCore: () => void;
  private drawPending = false;
  private inDraw = false;
  private lastInput = -Infinity;
  private lowRes = false;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** The axial slice (canonical k) in the last image drawn. */
  drawnSlice = -1;
  /** Called after each draw with its start time and duration (ms): the perf harness listens. */
  onDraw: ((d: DrawSample) => void) | null = null;
  /** Called when the layout changes (the selector shows it). */
  onLayout: ((l: Layout) => void) | null = null;
  private currentLayout: Layout = DEFAULT_LAYOUT;
  /** The slab shown (null: thin slices). */
  private slab: { mm: number; mode: SlabMode; half: number; axis: 0 | 1 | 2 } | null = null;
  /** Called when the slab changes (null: off). */
  onSlab: ((text: string | null) => void) | null = null;
  private rememberedLayout: Layout | null = null;

  constructor(root: HTMLElement) {
    this.canvas = document.createElement("canvas");
    this.canvas.id = "gl";
    this.preview = document.createElement("canvas");
    this.preview.id = "preview";
    this.preview.hidden = true;
    root.prepend(this.canvas, this.preview);
    this.nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.15, 0.75, 1, 0.9],
      crosshairWidth: 1,
      isOrientationTextVisible: true,
      showAllOrientationMarkers: true,
      isRadiologicalConvention: true,
      multiplanarShowRender: SHOW_RENDER.NEVER,
      multiplanarLayout: MULTIPLANAR_TYPE.ROW,
      multiplanarEqualSize: true,
      show3Dcrosshair: false,
      sagittalNoseLeft: true,
      isColorbar: false,
      dragAndDropEnabled: false,
      loadingText: "",
      logLevel: "warn",
      textHeight: 0.04,
      dragMode: DRAG_MODE.windowing,
      mouseEventConfig: {
        leftButton: { primary: DRAG_MODE.crosshair, withShift: DRAG_MODE.windowing, withCtrl: DRAG_MODE.pan },
        rightButton: DRAG_MODE.windowing,
        centerButton: DRAG_MODE.pan,
      },
    });
    // Every redraw NiiVue asks for (wheel, drag, keys, W/L, overlays) is coalesced into at most one
    // per display frame, drawn in requestAnimationFrame with the latest state: a burst of wheel
    // events costs one draw, and the slice on screen is always the newest.
    const proto = Object.getPrototypeOf(this.nv) as { drawScene: () => unknown };
    this.drawCore = () => {
      proto.drawScene.call(this.nv);
    };
    (this.nv as unknown as { drawScene: () => void }).drawScene = () => this.requestDraw();
    const input = () => {
      this.lastInput = performance.now();
    };
    root.addEventListener("wheel", input, { capture: true, passive: true });
    root.addEventListener("keydown", input, true);
    root.addEventListener("mousedown", input, true);
    root.addEventListener("mousemove", (e) => {
      if ((e as MouseEvent).buttons) input();
    }, true);
    this.ready = this.nv.attachToCanvas(this.canvas);
    this.nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
    // Double-click a view: it fills the canvas; again: back to the layout before.
    this.canvas.addEventListener("dblclick", (e) => {
      const [next, remembered] = toggleEnlarge(this.currentLayout, this.rememberedLayout, this.planeAt(e.offsetX, e.offsetY));
      this.rememberedLayout = remembered;
      this.setLayout(next, true);
    });
    this.nv.onIntensityChange = (v: NVImage) => {
      if (v !== this.ct) return;
      const w = { width: v.cal_max! - v.cal_min!, level: (v.cal_max! + v.cal_min!) / 2 };
      this.win = w;
      this.onWindow(w);
    };
    this.nv.onLocationChange = () => this.reportStatus();
    this.canvas.addEventListener("mousemove", (e) => {
      this.mouse = [e.offsetX, e.offsetY];
      this.reportStatus();
    });
    this.canvas.addEventListener("mouseleave", () => (this.mouse = null));
    // Keys are the app's (main.ts, IHE Basic Image Review style), not NiiVue's own hotkeys.
    for (const t of ["keydown", "keyup"]) root.addEventListener(t, (e) => e.stopPropagation(), true);
    // Ctrl + wheel zooms (NiiVue's wheel alone scrolls slices).
    this.canvas.addEventListener(
      "wheel",
      (e) => {
        if (!e.ctrlKey) return;
        e.preventDefault();
        e.stopImmediatePropagation();
        this.zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1);
      },
      { capture: true, passive: false },
    );
  }

  /** Ask for a redraw in the next animation frame (many requests, one draw). */
  requestDraw() {
    if (this.inDraw) return;
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => this.frame());
  }

  private frame() {
    this.drawPending = false;
    const now = performance.now();
    const interactive = now - this.lastInput < this.idleMs && this.interactiveScale < 1;
    this.inDraw = true;
    try {
      if (interactive !== this.lowRes) this.setLowRes(interactive);
      const t0 = performance.now();
      this.drawCore(); // ends in gl.finish(): the image is complete when this returns
      const ms = performance.now() - t0;
      if (this.ct) this.drawnSlice = this.crosshairVoxel()[2];
      this.onDraw?.({ t: t0, ms, low: this.lowRes });
    } finally {
      this.inDraw = false;
    }
    if (this.lowRes) {
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        this.requestDraw(); // back to full resolution once the input has stopped
      }, this.idleMs + 10);
    }
  }

  /** Resize the backing store (CSS size unchanged) to the interactive or the full scale. */
  private setLowRes(low: boolean) {
    this.lowRes = low;
    const native = window.devicePixelRatio || 1;
    this.nv.opts.forceDevicePixelRatio = low ? native * this.interactiveScale : 0;
    this.nv.resizeListener(); // its drawScene() is ours: no draw here, the caller draws
  }

  /** Drawing at the interactive (reduced) scale right now. */
  get lowResolution(): boolean {
    return this.lowRes;
  }

  /** Back to the full-resolution backing store at once (the next draw is full size). */
  fullResolution() {
    if (this.lowRes) this.setLowRes(false);
  }

  /** Draw now, synchronously (at the current scale). */
  drawNow() {
    this.drawPending = false;
    this.inDraw = true;
    try {
      this.drawCore();
    } finally {
      this.inDraw = false;
    }
  }

  /** Draw now, synchronously, as a frame does (the drawn slice and onDraw updated). */
  drawSync() {
    const t0 = performance.now();
    this.drawNow();
    if (this.ct) this.drawnSlice = this.crosshairVoxel()[2];
    this.onDraw?.({ t: t0, ms: performance.now() - t0, low: this.lowRes });
  }

  get loaded(): boolean {
    return this.ct !== null;
  }

  /** Show one axial plane at once, while the whole volume is still on its way. */
  showPreview(slice: Int16Array, dims: [number, number, number], spacing: [number, number, number]) {
    const [nx, ny] = dims;
    const c = this.preview;
    const box = c.parentElement!.getBoundingClientRect();
    c.width = Math.max(1, Math.floor(box.width));
    c.height = Math.max(1, Math.floor(box.height));
    const img = new ImageData(nx, ny);
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++) {
        // Radiological display: patient right (i = 0) on the viewer's left.
        const g = gray(slice[j * nx + i], this.win);
        const o = 4 * (j * nx + i);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = g;
        img.data[o + 3] = 255;
      }
    const tmp = document.createElement("canvas");
    tmp.width = nx;
    tmp.height = ny;
    tmp.getContext("2d")!.putImageData(img, 0, 0);
    const ctx = c.getContext("2d")!;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, c.width, c.height);
    const w = nx * spacing[0], h = ny * spacing[1];
    const s = Math.min(c.width / 2 / w, c.height / 2 / h);
    ctx.drawImage(tmp, 0, 0, w * s, h * s);
    ctx.fillStyle = "#fc6";
    ctx.font = "14px sans-serif";
    ctx.fillText("R", 4, (h * s) / 2);
    ctx.fillText("L", w * s - 14, (h * s) / 2);
    ctx.fillText("A", (w * s) / 2, 16);
    ctx.fillText("P", (w * s) / 2, h * s - 6);
    c.hidden = false;
    mark("first_slice");
  }

  /** Load a volume (int16 HU, canonical LPS) into NiiVue. */
  async load(voxels: Int16Array, dims: [number, number, number], affineLps: number[][]) {
    await this.ready;
    const nifti = makeRasNifti(dims, affineLps, "int16", voxels);
    const img = await NVImage.loadFromUrl({ url: "ct.nii", name: "ct.nii", buffer: nifti, cal_min: this.lo(), cal_max: this.hi(), trustCalMinMax: true });
    mark("volume_parsed");
    for (const v of [...this.nv.volumes]) this.nv.removeVolume(v);
    this.ct = img;
    this.overlay = null;
    this.affine = affineLps;
    this.data = voxels;
    this.dims = dims;
    if (this.slab) {
      this.slab = null;
      this.onSlab?.(null);
    }
    this.nv.addVolume(img); // cal_min / cal_max already carry the window: no second upload
    this.onWindow(this.win);
    this.preview.hidden = true;
    mark("volume_ready");
  }

  private lo() {
    return this.win.level - this.win.width / 2;
  }
  private hi() {
    return this.win.level + this.win.width / 2;
  }

  setWindow(w: Window) {
    this.win = { width: Math.max(1, w.width), level: w.level };
    if (this.ct) {
      this.ct.cal_min = this.lo();
      this.ct.cal_max = this.hi();
      this.nv.updateGLVolume();
    }
    this.onWindow(this.win);
  }

  /** Overlay a heat map (replacing any other) and return its peak in LPS mm. */
  async setOverlay(h: Heatmap, topFraction = 0.1): Promise<[number, number, number]> {
    if (!this.ct) throw new Error("no volume loaded");
    const aff = heatmapAffine(this.affine, h.meta.step);
    // Show the strongest part of the map (its top 10 % of voxels) in colour, the rest clear.
    const calMin = topFractionThreshold(h.voxels, topFraction);
    const nifti = makeRasNifti(h.meta.dims, aff, "uint8", h.voxels);
    const img = await NVImage.loadFromUrl({ url: "heatmap.nii", name: "heatmap.nii", buffer: nifti, colormap: "warm", opacity: this.overlayVisible ? this.overlayOpacity : 0, cal_min: calMin, cal_max: 255, trustCalMinMax: true });
    this.clearOverlay();
    this.overlay = img;
    this.peakVoxel = h.meta.peak;
    this.nv.addVolume(img);
    return voxelToLps(this.affine, h.meta.peak);
  }

  clearOverlay() {
    if (this.overlay) this.nv.removeVolume(this.overlay);
    this.overlay = null;
  }

  get hasOverlay() {
    return this.overlay !== null;
  }

  setOverlayOpacity(o: number) {
    this.overlayOpacity = o;
    if (this.overlay) this.nv.setOpacity(1, this.overlayVisible ? o : 0);
  }

  setOverlayVisible(v: boolean) {
    this.overlayVisible = v;
    this.setOverlayOpacity(this.overlayOpacity);
  }

  /** Move the crosshair (all three views) to a point in LPS mm. */
  jumpTo(lps: [number, number, number]) {
    if (!this.ct) return;
    const frac = this.nv.mm2frac([-lps[0], -lps[1], lps[2]]);
    this.nv.scene.crosshairPos = frac;
    this.nv.drawScene();
    this.reportStatus();
  }

  /** The crosshair as a canonical voxel index. */
  crosshairVoxel(): [number, number, number] {
    return this.fracToVoxel(this.nv.scene.crosshairPos);
  }

  /** NiiVue texture fraction → canonical voxel index (through RAS mm, so independent of how NiiVue orders voxels). */
  private fracToVoxel(frac: ArrayLike<number>): [number, number, number] {
    const mm = this.nv.frac2mm([frac[0], frac[1], frac[2]]);
    const v = lpsToVoxel(this.affine, [-mm[0], -mm[1], mm[2]]);
    return [Math.round(v[0]), Math.round(v[1]), Math.round(v[2])];
  }

  /** Where a view's tile is in the page (CSS px: left, top, width, height), for tests that
   *  watch the screen. */
  tileRect(plane: Plane): [number, number, number, number] | null {
    const dpr = this.nv.uiData.dpr ?? window.devicePixelRatio ?? 1;
    const s = this.nv.screenSlices.find((x) => SLICE_PLANE[x.axCorSag] === plane);
    if (!s) return null;
    const r = this.canvas.getBoundingClientRect();
    const [l, t, w, h] = s.leftTopWidthHeight;
    return [r.left + l / dpr, r.top + t / dpr, w / dpr, h / dpr];
  }

  get layout(): Layout {
    return this.currentLayout;
  }

  /** Show `l` (1×3, 2×2, 2×2 with the 3-D rendering, one view, 3-D). `fromEnlarge`: keeps the
   * layout a double-click will go back to. */
  setLayout(l: Layout, fromEnlarge = false) {
    if (!fromEnlarge) this.rememberedLayout = null;
    if (this.slab && l !== this.currentLayout) this.clearSlab();
    const s = layoutSettings(l);
    this.currentLayout = l;
    this.nv.opts.multiplanarShowRender = s.showRender;
    this.nv.setMultiplanarLayout(s.multiplanar);
    this.nv.setSliceType(s.sliceType);
    this.requestDraw();
    this.onLayout?.(l);
  }

  /** What is on screen: the planes of the slice tiles, and "render" when the 3-D view shows. */
  visibleViews(): string[] {
    const st = this.nv.opts.sliceType;
    const views: string[] = this.nv.screenSlices.map((x) => SLICE_PLANE[x.axCorSag] ?? "render");
    const renders = st === SLICE_TYPE.RENDER || (st === SLICE_TYPE.MULTIPLANAR && this.nv.opts.multiplanarShowRender === SHOW_RENDER.ALWAYS);
    if (renders && !views.includes("render")) views.push("render");
    return [...new Set(views)];
  }

  /** Show a slab `mm` thick (MIP, MinIP or mean) along the normal of the single view on
   * screen; 0 mm: thin slices again. Returns what is shown, e.g. "MIP 10 mm (7 slices)". */
  setSlab(mm: number, mode: SlabMode): string | null {
    if (!this.ct) throw new Error("open a CT first");
    const axis = ({ sagittal: 0, coronal: 1, axial: 2 } as Record<string, 0 | 1 | 2>)[this.currentLayout];
    if (!(mm > 0)) {
      this.clearSlab();
      return null;
    }
    if (axis === undefined) throw new Error("choose a single view (axial, coronal or sagittal) for a slab");
    const half = slabHalf(mm, spacingOf(this.affine)[axis]);
    if (half === 0) {
      this.clearSlab();
      return null;
    }
    const shown = slabProject(this.data, this.dims, axis, half, mode);
    this.upload(shown);
    this.slab = { mm, mode, half, axis };
    const text = `${mode === "mip" ? "MIP" : mode === "minip" ? "MinIP" : "Mean"} ${mm} mm (${2 * half + 1} slices)`;
    this.onSlab?.(text);
    return text;
  }

  private clearSlab() {
    if (!this.slab) return;
    this.slab = null;
    this.upload(this.data);
    this.onSlab?.(null);
  }

  /** Put canonical-LPS voxels into the CT image NiiVue shows (RAS order: planes reversed). */
  private upload(lps: Int16Array) {
    if (!this.ct) return;
    const ras = lps.slice();
    reversePlanes(ras, this.dims);
    (this.ct.img as Int16Array).set(ras);
    this.nv.updateGLVolume();
  }

  /** The value the CT image shows at a canonical voxel (the slab's when one is on). */
  shownAt(ijk: number[]): number | null {
    if (!this.ct) return null;
    const [i, j, k] = ijk;
    const [nx, ny] = this.dims;
    return (this.ct.img as Int16Array)[(k * ny + (ny - 1 - j)) * nx + (nx - 1 - i)];
  }

  /** Invert the grey scale of the CT (I). */
  invert() {
    if (!this.ct) return;
    this.ct.colormapInvert = !this.ct.colormapInvert;
    this.nv.updateGLVolume();
  }

  /** The plane of the tile under a canvas position (CSS px), if any. */
  planeAt(x: number, y: number): Plane | null {
    const dpr = this.nv.uiData.dpr ?? window.devicePixelRatio ?? 1;
    for (const s of this.nv.screenSlices) {
      const [l, t, w, h] = s.leftTopWidthHeight;
      if (x * dpr >= l && x * dpr < l + w && y * dpr >= t && y * dpr < t + h) return SLICE_PLANE[s.axCorSag] ?? null;
    }
    return null;
  }

  /** Step the slice of a view (default: the view under the mouse, else axial). */
  step(n: number, plane?: Plane) {
    if (!this.ct) return;
    const p = plane ?? (this.mouse ? this.planeAt(...this.mouse) : null) ?? "axial";
    const d = [0, 0, 0];
    d[PLANE_AXIS[p]] = n;
    this.nv.moveCrosshairInVox(d[0], d[1], d[2]);
    this.reportStatus();
  }

  zoom(f: number) {
    const p = this.nv.scene.pan2Dxyzmm;
    this.nv.scene.pan2Dxyzmm = [p[0], p[1], p[2], Math.min(20, Math.max(0.2, p[3] * f))];
    this.nv.drawScene();
  }

  resetView() {
    this.nv.scene.pan2Dxyzmm = [0, 0, 0, 1];
    this.nv.drawScene();
  }

  /** HU at a canonical voxel, or null outside. */
  huAt(ijk: number[]): number | null {
    if (!this.ct) return null;
    const [i, j, k] = ijk;
    const [nx, ny, nz] = this.dims;
    if (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz) return null;
    return this.data[(k * ny + j) * nx + i];
  }

  private reportStatus() {
    if (!this.ct) return;
    const now = performance.now();
    const wait = this.lastStatusAt + this.statusIntervalMs - now;
    if (now - this.lastInput < this.idleMs && wait > 0) {
      this.statusTimer ??= setTimeout(() => {
        this.statusTimer = null;
        this.writeStatus();
      }, wait);
      return;
    }
    this.writeStatus();
  }

  private writeStatus() {
    if (!this.ct) return;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.statusTimer = null;
    this.lastStatusAt = performance.now();
    let where = "crosshair";
    let vox = this.crosshairVoxel();
    if (this.mouse) {
      const dpr = this.nv.uiData.dpr ?? window.devicePixelRatio ?? 1;
      const frac = this.nv.canvasPos2frac([this.mouse[0] * dpr, this.mouse[1] * dpr]);
      if (frac[0] >= 0) {
        vox = this.fracToVoxel(frac);
        where = "cursor";
      }
    }
    const hu = this.huAt(vox);
    const mm = voxelToLps(this.affine, vox);
    this.onStatus(
      `${where} voxel (${vox.join(", ")})  LPS (${mm.map((x) => x.toFixed(1)).join(", ")}) mm  ${hu === null ? "" : `HU ${Math.round(hu)}`}`,
    );
  }
}
