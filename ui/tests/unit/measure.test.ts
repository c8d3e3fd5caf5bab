import { describe, expect, it } from "vitest";
import { angleInput, distanceInput, ellipseInput, rectangleInput } from "../../src/measure/geometry";

describe("measurement input from two clicks", () => {
  it("a distance joins the two crosshair positions", () => {
    expect(distanceInput([1, 2, 3], [4, 5, 6])).toEqual({ kind: "distance", a: [1, 2, 3], b: [4, 5, 6] });
  });
  it("an ellipse is centred on the first click, on its slice, reaching the second along the slice axes", () => {
    expect(ellipseInput("axial", [100, 80, 40], [110, 74, 40])).toEqual({ kind: "ellipse", plane: "axial", slice: 40, center: [100, 80], radii: [10, 6] });
    expect(ellipseInput("coronal", [100, 80, 40], [95, 80, 52])).toEqual({ kind: "ellipse", plane: "coronal", slice: 80, center: [100, 40], radii: [5, 12] });
    expect(ellipseInput("sagittal", [100, 80, 40], [100, 80, 40])).toEqual({ kind: "ellipse", plane: "sagittal", slice: 100, center: [80, 40], radii: [1, 1] });
  });

  it("a rectangle takes two corners on the first click's slice; an angle three points", () => {
    expect(rectangleInput("sagittal", [100, 80, 40], [100, 70, 55])).toEqual({ kind: "rectangle", plane: "sagittal", slice: 100, a: [80, 40], b: [70, 55] });
    expect(angleInput([1, 2, 3], [4, 5, 6], [7, 8, 9])).toEqual({ kind: "angle", a: [1, 2, 3], vertex: [4, 5, 6], b: [7, 8, 9] });
  });
});
