import { describe, expect, it } from "vitest";
import { lpsToVoxel, makeRasNifti, rasAffine, reversePlanes } from "../../src/viewer/nifti";
import { topFractionThreshold, voxelToLps } from "../../src/viewer/heatmap";

// A canonical-LPS grid (axis 0 → left, 1 → posterior, 2 → superior) with a small rotation.
const c = Math.cos(0.1), s = Math.sin(0.1);
const affine = [
  [1.5 * c, -0.7 * s, 0, -170],
  [1.5 * s, 0.7 * c, 0, -120],
  [0, 0, 3, 600],
  [0, 0, 0, 1],
];
const dims: [number, number, number] = [4, 3, 2];

describe("RAS voxel order for NiiVue", () => {
  it("keeps every voxel at the same patient position with the same value", () => {
    const data = Int16Array.from({ length: 24 }, (_, n) => n * 7 - 50);
    const flipped = data.slice();
    reversePlanes(flipped, dims);
    const aff2 = rasAffine(dims, affine);
    for (let k = 0; k < 2; k++)
      for (let j = 0; j < 3; j++)
        for (let i = 0; i < 4; i++) {
          const [i2, j2] = [3 - i, 2 - j];
          expect(flipped[(k * 3 + j2) * 4 + i2]).toBe(data[(k * 3 + j) * 4 + i]);
          const p = voxelToLps(affine, [i, j, k]);
          const q = voxelToLps(aff2, [i2, j2, k]);
          p.forEach((x, a) => expect(q[a]).toBeCloseTo(x, 9));
        }
  });
  it("gives NiiVue a RAS-aligned sform for an axis-aligned LPS volume", () => {
    const lps = [[0.8, 0, 0, -100], [0, 0.8, 0, -90], [0, 0, 2, 10], [0, 0, 0, 1]];
    const buf = makeRasNifti([2, 2, 1], lps, "int16", new Int16Array([1, 2, 3, 4]));
    const v = new DataView(buf);
    expect(v.getFloat32(280, true)).toBeCloseTo(0.8); // reversed axis 0 runs towards patient right: +x in RAS
    expect(v.getFloat32(296 + 4, true)).toBeCloseTo(0.8);
    expect(Array.from(new Int16Array(buf, 352, 4))).toEqual([4, 3, 2, 1]);
  });
  it("inverts the affine (LPS mm → voxel)", () => {
    const v = lpsToVoxel(affine, voxelToLps(affine, [2.5, 1, 1]));
    [2.5, 1, 1].forEach((x, a) => expect(v[a]).toBeCloseTo(x, 9));
  });
});

describe("heat-map display threshold", () => {
  it("keeps the top fraction of voxels", () => {
    const v = Uint8Array.from({ length: 100 }, (_, i) => i); // 0..99
    expect(topFractionThreshold(v, 0.1)).toBe(90);
    expect(topFractionThreshold(v, 0.5)).toBe(50);
    expect(topFractionThreshold(new Uint8Array(10), 0.1)).toBe(1); // all zero: nothing shown
  });
});
