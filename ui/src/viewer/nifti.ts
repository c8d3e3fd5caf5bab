// A NIfTI-1 file in memory for NiiVue: 352-byte header + voxels, with the sform built from
// the volume's voxel-to-LPS affine (NIfTI wants RAS: the x and y rows change sign).

export type NiftiType = "int16" | "uint8" | "float32";
const CODES: Record<NiftiType, [number, number]> = { uint8: [2, 8], int16: [4, 16], float32: [16, 32] };

/** RAS affine rows (3 × 4) from an LPS affine (4 × 4). */
export function lpsToRas(a: number[][]): number[][] {
  return [a[0].map((x) => -x), a[1].map((x) => -x), a[2].slice()];
}

/** Column norms of the 3 × 3 part: voxel spacing in mm. */
export function spacingOf(a: number[][]): [number, number, number] {
  return [0, 1, 2].map((c) => Math.hypot(a[0][c], a[1][c], a[2][c])) as [number, number, number];
}

/** A NIfTI-1 single file (n+1) holding `voxels` on `dims` with `affineLps`. */
export function makeNifti(dims: [number, number, number], affineLps: number[][], type: NiftiType, voxels: ArrayBufferView): ArrayBuffer {
  const n = dims[0] * dims[1] * dims[2];
  const [code, bitpix] = CODES[type];
  if (voxels.byteLength !== (n * bitpix) / 8) throw new Error(`expected ${n} ${type} voxels, got ${voxels.byteLength} bytes`);
  const out = new ArrayBuffer(352 + voxels.byteLength);
  const v = new DataView(out);
  v.setInt32(0, 348, true);
  v.setInt16(40, 3, true);
  dims.forEach((d, i) => v.setInt16(42 + 2 * i, d, true));
  for (let i = 3; i < 7; i++) v.setInt16(42 + 2 * i, 1, true);
  v.setInt16(70, code, true);
  v.setInt16(72, bitpix, true);
  const sp = spacingOf(affineLps);
  v.setFloat32(76, 1, true); // qfac
  sp.forEach((s, i) => v.setFloat32(80 + 4 * i, s, true));
  v.setFloat32(108, 352, true); // vox_offset
  v.setFloat32(112, 1, true); // scl_slope
  v.setFloat32(116, 0, true); // scl_inter
  v.setUint8(123, 10 + 8); // xyzt_units: mm + s
  v.setInt16(252, 0, true); // qform_code
  v.setInt16(254, 2, true); // sform_code: aligned
  const ras = lpsToRas(affineLps);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) v.setFloat32(280 + 16 * r + 4 * c, ras[r][c], true);
  [0x6e, 0x2b, 0x31, 0].forEach((b, i) => v.setUint8(344 + i, b)); // "n+1\0"
  new Uint8Array(out, 352).set(new Uint8Array(voxels.buffer, voxels.byteOffset, voxels.byteLength));
  return out;
}

/**
 * A canonical-LPS volume with axes 0 and 1 reversed lies in RAS voxel order, which NiiVue
 * shows without reorienting it. `rasAffine` is the LPS affine of the reversed grid;
 * `reversePlanes` reverses the data in place (each axial plane reversed = both axes).
 */
export function rasAffine(dims: [number, number, number], affineLps: number[][]): number[][] {
  const [n0, n1] = [dims[0] - 1, dims[1] - 1];
  return affineLps.map((r, i) => (i < 3 ? [-r[0], -r[1], r[2], r[3] + n0 * r[0] + n1 * r[1]] : r.slice()));
}

export function reversePlanes(data: Int16Array | Uint8Array, dims: [number, number, number]) {
  const plane = dims[0] * dims[1];
  for (let k = 0; k < dims[2]; k++) data.subarray(k * plane, (k + 1) * plane).reverse();
}

/** A NIfTI in RAS voxel order for NiiVue from canonical-LPS voxels (see rasAffine). */
export function makeRasNifti(dims: [number, number, number], affineLps: number[][], type: "int16" | "uint8", voxels: Int16Array | Uint8Array): ArrayBuffer {
  const buf = makeNifti(dims, rasAffine(dims, affineLps), type, voxels);
  const n = dims[0] * dims[1] * dims[2];
  reversePlanes(type === "int16" ? new Int16Array(buf, 352, n) : new Uint8Array(buf, 352, n), dims);
  return buf;
}

/** Inverse of a 4 × 4 affine's mapping: LPS mm → voxel (continuous). */
export function lpsToVoxel(a: number[][], p: number[]): [number, number, number] {
  const [[a0, a1, a2], [b0, b1, b2], [c0, c1, c2]] = a;
  const det = a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0);
  const inv = [
    [(b1 * c2 - b2 * c1) / det, (a2 * c1 - a1 * c2) / det, (a1 * b2 - a2 * b1) / det],
    [(b2 * c0 - b0 * c2) / det, (a0 * c2 - a2 * c0) / det, (a2 * b0 - a0 * b2) / det],
    [(b0 * c1 - b1 * c0) / det, (a1 * c0 - a0 * c1) / det, (a0 * b1 - a1 * b0) / det],
  ];
  const d = [p[0] - a[0][3], p[1] - a[1][3], p[2] - a[2][3]];
  return [0, 1, 2].map((r) => inv[r][0] * d[0] + inv[r][1] * d[1] + inv[r][2] * d[2]) as [number, number, number];
}
