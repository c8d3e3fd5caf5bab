import { describe, expect, it } from "vitest";
import { PRESETS, gray } from "../../src/presets";

describe("window presets", () => {
  it("have the issue's width / level values", () => {
    expect(PRESETS.lung).toMatchObject({ width: 1500, level: -600 });
    expect(PRESETS.mediastinum).toMatchObject({ width: 350, level: 50 });
    expect(PRESETS.bone).toMatchObject({ width: 2000, level: 300 });
    expect(PRESETS.soft_tissue).toMatchObject({ width: 400, level: 40 });
  });
  it("have distinct keys 1-4", () => {
    expect(Object.values(PRESETS).map((p) => p.key).sort()).toEqual(["1", "2", "3", "4"]);
  });
  it("map HU to grey linearly and clamp", () => {
    const lung = PRESETS.lung;
    expect(gray(-1350, lung)).toBe(0); // level - width/2
    expect(gray(150, lung)).toBe(255); // level + width/2
    expect(gray(-600, lung)).toBe(128); // the level is mid grey (127.5 rounds up)
    expect(gray(-3000, lung)).toBe(0);
    expect(gray(3000, lung)).toBe(255);
    expect(gray(40, PRESETS.soft_tissue)).toBe(128);
    expect(gray(-160, PRESETS.soft_tissue)).toBe(0);
    expect(gray(-110, PRESETS.soft_tissue)).toBe(32); // (50/400)*255 = 31.9
  });
});
