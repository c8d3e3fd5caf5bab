// View layouts (tested in tests/unit/layout.test.ts): which NiiVue slice type, multiplanar
// arrangement and 3-D render each one is, and double-click to enlarge a view and back.
import { MULTIPLANAR_TYPE, SHOW_RENDER, SLICE_TYPE } from "@niivue/niivue";
import type { SlicePlane } from "../bindings/SlicePlane";

/** A slice plane: the Rust side's `SlicePlane` (views and measurements use the same names). */
export type Plane = SlicePlane;
export type Layout = "1x3" | "2x2" | "2x2-3d" | "axial" | "coronal" | "sagittal" | "3d";

/** The layouts in the order the selector lists them, with their labels. */
export const LAYOUTS: { value: Layout; label: string }[] = [
  { value: "1x3", label: "1 × 3" },
  { value: "2x2", label: "2 × 2" },
  { value: "2x2-3d", label: "2 × 2 with 3-D" },
  { value: "axial", label: "Axial" },
  { value: "coronal", label: "Coronal" },
  { value: "sagittal", label: "Sagittal" },
  { value: "3d", label: "3-D" },
];

export const DEFAULT_LAYOUT: Layout = "1x3";

export interface LayoutSettings {
  sliceType: SLICE_TYPE;
  /** Arrangement of the multiplanar views (when sliceType is MULTIPLANAR). */
  multiplanar: MULTIPLANAR_TYPE;
  showRender: SHOW_RENDER;
}

export function isLayout(v: string): v is Layout {
  return LAYOUTS.some((l) => l.value === v);
}

/** What NiiVue is told for a layout. */
export function layoutSettings(l: Layout): LayoutSettings {
  const single = (sliceType: SLICE_TYPE): LayoutSettings => ({ sliceType, multiplanar: MULTIPLANAR_TYPE.ROW, showRender: SHOW_RENDER.NEVER });
  switch (l) {
    case "1x3":
      return { sliceType: SLICE_TYPE.MULTIPLANAR, multiplanar: MULTIPLANAR_TYPE.ROW, showRender: SHOW_RENDER.NEVER };
    case "2x2":
      return { sliceType: SLICE_TYPE.MULTIPLANAR, multiplanar: MULTIPLANAR_TYPE.GRID, showRender: SHOW_RENDER.NEVER };
    case "2x2-3d":
      return { sliceType: SLICE_TYPE.MULTIPLANAR, multiplanar: MULTIPLANAR_TYPE.GRID, showRender: SHOW_RENDER.ALWAYS };
    case "axial":
      return single(SLICE_TYPE.AXIAL);
    case "coronal":
      return single(SLICE_TYPE.CORONAL);
    case "sagittal":
      return single(SLICE_TYPE.SAGITTAL);
    case "3d":
      return single(SLICE_TYPE.RENDER);
  }
}

/** Double-click on a view: a multi-view layout enlarges that view (remembering the layout); a
 * single enlarged view goes back to the layout it came from. Returns [new layout, remembered]. */
export function toggleEnlarge(current: Layout, remembered: Layout | null, plane: Plane | null): [Layout, Layout | null] {
  const single = current === "axial" || current === "coronal" || current === "sagittal" || current === "3d";
  if (single) return remembered ? [remembered, null] : [current, null];
  if (!plane) return [current, remembered];
  return [plane, current];
}
