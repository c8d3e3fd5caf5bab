// Progress of an analysis, one bar per stage, driven by `analysis-progress` events.
import type { Stage } from "../api";
import { el } from "../dom";

export const STAGES = ["load model", "preprocess", "encode image", "encode text", "score", "heat maps"] as const satisfies readonly Stage[];
export type StageState = "pending" | "active" | "done";

/** Stage states after `stage` has begun (every earlier stage is done; "done" ends all). */
export function stageStates(stages: readonly string[], current: string | null): StageState[] {
  if (current === "done") return stages.map(() => "done");
  const at = current === null ? -1 : stages.indexOf(current);
  return stages.map((_, i) => (i < at ? "done" : i === at ? "active" : "pending"));
}

export function renderProgress(box: HTMLElement, stages: readonly string[], current: string | null) {
  const states = stageStates(stages, current);
  box.replaceChildren(
    ...stages.map((s, i) => {
      const bar = el("progress", { max: 1 });
      if (states[i] === "done") bar.value = 1;
      else if (states[i] === "pending") bar.value = 0;
      else bar.removeAttribute("value"); // indeterminate while running
      return el("li", { class: states[i], "data-testid": "progress-stage", "data-stage": s, "data-state": states[i] }, el("span", { text: s }), bar);
    }),
  );
}
