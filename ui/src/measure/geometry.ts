// From clicks to what is measured (tested in tests/unit/measure.test.ts): two clicks give a
// distance, or an ellipse on the slice of the first click (centre there, semi-axes reaching the
// second click along the slice's two axes).
import type { MeasureInput } from "../api";

import type { Plane } from "../viewer/layout";
export type { Plane };
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

/** A rectangle on the slice of `a` with corners at `a` and `b` (in the slice's axes). */
export function rectangleInput(plane: Plane, a: Vox, b: Vox): MeasureInput {
  const [u, v, f] = PLANE_AXES[plane];
  return { kind: "rectangle", plane, slice: a[f], a: [a[u], a[v]], b: [b[u], b[v]] };
}

/** The angle at `vertex` between the lines to `a` and `b`. */
export function angleInput(a: Vox, vertex: Vox, b: Vox): MeasureInput {
  return { kind: "angle", a: [...a], vertex: [...vertex], b: [...b] };
}
