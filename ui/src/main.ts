// Wiring: the state (state.ts) is the one source of what the panels show; panels.ts subscribes
// each panel to its slices; the actions below call Rust (api.ts is the only door) and set the
// state. Panels: study (left), viewer (centre), analysis / findings / review / knowledge /
// report (right).
import * as api from "./api";
import { $, el } from "./dom";
import { PRESETS } from "./presets";
import { mark, resetMarks } from "./perf/marks";
import { installTestHooks } from "./perf/hooks";
import { Viewer } from "./viewer/viewer";
import { parseHeatmap } from "./viewer/heatmap";
import { STAGES } from "./findings/progress";
import { REASONS, falsePositive } from "./feedback/log";
import { undoTarget } from "./feedback/verdicts";
import { loadVerdicts, review } from "./feedback/review";
import { storeVerdicts } from "./feedback/verdicts";
import { bindPacs } from "./pacs/dialog";
import { LAYOUTS, isLayout } from "./viewer/layout";
import type { SlabMode } from "./viewer/slab";
import { bindMeasure, refreshMeasurements } from "./measure/tools";
import { clickSort, type SortKey } from "./library/worklist";
import { bindReport } from "./report/report";
import { bindSettings } from "./settings/settings";
import { clearedAnalysis, createStore, initialState, openStudyId, type AppState } from "./state";
import { mountAnalysis, mountFindings, mountKnowledge, mountLibrary, mountOverlay, mountReview, mountStudy } from "./panels";

const store = createStore(initialState());
const viewer = new Viewer($("viewer"));
/** Bumped by every heat-map request (and by clearing the analysis): a late answer is dropped. */
let selectToken = 0;

// The viewer's readouts (cursor position and HU, window / level) change many times a second
// while the reader scrolls or drags: they write their two lines directly, not through the state.
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

mountStudy(store, (path, series) => void open(path, series));
mountAnalysis(store);
mountFindings(store, (f) => void select(f));
mountKnowledge(store);
mountReview(store);
mountOverlay(store);
mountLibrary(store, (id) => void openFromLibrary(id), () => {
  // First paint of the listed worklist: the frame after the rows are in the DOM.
  if (!libraryListing) return;
  libraryListing = false;
  mark("library_rows");
  requestAnimationFrame(() => setTimeout(() => mark("library_painted"), 0));
});

function clearAnalysis() {
  selectToken++;
  viewer.clearOverlay();
  store.set(clearedAnalysis());
}

/** What opening gives: the volume and, from the library, the state it restores. */
interface Opened {
  summary: api.VolumeSummary;
  restore?: Partial<AppState>;
}

/** Show a study: `fetch` opens it in the shell; the voxels follow. */
async function show(what: string, fetch: () => Promise<Opened>) {
  resetMarks();
  mark("open_start");
  $("status").textContent = `loading ${what} …`;
  try {
    const { summary: s, restore } = await fetch();
    mark("summary");
    clearAnalysis();
    store.set({ study: s, loadError: null, similar: null, libraryStudyId: null, ...restore });
    if (restore?.result) mark("analysis_restored");
    const k = s.dims[2] >> 1;
    const slice = await api.fetchSlice(k);
    viewer.showPreview(slice, s.dims, s.spacing);
    const voxels = await api.fetchVoxels(s.generation);
    mark("voxels_fetched");
    if (voxels.length !== s.dims[0] * s.dims[1] * s.dims[2]) throw new Error("volume transfer was incomplete");
    await viewer.load(voxels, s.dims, s.affine_lps);
    $("status").textContent = "";
    void refreshMeasurements();
  } catch (e) {
    // The previous volume stays on screen; the error names the file and the problem.
    store.set({ loadError: api.errorMessage(e) });
    $("status").textContent = "";
  }
}

const open = (path: string, series?: string) => show(path, async () => ({ summary: await api.openPath(path, series) }));

/** Open a library study with its latest analysis and verdicts as recorded (no model run). */
async function openFromLibrary(id: number) {
  if (store.get().busy) return;
  store.set({ libraryOpen: false });
  const title = store.get().library?.find((s) => s.id === id)?.path ?? `library study ${id}`;
  await show(title, async () => {
    const o = await api.libraryOpen(id);
    const analysisError = o.restore_error ? `the recorded analysis cannot be shown: ${o.restore_error}` : null;
    return { summary: o.volume, restore: { result: o.result, verdicts: storeVerdicts(o.verdicts), libraryStudyId: o.study.id, analysisError } };
  });
}

/** Set when the Library button asked for the list: the next listed worklist marks its paint. */
let libraryListing = false;

async function showLibrary() {
  mark("library_open");
  libraryListing = true;
  store.set({ libraryOpen: true, libraryError: null });
  try {
    store.set({ library: await api.libraryList() });
  } catch (e) {
    libraryListing = false;
    store.set({ libraryError: `library: ${api.errorMessage(e)}` });
  }
}

async function searchLibrary(text: string) {
  store.set({ search: { busy: true, result: store.get().search?.result ?? null, error: null } });
  try {
    store.set({ search: { busy: false, result: await api.librarySearch(text, 50), error: null } });
  } catch (e) {
    store.set({ search: { busy: false, result: null, error: api.errorMessage(e) } });
  }
}

async function findSimilar() {
  let id = openStudyId(store.get());
  if (id == null && store.get().result?.run_id != null) {
    // Analysed since the library was listed: find the study by its latest run.
    try {
      store.set({ library: await api.libraryList() });
    } catch (e) {
      store.set({ similar: { busy: false, result: null, error: api.errorMessage(e) } });
      return;
    }
    id = openStudyId(store.get());
  }
  if (id == null) {
    store.set({ similar: { busy: false, result: null, error: "this study is not in the library yet: run the analysis first" } });
    return;
  }
  store.set({ similar: { busy: true, result: null, error: null } });
  try {
    store.set({ similar: { busy: false, result: await api.similarStudies(id, 10), error: null } });
  } catch (e) {
    store.set({ similar: { busy: false, result: null, error: api.errorMessage(e) } });
  }
}

async function pick(folder: boolean) {
  let p: string | null;
  try {
    p = await api.pickPath(folder);
  } catch (e) {
    store.set({ loadError: api.errorMessage(e) });
    return;
  }
  if (p) await open(p);
}

api.onProgress((p) => {
  const s = store.get();
  if (p.task !== s.progressTask || !s.progress) return;
  store.set({ progress: { stages: STAGES, current: p.stage } });
}).catch(() => {});

async function runAnalysis() {
  if (!store.get().study || store.get().busy) return;
  clearAnalysis();
  const stages = STAGES.slice(0, 5);
  store.set({ progressTask: "analysis", progress: { stages, current: null }, busy: true });
  mark("analysis_start");
  try {
    const result = await api.runAnalysis();
    mark("analysis_done");
    store.set({ result, progress: { stages, current: "done" }, analysisError: result.store_error ? `feedback store: ${result.store_error}` : null });
    if (result.run_id != null) void loadVerdicts(store, result.run_id);
  } catch (e) {
    store.set({ analysisError: api.errorCode(e) === "cancelled" ? "Analysis cancelled." : api.errorMessage(e) });
  }
  store.set({ busy: false });
}

async function select(f: api.ScoredFinding) {
  const token = ++selectToken;
  store.set({ selected: f, overlay: { state: "loading", label: f.label, text: `heat map for “${f.label}”…` } });
  try {
    let id = store.get().heatmaps[f.label];
    if (id === undefined) {
      const result = store.get().result;
      store.set({ progressTask: "heatmap" });
      const ref = await api.findingHeatmap(f.label, f.custom);
      id = ref.id;
      if (store.get().result === result) store.update((s) => ({ heatmaps: { ...s.heatmaps, [f.label]: ref.id } }));
    }
    const h = parseHeatmap(await api.fetchHeatmap(id));
    if (token !== selectToken) return;
    // The maximum of the map on screen (the CT grid), rather than the diagnosis' patch-grid peak.
    const lps = await viewer.setOverlay(h);
    viewer.jumpTo(lps);
    const text = `heat map: ${f.label} — peak at LPS (${lps.map((x) => x.toFixed(0)).join(", ")}) mm`;
    store.set({ overlayControls: true, overlay: { state: "shown", label: f.label, text } });
    mark("overlay_shown");
  } catch (e) {
    if (token !== selectToken) return;
    store.set({ overlay: { state: "error", label: f.label, text: `no heat map: ${api.errorMessage(e)}` } });
  }
}

async function scoreTyped(text: string) {
  store.set({ progressTask: "finding", busy: true });
  try {
    const r = await api.scoreFinding(text);
    const f = r.diagnosis.findings[0];
    if (!f) throw new Error(`no score for “${text}”`);
    store.update((s) => ({ typed: [...s.typed.filter((t) => t.label !== f.label), f], busy: false }));
    $<HTMLInputElement>("finding-input").value = "";
    void select(f);
  } catch (err) {
    store.set({ analysisError: api.errorMessage(err), busy: false });
  }
}

api.onMenu((id) => {
  if (id === "open-file") pick(false);
  else if (id === "open-folder") pick(true);
  else if (id === "help") $("help").hidden = false;
}).catch(() => {});

$("run-analysis").onclick = runAnalysis;
$("cancel-analysis").onclick = () => api.cancelAnalysis();
$("confirm-finding").onclick = () => {
  const f = store.get().selected;
  if (f) void review(store, f.label, { action: "confirm" });
};
$("mark-false-positive").onclick = () => {
  const f = store.get().selected;
  if (f) void review(store, f.label, falsePositive($<HTMLSelectElement>("fp-reason").value, $<HTMLInputElement>("fp-note").value));
};
$("undo-feedback").onclick = () => {
  const last = undoTarget(store.get().verdicts);
  if (last) void review(store, last.label, { action: "undo", event: last.event });
};
$("missed-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("missed-input").value.trim();
  if (!text) return;
  $<HTMLInputElement>("missed-input").value = "";
  void review(store, text, { action: "missed", text });
};
$("finding-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("finding-input").value.trim();
  if (text && !store.get().busy) void scoreTyped(text);
};
$("overlay-toggle").onchange = () => viewer.setOverlayVisible($<HTMLInputElement>("overlay-toggle").checked);
$("overlay-opacity").oninput = () => viewer.setOverlayOpacity(Number($<HTMLInputElement>("overlay-opacity").value));
$("open-file").onclick = () => pick(false);
$("open-folder").onclick = () => pick(true);
$("help-button").onclick = () => ($("help").hidden = false);
$("library-open").onclick = () => (store.get().libraryOpen ? store.set({ libraryOpen: false }) : void showLibrary());
$("library-close").onclick = () => store.set({ libraryOpen: false });
$("library-filter").oninput = () => store.update((s) => ({ libraryView: { ...s.libraryView, text: $<HTMLInputElement>("library-filter").value } }));
$("library-status").onchange = () =>
  store.update((s) => ({ libraryView: { ...s.libraryView, status: $<HTMLSelectElement>("library-status").value as AppState["libraryView"]["status"] } }));
for (const b of document.querySelectorAll<HTMLButtonElement>("[data-sort]")) {
  b.onclick = () => store.update((s) => ({ libraryView: clickSort(s.libraryView, b.dataset.sort as SortKey) }));
}
$("library-search-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>("library-search").value.trim();
  if (text) void searchLibrary(text);
  else store.set({ search: { busy: false, result: null, error: "type a sentence first" } });
};
$("similar-find").onclick = () => void findSimilar();
$("help-close").onclick = () => ($("help").hidden = true);
bindReport(() => store.get().result?.run_id ?? null, () => {});
bindMeasure(viewer);
bindPacs({ openStudy: openFromLibrary, runId: () => store.get().result?.run_id ?? null });
{
  const sel = $<HTMLSelectElement>("layout-select");
  sel.replaceChildren(...LAYOUTS.map((l) => el("option", { value: l.value, text: l.label })));
  sel.value = viewer.layout;
  sel.onchange = () => isLayout(sel.value) && viewer.setLayout(sel.value);
  viewer.onLayout = (l) => (sel.value = l);
  const thick = $<HTMLInputElement>("slab-thickness");
  const mode = $<HTMLSelectElement>("slab-mode");
  const applySlab = () => {
    try {
      viewer.setSlab(Math.min(100, Number(thick.value)), mode.value as SlabMode);
    } catch (e) {
      $("slab-info").textContent = e instanceof Error ? e.message : String(e);
    }
  };
  thick.onchange = applySlab;
  mode.onchange = applySlab;
  viewer.onSlab = (t) => {
    $("slab-info").textContent = t ?? "";
    if (!t) thick.value = "0";
  };
}
bindSettings((settings) => store.set({ settings }));

document.addEventListener("keydown", (e) => {
  const t = e.target as HTMLElement;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
  if (e.ctrlKey && e.key.toLowerCase() === "o") { e.preventDefault(); pick(e.shiftKey); return; }
  if (e.key === "?") { $("help").hidden = !$("help").hidden; return; }
  if (e.key === "Escape") { $("help").hidden = true; $("settings").hidden = true; $("pacs").hidden = true; store.set({ libraryOpen: false }); return; }
  if (store.get().libraryOpen) return; // the worklist scrolls with the keys
  const preset = Object.values(PRESETS).find((p) => p.key === e.key);
  if (preset) { viewer.setWindow(preset); return; }
  if (e.key === "i" || e.key === "I") { viewer.invert(); return; }
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

// Drag and drop a file or folder onto the window: the shell receives the drop, lets the page
// open that path, and tells the page which one (the page cannot open paths of its own).
import("@tauri-apps/api/event")
  .then(({ listen }) => listen<string>("study-dropped", (ev) => open(ev.payload)))
  .catch(() => {});

installTestHooks(viewer, open, () => store.get().result?.run_id ?? null);

async function start() {
  viewer.setWindow(PRESETS.soft_tissue);
  if (!(await api.noticeStatus())) {
    $("notice").hidden = false;
    $("acknowledge").onclick = async () => {
      await api.acknowledgeNotice().catch((e) => store.set({ loadError: api.errorMessage(e) }));
      $("notice").hidden = true;
    };
  }
  const p = await api.startupPath();
  if (p) await open(p);
}
start();
