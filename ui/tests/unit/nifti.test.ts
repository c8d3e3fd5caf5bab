import { describe, expect, it } from "vitest";
import { lpsToRas, makeNifti, spacingOf } from "../../src/viewer/nifti";
import { heatValue, heatmapAffine, parseHeatmap, voxelToLps } from "../../src/viewer/heatmap";

const affine = [
  [0.8, 0, 0, -200],
  [0, 0.8, 0, -150],
  [0, 0, 2.5, 30],
  [0, 0, 0, 1],
];

describe("NIfTI header for NiiVue", () => {
  it("writes dims, datatype, spacing, RAS sform and magic", () => {
    const vox = new Int16Array([1, -2, 3, -4, 5, -6]);
    const buf = makeNifti([3, 2, 1], affine, "int16", vox);
    const v = new DataView(buf);
    expect(buf.byteLength).toBe(352 + 12);
    expect(v.getInt32(0, true)).toBe(348);
    expect([v.getInt16(40, true), v.getInt16(42, true), v.getInt16(44, true), v.getInt16(46, true)]).toEqual([3, 3, 2, 1]);
    expect(v.getInt16(70, true)).toBe(4);
    expect(v.getInt16(72, true)).toBe(16);
    expect(v.getFloat32(80, true)).toBeCloseTo(0.8);
    expect(v.getFloat32(88, true)).toBeCloseTo(2.5);
    expect(v.getFloat32(108, true)).toBe(352);
    expect(v.getInt16(254, true)).toBe(2);
    // LPS -> RAS: x and y rows negated.
    expect(v.getFloat32(280, true)).toBeCloseTo(-0.8);
    expect(v.getFloat32(292, true)).toBeCloseTo(200);
    expect(v.getFloat32(296 + 4, true)).toBeCloseTo(-0.8);
    expect(v.getFloat32(296 + 12, true)).toBeCloseTo(150);
    expect(v.getFloat32(312 + 8, true)).toBeCloseTo(2.5);
    expect(v.getFloat32(312 + 12, true)).toBeCloseTo(30);
    expect(String.fromCharCode(v.getUint8(344), v.getUint8(345), v.getUint8(346))).toBe("n+1");
    expect(Array.from(new Int16Array(buf, 352))).toEqual([1, -2, 3, -4, 5, -6]);
  });
  it("refuses a voxel count that does not fit the dims", () => {
    expect(() => makeNifti([2, 2, 2], affine, "uint8", new Uint8Array(7))).toThrow(/expected 8 uint8/);
  });
  it("converts affines and spacing", () => {
    expect(lpsToRas(affine)[0][3]).toBe(200);
    expect(spacingOf([[0, 2, 0, 0], [3, 0, 0, 0], [0, 0, 4, 0]])).toEqual([3, 2, 4]);
  });
});

function encode(meta: object, voxels: number[]): ArrayBuffer {
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const start = (4 + json.length + 3) & ~3;
  const out = new Uint8Array(start + voxels.length).fill(32);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  out.set(voxels, start);
  return out.buffer;
}

describe("heat map transfer", () => {
  it("parses metadata and voxels (padded header)", () => {
    const meta = { dims: [2, 1, 2], step: [2, 2, 1], min: -0.5, max: 0.5, peak: [3, 1, 1] };
    const h = parseHeatmap(encode(meta, [0, 255, 128, 7]));
    expect(h.meta).toEqual(meta);
    expect(Array.from(h.voxels)).toEqual([0, 255, 128, 7]);
    expect(heatValue(h.meta, 255)).toBeCloseTo(0.5);
    expect(heatValue(h.meta, 0)).toBeCloseTo(-0.5);
  });
  it("rejects truncated transfers", () => {
    const meta = { dims: [2, 2, 2], step: [1, 1, 1], min: 0, max: 1, peak: [0, 0, 0] };
    expect(() => parseHeatmap(encode(meta, [1, 2, 3]))).toThrow(/expected 8/);
    expect(() => parseHeatmap(new ArrayBuffer(2))).toThrow(/empty/);
  });
  it("folds the subsampling step into the affine and maps voxels to LPS", () => {
    const a = heatmapAffine(affine, [2, 2, 1]);
    expect(a[0]).toEqual([1.6, 0, 0, -200]);
    expect(a[2]).toEqual([0, 0, 2.5, 30]);
    // Voxel (i, j) of the subsampled map is voxel (2i, 2j) of the CT: same position.
    expect(voxelToLps(a, [10, 20, 3])).toEqual(voxelToLps(affine, [20, 40, 3]));
    expect(voxelToLps(affine, [0, 0, 0])).toEqual([-200, -150, 30]);
  });
});
