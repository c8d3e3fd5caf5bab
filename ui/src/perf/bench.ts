// Benchmarks the end-to-end test runs in the real window (window.__radbridge.benchScroll /
// benchDraw): they drive the viewer from outside through its public seams (the wheel events
// NiiVue handles, drawNow / drawSync, onDraw, the interactive scale) and measure.
import { SLICE_TYPE } from "@niivue/niivue";
import type { DrawSample, Viewer } from "../viewer/viewer";

export interface ScrollOptions {
  /** Interactive backing-store scale during the scroll (default: the viewer's). */
  scale?: number;
  /** Wheel events per animation frame (default 1). */
  perFrame?: number;
  /** Also draw synchronously after every wheel event (the old behaviour, for comparison). */
  sync?: boolean;
  /** Status-line interval during the scroll (default: the viewer's). */
  statusMs?: number;
}

export interface ScrollResult {
  fps: number;
  frames_per_s: number;
  wheel_events: number;
  draws: number;
  draw_ms_median: number;
  draw_ms_p90: number;
  scale: number;
  status_interval_ms: number;
  scroll_canvas_px: [number, number];
  settle_ms: number | null;
}

/** Milliseconds per synchronous full-resolution redraw after a one-slice step (gl.finish: GPU work included). */
export function benchDraw(viewer: Viewer, n: number): number {
  const gl = viewer.nv.gl as WebGL2RenderingContext;
  viewer.fullResolution();
  gl.finish();
  const t0 = performance.now();
  for (let s = 0; s < n; s++) {
    viewer.nv.moveCrosshairInVox(0, 0, s < n / 2 ? 1 : -1);
    viewer.drawNow();
  }
  return (performance.now() - t0) / n;
}

/** The p-quantile of sorted values (NaN for none). */
export function quantile(sorted: readonly number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
}

/** How many times the shown slice changed from one frame to the next. */
export function distinctSteps(shown: readonly number[]): number {
  let distinct = 0;
  for (let i = 1; i < shown.length; i++) if (shown[i] !== shown[i - 1]) distinct++;
  return distinct;
}

/**
 * Scroll the axial view as a user does: `n` frames, each with `perFrame` wheel events sent to
 * the axial tile (through NiiVue's own wheel handler), and record per animation frame which
 * slice the last finished image shows. `fps` = distinct slices that reached the screen per
 * second (frames whose image differs from the previous frame's), `frames_per_s` = animation
 * frames per second, `draw_ms_*` = the synchronous draw time (gl.finish included) during the
 * scroll, `settle_ms` = the full-resolution redraw after the scroll stopped.
 */
export async function benchScroll(viewer: Viewer, n: number, opts: ScrollOptions = {}): Promise<ScrollResult> {
  const keep = [viewer.interactiveScale, viewer.statusIntervalMs];
  if (opts.scale !== undefined) viewer.interactiveScale = opts.scale;
  if (opts.statusMs !== undefined) viewer.statusIntervalMs = opts.statusMs;
  const perFrame = opts.perFrame ?? 1;
  const nextFrame = () => new Promise<number>((r) => requestAnimationFrame(r));
  const canvas = viewer.canvas;
  const log: DrawSample[] = [];
  const listening = viewer.onDraw;
  viewer.onDraw = (d) => {
    log.push(d);
    listening?.(d);
  };
  try {
    await nextFrame();
    const dpr = viewer.nv.uiData.dpr ?? 1;
    const axial = viewer.nv.screenSlices.find((s) => s.axCorSag === SLICE_TYPE.AXIAL);
    if (!axial) throw new Error("no axial tile on screen");
    const [l, t, w, h] = axial.leftTopWidthHeight;
    const rect = canvas.getBoundingClientRect();
    const clientX = rect.left + (l + w / 2) / dpr, clientY = rect.top + (t + h / 2) / dpr;
    const shown: number[] = [];
    const times: number[] = [];
    let px: [number, number] = [canvas.width, canvas.height];
    for (let s = 0; s < n; s++) {
      for (let k = 0; k < perFrame; k++) {
        const deltaY = s < n / 2 ? -100 : 100;
        canvas.dispatchEvent(new WheelEvent("wheel", { deltaY, clientX, clientY, bubbles: true, cancelable: true }));
        if (opts.sync) viewer.drawSync(); // the old behaviour, for comparison: one full draw per event
      }
      times.push(await nextFrame());
      shown.push(viewer.drawnSlice);
      if (s === 0) px = [canvas.width, canvas.height];
    }
    const draws = log.map((d) => d.ms).sort((a, b) => a - b);
    const t1 = performance.now();
    while (viewer.lowResolution && performance.now() - t1 < 2000) await nextFrame();
    const settle = log.filter((d) => !d.low && d.t >= t1).map((d) => d.ms);
    const elapsed = times[times.length - 1] - times[0];
    return {
      fps: (distinctSteps(shown) * 1000) / elapsed,
      frames_per_s: ((times.length - 1) * 1000) / elapsed,
      wheel_events: n * perFrame,
      draws: draws.length,
      draw_ms_median: quantile(draws, 0.5),
      draw_ms_p90: quantile(draws, 0.9),
      scale: viewer.interactiveScale,
      status_interval_ms: viewer.statusIntervalMs,
      scroll_canvas_px: px,
      settle_ms: settle.length ? settle[settle.length - 1] : null,
    };
  } finally {
    viewer.onDraw = listening;
    [viewer.interactiveScale, viewer.statusIntervalMs] = keep;
  }
}
