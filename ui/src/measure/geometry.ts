// From clicks to what is measured (tested in tests/unit/measure.test.ts): two clicks give a
// distance, or an ellipse on the slice of the first click (centre there, semi-axes reaching the
// second click along the slice's two axes).
import type { MeasureInput } from "../api";

export type Plane = "axial" | "coronal" | "sagittal";
export type Vox = [number, number, number];

/** (u axis, v axis, fixed axis) of a plane, as the Rust side has them. */
export const PLANE_AXES: Record<Plane, [number, number, number]> = { axial: [0, 1, 2], coronal: [0, 2, 1], sagittal: [1, 2, 0] };

export function distanceInput(a: Vox, b: Vox): MeasureInput {
  return { kind: "distance", a: [...a], b: [...b] };
}

/** An ellipse centred on `a` on its slice of `plane`, with semi-axes |b − a| along the slice's
 * axes (at least 1 voxel each). */
export function ellipseInput(plane: Plane, a: Vox, b: Vox): MeasureInput {
  const [u, v, f] = PLANE_AXES[plane];
  return {
    kind: "ellipse",
    plane,
    slice: a[f],
    center: [a[u], a[v]],
    radii: [Math.max(1, Math.abs(b[u] - a[u])), Math.max(1, Math.abs(b[v] - a[v]))],
  };
}
