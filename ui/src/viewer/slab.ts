// Thick slabs (tested in tests/unit/slab.test.ts): each voxel replaced by the maximum (MIP),
// minimum (MinIP) or mean of the voxels within ± half slices along one axis, clamped at the
// volume's ends. The viewer shows the result instead of the thin slices in a single-view layout
// (the slab runs along that view's normal), so scrolling costs the same as without a slab.

export type SlabMode = "mip" | "minip" | "mean";

/** The slab projection of `src` (i fastest, dims[0] × dims[1] × dims[2]) along `axis`. */
export function slabProject(src: Int16Array, dims: [number, number, number], axis: 0 | 1 | 2, half: number, mode: SlabMode): Int16Array {
  const out = new Int16Array(src.length);
  const [nx, ny, nz] = dims;
  const stride = axis === 0 ? 1 : axis === 1 ? nx : nx * ny;
  const n = dims[axis];
  const h = Math.max(0, Math.floor(half));
  // Every line along `axis`: its first voxel runs over the other two axes.
  const starts: number[] = [];
  for (let k = 0; k < (axis === 2 ? 1 : nz); k++)
    for (let j = 0; j < (axis === 1 ? 1 : ny); j++)
      for (let i = 0; i < (axis === 0 ? 1 : nx); i++) starts.push(i + nx * (j + ny * k));
  const line = new Float64Array(n);
  const prefix = new Float64Array(n + 1);
  for (const s of starts) {
    for (let t = 0; t < n; t++) line[t] = src[s + t * stride];
    if (mode === "mean") {
      for (let t = 0; t < n; t++) prefix[t + 1] = prefix[t] + line[t];
    }
    for (let t = 0; t < n; t++) {
      const a = Math.max(0, t - h), b = Math.min(n - 1, t + h);
      let v: number;
      if (mode === "mean") v = Math.round((prefix[b + 1] - prefix[a]) / (b - a + 1));
      else {
        v = line[a];
        for (let u = a + 1; u <= b; u++) v = mode === "mip" ? Math.max(v, line[u]) : Math.min(v, line[u]);
      }
      out[s + t * stride] = v;
    }
  }
  return out;
}

/** Half-width in slices of a slab `mm` thick on a grid of `spacing` mm (0: no slab). */
export function slabHalf(mm: number, spacing: number): number {
  if (!(mm > 0) || !(spacing > 0)) return 0;
  return Math.round(mm / spacing / 2);
}
