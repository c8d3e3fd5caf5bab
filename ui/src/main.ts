// Wiring of the panels: study (left), viewer (centre), analysis / findings / review /
// knowledge / report (right). api.ts is the only door to Rust.
import * as api from "./api";
import { $, el } from "./dom";
import { PRESETS } from "./presets";
import { mark, resetMarks } from "./perf";
import { Viewer } from "./viewer/viewer";
import { parseHeatmap } from "./viewer/heatmap";
import { renderFindings } from "./findings/findings";
import { STAGES, renderProgress } from "./findings/progress";
import { renderKnowledge } from "./knowledge/knowledge";
import { FeedbackLog, REASONS, type Reason, type ReviewAction } from "./feedback/log";
import { bindReport } from "./report/report";
import { bindSettings, describeModel } from "./settings/settings";

const viewer = new Viewer($("viewer"));
let current: api.VolumeSummary | null = null;
let result: api.AnalysisResult | null = null;
let typed: api.ScoredFinding[] = [];
let selected: api.ScoredFinding | null = null;
let feedback = new FeedbackLog();
let selectToken = 0;
let busy = false;
const heatmapIds = new Map<string, number>();

viewer.onStatus = (s) => ($("status").textContent = s);
viewer.onWindow = (w) => {
  $("wl-readout").textContent = `W ${Math.round(w.width)}  L ${Math.round(w.level)}`;
  for (const b of document.querySelectorAll<HTMLButtonElement>("#presets button")) {
    const p = PRESETS[b.dataset.preset!];
    b.classList.toggle("active", p.width === w.width && p.level === w.level);
  }
};

for (const [name, p] of Object.entries(PRESETS)) {
  const b = el("button", { "data-preset": name, "data-testid": `preset-${name}`, title: `${p.label}: W ${p.width} / L ${p.level} (key ${p.key})`, text: p.label });
  b.onclick = () => viewer.setWindow(p);
  $("presets").append(b);
}
for (const [value, text] of REASONS) $("fp-reason").append(el("option", { value, text }));

function showError(msg: string | null) {
  const box = $("error-box");
  box.hidden = !msg;
  box.textContent = msg ?? "";
}
function analysisError(msg: string | null) {
  const box = $("analysis-error");
  box.hidden = !msg;
  box.textContent = msg ?? "";
}

function row(label: string, value: string) {
  return el("div", {}, el("span", { text: label }), el("span", { text: value }));
}

function renderStudy(s: api.VolumeSummary) {
  $("study-info").replaceChildren(
    row("Source", s.path.split("/").filter(Boolean).pop() ?? s.path),
    row("Format", s.format_detail),
    row("Modality", s.modality ?? "unknown"),
    row("Description", s.description ?? ""),
    row("Grid", s.dims.join(" × ")),
    row("Spacing (mm)", s.spacing.map((x) => x.toFixed(3)).join(" × ")),
    row("Stored orientation", s.source_orientation),
    row("HU range", `${Math.round(s.hu_min)} .. ${Math.round(s.hu_max)}`),
  );
  $("series-list").replaceChildren(
    ...s.series.map((se) => {
      const li = el("li", {
        "data-testid": "series",
        class: se.index === s.chosen ? "chosen" : "",
        text: `${se.index}: ${se.modality} ${se.description || "(no description)"} — ${se.slice_count} slices, ${se.dimensions[0]}×${se.dimensions[1]}`,
      });
      li.onclick = () => se.index !== s.chosen && open(s.path, String(se.index));
      return li;
    }),
  );
  const warnings = s.warnings.map((w) => el("li", { "data-testid": "load-warning", "data-code": w.code, text: w.message }));
  $("warnings").replaceChildren(...(warnings.length ? warnings : [el("li", { class: "muted", style: "background:transparent;border:none", text: "none" })]));
}

function allFindings(): api.ScoredFinding[] {
  return [...(result?.diagnosis.findings ?? []), ...typed];
}

function renderAll() {
  renderFindings($("findings"), allFindings(), selected?.label ?? null, (l) => {
    const v = feedback.verdict(l);
    return v === "confirmed" || v === "false_positive" ? v : null;
  }, select);
  renderKnowledge($("knowledge"), result?.diagnosis ?? null, selected);
  const has = !!selected;
  for (const id of ["confirm-finding", "mark-false-positive"]) $<HTMLButtonElement>(id).disabled = !has;
  $<HTMLButtonElement>("undo-feedback").disabled = !feedback.events.some((e) => e.action.action !== "undo");
  $("feedback-target").textContent = selected ? `${selected.label} — score ${selected.score.toFixed(3)}` : "Select a finding.";
  $("feedback-events").replaceChildren(
    ...feedback.events.map((e) =>
      el("li", { "data-testid": "feedback-event", "data-action": e.action.action, "data-label": e.label, text: `#${e.id} ${e.action.action.replace("_", " ")} — ${e.label}${"reason" in e.action && e.action.reason ? ` (${e.action.reason})` : ""}` }),
    ),
  );
  const analysed = !!result;
  for (const id of ["finding-input", "finding-score", "missed-input", "add-missed", "export-report"]) $<HTMLButtonElement>(id).disabled = !analysed || busy;
  $<HTMLButtonElement>("run-analysis").disabled = !current || busy;
}

function clearAnalysis() {
  result = null;
  typed = [];
  selected = null;
  feedback = new FeedbackLog();
  heatmapIds.clear();
  viewer.clearOverlay();
  setOverlayControls(false);
  $("overlay-info").textContent = "";
  $("progress").hidden = true;
  analysisError(null);
  renderAll();
}

async function open(path: string, series?: string) {
  resetMarks();
  mark("open_start");
  $("status").textContent = `loading ${path} …`;
  try {
    const s = await api.openPath(path, series);
    mark("summary");
    current = s;
    showError(null);
    renderStudy(s);
    clearAnalysis();
    document.title = `Radbridge — ${s.path}`;
    const k = s.dims[2] >> 1;
    const slice = await api.fetchSlice(k);
    viewer.showPreview(slice, s.dims, s.spacing);
    const voxels = await api.fetchVoxels(s.generation);
    mark("voxels_fetched");
    if (voxels.length !== s.dims[0] * s.dims[1] * s.dims[2]) throw new Error("volume transfer was incomplete");
    await viewer.load(voxels, s.dims, s.affine_lps);
    $("status").textContent = "";
  } catch (e) {
    // The previous volume stays on screen; the error names the file and the problem.
    showError(api.errorMessage(e));
    $("status").textContent = "";
  }
  renderAll();
}

async function pick(folder: boolean) {
  const p = await api.pickPath(folder);
  if (p) await open(p);
}

function setBusy(b: boolean) {
  busy = b;
  $("cancel-analysis").hidden = !b;
  renderAll();
}

let progressTask = "analysis";
api.onProgress((p) => {
  if (p.task !== progressTask) return;
  renderProgress($("progress"), STAGES, p.stage);
}).catch(() => {});

async function runAnalysis() {
  if (!current || busy) return;
  clearAnalysis();
  progressTask = "analysis";
  $("progress").hidden = false;
  renderProgress($("progress"), STAGES.slice(0, 5), null);
  setBusy(true);
  mark("analysis_start");
  try {
    result = await api.runAnalysis();
    mark("analysis_done");
    renderProgress($("progress"), STAGES.slice(0, 5), "done");
    const d = result.diagnosis;
    $("model-line").textContent = `${d.model.name} (${d.model.architecture}${d.model.synthetic ? ", synthetic-data demo" : ""}), ${result.label_set}: ${d.findings.length} findings`;
    if (result.store_error) analysisError(`feedback store: ${result.store_error}`);
  } catch (e) {
    analysisError(api.errorCode(e) === "cancelled" ? "Analysis cancelled." : api.errorMessage(e));
  }
  setBusy(false);
}

function setOverlayControls(on: boolean) {
  $<HTMLInputElement>("overlay-toggle").disabled = !on;
  $<HTMLInputElement>("overlay-opacity").disabled = !on;
}

async function select(f: api.ScoredFinding) {
  selected = f;
  renderAll();
  const token = ++selectToken;
  $("overlay-info").textContent = `heat map for “${f.label}”…`;
  $("overlay-info").dataset.state = "loading";
  try {
    let id = heatmapIds.get(f.label);
    if (id === undefined) {
      progressTask = "heatmap";
      id = (await api.findingHeatmap(f.label, f.custom)).id;
      heatmapIds.set(f.label, id);
    }
    const h = parseHeatmap(await api.fetchHeatmap(id));
    if (token !== selectToken) return;
    const peak = await viewer.setOverlay(h);
    // The maximum of the map on screen (the CT grid), rather than the diagnosis' patch-grid peak.
    const lps = peak;
    viewer.jumpTo(lps);
    setOverlayControls(true);
    const info = $("overlay-info");
    info.textContent = `heat map: ${f.label} — peak at LPS (${lps.map((x) => x.toFixed(0)).join(", ")}) mm`;
    info.dataset.state = "shown";
    info.dataset.label = f.label;
    mark("overlay_shown");
  } catch (e) {
    if (token !== selectToken) return;
    $("overlay-info").textContent = `no heat map: ${api.errorMessage(e)}`;
    $("overlay-info").dataset.state = "error";
  }
}

async function review(label: string, action: ReviewAction) {
  let id: number | undefined;
  if (result?.run_id != null) {
    try {
      id = (await api.reviewFinding(result.run_id, label, action)).event_id;
    } catch (e) {
      analysisError(`feedback not saved: ${api.errorMessage(e)}`);
      return;
    }
  }
  feedback.add(label, action, id);
  renderAll();
}

api.onMenu((id) => {
  if (id === "open-file") pick(false);
  else if (id === "open-folder") pick(true);
  else if (id === "help") $("help").hidden = false;
}).catch(() => {});

$("run-analysis").onclick = runAnalysis;
$("cancel-analysis").onclick = () => api.cancelAnalysis();
$("confirm-finding").onclick = () => selected && review(selected.label, { action: "confirm" });
$("mark-false-positive").onclick = () => {
  if (!selected) return;
  const reason = ($<HTMLSelectElement>("fp-reason").value || null) as Reason | null;
  const note = $<HTMLInputElement>("fp-note").value.trim() || null;
  review(selected.label, { action: "false_positive", reason, note });
};
$("undo-feedback").onclick = () => {
  const undone = new Set(feedback.events.filter((e) => e.action.action === "undo").map((e) => (e.action as { event: number }).event));
  const last = [...feedback.events].reverse().find((e) => e.action.action !== "undo" && !undone.has(e.id));
  if (last) review(last.label, { action: "undo", event: last.id });
};
$("missed-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("missed-input").value.trim();
  if (!text) return;
  $<HTMLInputElement>("missed-input").value = "";
  review(text, { action: "missed", text });
};
$("finding-form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("finding-input").value.trim();
  if (!text || busy) return;
  progressTask = "finding";
  setBusy(true);
  try {
    const r = await api.scoreFinding(text);
    const f = r.diagnosis.findings[0];
    typed = [...typed.filter((t) => t.label !== f.label), f];
    $<HTMLInputElement>("finding-input").value = "";
    setBusy(false);
    select(f);
  } catch (err) {
    analysisError(api.errorMessage(err));
    setBusy(false);
  }
};
$("overlay-toggle").onchange = () => viewer.setOverlayVisible($<HTMLInputElement>("overlay-toggle").checked);
$("overlay-opacity").oninput = () => viewer.setOverlayOpacity(Number($<HTMLInputElement>("overlay-opacity").value));
$("open-file").onclick = () => pick(false);
$("open-folder").onclick = () => pick(true);
$("help-button").onclick = () => ($("help").hidden = false);
$("help-close").onclick = () => ($("help").hidden = true);
bindReport(() => result?.run_id ?? null, () => {});
bindSettings((s) => {
  if (!result) $("model-line").textContent = describeModel(s);
});

document.addEventListener("keydown", (e) => {
  const t = e.target as HTMLElement;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
  if (e.ctrlKey && e.key.toLowerCase() === "o") { e.preventDefault(); pick(e.shiftKey); return; }
  if (e.key === "?") { $("help").hidden = !$("help").hidden; return; }
  if (e.key === "Escape") { $("help").hidden = true; $("settings").hidden = true; return; }
  const preset = Object.values(PRESETS).find((p) => p.key === e.key);
  if (preset) { viewer.setWindow(preset); return; }
  if (e.key === "r" || e.key === "R") { viewer.resetView(); viewer.setWindow(PRESETS.soft_tissue); return; }
  if (e.key === "h" || e.key === "H") {
    const box = $<HTMLInputElement>("overlay-toggle");
    if (!box.disabled) { box.checked = !box.checked; viewer.setOverlayVisible(box.checked); }
    return;
  }
  if (e.key === "+" || e.key === "=") { viewer.zoom(1.2); return; }
  if (e.key === "-") { viewer.zoom(1 / 1.2); return; }
  const big = 100000;
  const step = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10, Home: -big, End: big }[e.key];
  if (step) { e.preventDefault(); viewer.step(step); }
}, true);

// Drag and drop a file or folder onto the window.
import("@tauri-apps/api/webview")
  .then(({ getCurrentWebview }) =>
    getCurrentWebview().onDragDropEvent((ev) => {
      if (ev.payload.type === "drop" && ev.payload.paths.length > 0) open(ev.payload.paths[0]);
    }),
  )
  .catch(() => {});

// For the end-to-end tests: the viewer (scroll benchmark) and the perf marks.
(globalThis as unknown as { __radbridge: object }).__radbridge = { viewer, open, benchScroll: (n: number, o?: { scale?: number; perFrame?: number; sync?: boolean; statusMs?: number }) => viewer.benchScroll(n, o), benchDraw: (n: number) => viewer.benchDraw(n), runId: () => result?.run_id ?? null };

async function start() {
  viewer.setWindow(PRESETS.soft_tissue);
  renderAll();
  if (!(await api.noticeStatus())) {
    $("notice").hidden = false;
    $("acknowledge").onclick = async () => {
      await api.acknowledgeNotice().catch((e) => showError(api.errorMessage(e)));
      $("notice").hidden = true;
    };
  }
  const p = await api.startupPath();
  if (p) await open(p);
}
start();
