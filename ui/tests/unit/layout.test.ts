import { describe, expect, it } from "vitest";
import { MULTIPLANAR_TYPE, SHOW_RENDER, SLICE_TYPE } from "@niivue/niivue";
import { DEFAULT_LAYOUT, LAYOUTS, isLayout, layoutSettings, toggleEnlarge } from "../../src/viewer/layout";

describe("view layouts", () => {
  it("map to NiiVue's slice type, arrangement and 3-D view", () => {
    expect(DEFAULT_LAYOUT).toBe("1x3");
    expect(layoutSettings("1x3")).toEqual({ sliceType: SLICE_TYPE.MULTIPLANAR, multiplanar: MULTIPLANAR_TYPE.ROW, showRender: SHOW_RENDER.NEVER });
    expect(layoutSettings("2x2").multiplanar).toBe(MULTIPLANAR_TYPE.GRID);
    expect(layoutSettings("2x2-3d").showRender).toBe(SHOW_RENDER.ALWAYS);
    expect(layoutSettings("coronal").sliceType).toBe(SLICE_TYPE.CORONAL);
    expect(layoutSettings("3d").sliceType).toBe(SLICE_TYPE.RENDER);
    for (const l of LAYOUTS) expect(isLayout(l.value)).toBe(true);
    expect(isLayout("4x4")).toBe(false);
  });

  it("double-click enlarges a view and goes back to the layout it came from", () => {
    expect(toggleEnlarge("1x3", null, "coronal")).toEqual(["coronal", "1x3"]);
    expect(toggleEnlarge("coronal", "1x3", "coronal")).toEqual(["1x3", null]);
    expect(toggleEnlarge("2x2-3d", null, null)).toEqual(["2x2-3d", null]); // the 3-D cell: nothing to enlarge
    expect(toggleEnlarge("axial", null, "axial")).toEqual(["axial", null]); // chosen single view: stays
  });
});
