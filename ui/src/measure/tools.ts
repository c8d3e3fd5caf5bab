// The Measurements panel: Distance and Ellipse ROI tools (two clicks on a view: the crosshair
// positions are sent to the shell, which measures on the volume in patient space and keeps the
// measurement with the study), and the list of the study's measurements with delete.
import * as api from "../api";
import { $, el } from "../dom";
import type { Viewer } from "../viewer/viewer";
import { distanceInput, ellipseInput, type Plane, type Vox } from "./geometry";

type Tool = "distance" | "roi";
let tool: Tool | null = null;
let first: { at: Vox; plane: Plane | null } | null = null;

const hint = (t: string) => ($("measure-hint").textContent = t);

function setTool(t: Tool | null) {
  tool = t;
  first = null;
  $("tool-distance").classList.toggle("active", t === "distance");
  $("tool-roi").classList.toggle("active", t === "roi");
  hint(t === "distance" ? "click the two ends" : t === "roi" ? "click the centre, then an edge" : "");
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
  $("tool-distance").onclick = () => setTool(tool === "distance" ? null : "distance");
  $("tool-roi").onclick = () => setTool(tool === "roi" ? null : "roi");
  const canvas = document.getElementById("gl") as HTMLCanvasElement;
  canvas.addEventListener(
    "mouseup",
    (e) => {
      if (!tool || e.button !== 0) return;
      const plane = viewer.planeAt(e.offsetX, e.offsetY);
      // NiiVue moves the crosshair on this click; read it once it has.
      setTimeout(async () => {
        const at = viewer.crosshairVoxel();
        if (!first) {
          first = { at, plane };
          hint(tool === "distance" ? "now the other end" : "now an edge of the region");
          return;
        }
        const input = tool === "distance" ? distanceInput(first.at, at) : ellipseInput(first.plane ?? "axial", first.at, at);
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
