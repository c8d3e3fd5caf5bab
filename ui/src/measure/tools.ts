// The Measurements panel: Distance, Ellipse ROI, Rectangle ROI and Angle tools (clicks on a view: the crosshair
// positions are sent to the shell, which measures on the volume in patient space and keeps the
// measurement with the study), and the list of the study's measurements with delete.
import * as api from "../api";
import { $, el } from "../dom";
import type { Viewer } from "../viewer/viewer";
import { angleInput, distanceInput, ellipseInput, rectangleInput, type Plane, type Vox } from "./geometry";

type Tool = "distance" | "roi" | "rect" | "angle";
const TOOLS: Tool[] = ["distance", "roi", "rect", "angle"];
/** Clicks each tool takes, and what to say before each. */
const STEPS: Record<Tool, string[]> = {
  distance: ["click the two ends", "now the other end"],
  roi: ["click the centre, then an edge", "now an edge of the region"],
  rect: ["click one corner, then the opposite one", "now the opposite corner"],
  angle: ["click one end, then the vertex, then the other end", "now the vertex", "now the other end"],
};
let tool: Tool | null = null;
let clicks: { at: Vox; plane: Plane | null }[] = [];

const hint = (t: string) => ($("measure-hint").textContent = t);

function setTool(t: Tool | null) {
  tool = t;
  clicks = [];
  for (const x of TOOLS) $(`tool-${x}`).classList.toggle("active", t === x);
  hint(t ? STEPS[t][0] : "");
}

function inputOf(t: Tool, c: { at: Vox; plane: Plane | null }[]): api.MeasureInput {
  const plane = c[0].plane ?? "axial";
  switch (t) {
    case "distance":
      return distanceInput(c[0].at, c[1].at);
    case "roi":
      return ellipseInput(plane, c[0].at, c[1].at);
    case "rect":
      return rectangleInput(plane, c[0].at, c[1].at);
    case "angle":
      return angleInput(c[0].at, c[1].at, c[2].at);
  }
}

function row(m: api.Measurement): HTMLElement {
  const del = el("button", { class: "link", "data-testid": "measurement-delete", title: "Delete", text: "✕" });
  del.onclick = async () => {
    try {
      await api.measurementDelete(m.id);
      await refreshMeasurements();
    } catch (e) {
      hint(api.errorMessage(e));
    }
  };
  return el(
    "li",
    { "data-testid": "measurement", "data-kind": m.input.kind, "data-value": m.value.toFixed(4), "data-id": m.id },
    el("span", { class: "muted", text: `${m.input.kind} ` }),
    el("span", { text: m.text }),
    del,
  );
}

/** List the displayed study's measurements (after opening a study). */
export async function refreshMeasurements() {
  try {
    const list = await api.measurementsList();
    $("measurements").replaceChildren(...list.map(row));
  } catch (e) {
    if (api.errorCode(e) !== "no_study") hint(api.errorMessage(e));
    $("measurements").replaceChildren();
  }
}

export function bindMeasure(viewer: Viewer) {
  for (const t of TOOLS) $(`tool-${t}`).onclick = () => setTool(tool === t ? null : t);
  const canvas = document.getElementById("gl") as HTMLCanvasElement;
  canvas.addEventListener(
    "mouseup",
    (e) => {
      if (!tool || e.button !== 0) return;
      const plane = viewer.planeAt(e.offsetX, e.offsetY);
      // NiiVue moves the crosshair on this click; read it once it has.
      setTimeout(async () => {
        if (!tool) return;
        clicks.push({ at: viewer.crosshairVoxel(), plane });
        const steps = STEPS[tool];
        if (clicks.length < (tool === "angle" ? 3 : 2)) {
          hint(steps[Math.min(clicks.length, steps.length - 1)]);
          return;
        }
        const input = inputOf(tool, clicks);
        setTool(null);
        try {
          await api.measurementAdd(input);
          await refreshMeasurements();
        } catch (err) {
          hint(api.errorMessage(err));
        }
      }, 0);
    },
    true,
  );
}
