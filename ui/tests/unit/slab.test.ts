import { describe, expect, it } from "vitest";
import { slabHalf, slabProject } from "../../src/viewer/slab";

const dims: [number, number, number] = [4, 3, 5];
const src = Int16Array.from({ length: 60 }, (_, n) => ((n * 37) % 23) - 11);
const at = (a: Int16Array, i: number, j: number, k: number) => a[i + 4 * (j + 3 * k)];

function brute(axis: 0 | 1 | 2, h: number, f: (xs: number[]) => number): Int16Array {
  const out = new Int16Array(60);
  for (let k = 0; k < 5; k++)
    for (let j = 0; j < 3; j++)
      for (let i = 0; i < 4; i++) {
        const p = [i, j, k];
        const xs: number[] = [];
        for (let t = Math.max(0, p[axis] - h); t <= Math.min(dims[axis] - 1, p[axis] + h); t++) {
          const q = [...p];
          q[axis] = t;
          xs.push(at(src, q[0], q[1], q[2]));
        }
        out[i + 4 * (j + 3 * k)] = f(xs);
      }
  return out;
}

describe("thick slabs", () => {
  it("MIP, MinIP and mean equal a brute-force window on every axis", () => {
    for (const axis of [0, 1, 2] as const)
      for (const h of [0, 1, 2]) {
        expect(slabProject(src, dims, axis, h, "mip")).toEqual(brute(axis, h, (xs) => Math.max(...xs)));
        expect(slabProject(src, dims, axis, h, "minip")).toEqual(brute(axis, h, (xs) => Math.min(...xs)));
        expect(slabProject(src, dims, axis, h, "mean")).toEqual(brute(axis, h, (xs) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length)));
      }
  });
  it("half-width in slices from mm", () => {
    expect(slabHalf(10, 1.5)).toBe(3);
    expect(slabHalf(0, 1.5)).toBe(0);
    expect(slabHalf(-5, 1.5)).toBe(0);
    expect(slabHalf(10, 0)).toBe(0);
  });
});
