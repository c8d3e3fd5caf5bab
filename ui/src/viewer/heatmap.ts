// Heat maps from `volume://localhost/heatmap/<id>`: u32 n + n bytes of JSON metadata (padded
// to 4) + uint8 voxels, 0..255 between min and max, subsampled in-plane by `step`.

export interface HeatmapMeta {
  dims: [number, number, number];
  step: [number, number, number];
  min: number;
  max: number;
  /** Voxel of the maximum on the CT's canonical grid (i, j, k). */
  peak: [number, number, number];
}
export interface Heatmap { meta: HeatmapMeta; voxels: Uint8Array }

export function parseHeatmap(buf: ArrayBuffer): Heatmap {
  if (buf.byteLength < 4) throw new Error("heat map: empty transfer");
  const n = new DataView(buf).getUint32(0, true);
  if (4 + n > buf.byteLength) throw new Error("heat map: truncated header");
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n))) as HeatmapMeta;
  const start = (4 + n + 3) & ~3;
  const voxels = new Uint8Array(buf, start);
  const count = meta.dims[0] * meta.dims[1] * meta.dims[2];
  if (voxels.length !== count) throw new Error(`heat map: ${voxels.length} voxels, expected ${count}`);
  return { meta, voxels };
}

/** The heat map's voxel-to-LPS affine: the CT's, with the subsampling steps folded in. */
export function heatmapAffine(ctAffineLps: number[][], step: [number, number, number]): number[][] {
  return ctAffineLps.map((row, r) => (r < 3 ? [row[0] * step[0], row[1] * step[1], row[2] * step[2], row[3]] : row.slice()));
}

/** Voxel (i, j, k) → LPS millimetres. */
export function voxelToLps(a: number[][], ijk: number[]): [number, number, number] {
  return [0, 1, 2].map((r) => a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3]) as [number, number, number];
}

/** Grey value (0..255) → heat-map value. */
export function heatValue(meta: HeatmapMeta, q: number): number {
  return meta.min + (q / 255) * (meta.max - meta.min);
}

/** The grey level above which the top `fraction` of a heat map's voxels lie (at least 1). */
export function topFractionThreshold(voxels: Uint8Array, fraction: number): number {
  const hist = new Uint32Array(256);
  for (let i = 0; i < voxels.length; i++) hist[voxels[i]]++;
  const want = Math.max(1, Math.round(voxels.length * fraction));
  let seen = 0;
  for (let g = 255; g > 0; g--) {
    seen += hist[g];
    if (seen >= want) return g;
  }
  return 1;
}
