// The panels as views of the state: each subscribes to the slices it shows and redraws only
// when they change. Actions (clicks, forms) stay in main.ts and change the state.
import type * as api from "./api";
import { $, el } from "./dom";
import { allFindings, openStudyId, shallow, type AppStore, type SearchState } from "./state";
import { renderFindings } from "./findings/findings";
import { renderProgress } from "./findings/progress";
import { renderKnowledge } from "./knowledge/knowledge";
import { describeEvent } from "./feedback/log";
import { rowVerdict, undoTarget } from "./feedback/verdicts";
import { describeModel } from "./settings/settings";
import { describeSearch, hitRow, studyRow, VirtualList } from "./library/library";
import { STATUSES, statusText, studies, worklist, type SortKey } from "./library/worklist";

function showText(id: string, msg: string | null) {
  const box = $(id);
  box.hidden = !msg;
  box.textContent = msg ?? "";
}

function row(label: string, value: string) {
  return el("div", {}, el("span", { text: label }), el("span", { text: value }));
}

export function renderStudy(s: api.VolumeSummary, openSeries: (path: string, series: string) => void) {
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
      li.onclick = () => se.index !== s.chosen && openSeries(s.path, String(se.index));
      return li;
    }),
  );
  const warnings = s.warnings.map((w) => el("li", { "data-testid": "load-warning", "data-code": w.code, text: w.message }));
  $("warnings").replaceChildren(...(warnings.length ? warnings : [el("li", { class: "muted", style: "background:transparent;border:none", text: "none" })]));
}

/** Study, series and warnings (left); the load error. */
export function mountStudy(store: AppStore, openSeries: (path: string, series: string) => void) {
  store.subscribe((s) => s.study, (study) => {
    if (!study) return;
    renderStudy(study, openSeries);
    document.title = `Radbridge — ${study.path}`;
  });
  store.subscribe((s) => s.loadError, (e) => showText("error-box", e), { immediate: true });
}

/** The model line: the analysis' model once there is one, else what the settings resolve to. */
export function modelLine(result: api.AnalysisResult | null, settings: api.SettingsView | null): string {
  if (result) {
    const d = result.diagnosis;
    return `${d.model.name} (${d.model.architecture}${d.model.synthetic ? ", synthetic-data demo" : ""}), ${result.label_set}: ${d.findings.length} findings`;
  }
  return settings ? describeModel(settings) : "";
}

/** Run / cancel, the model line, progress bars and the analysis error. */
export function mountAnalysis(store: AppStore) {
  store.subscribe((s) => [s.study, s.busy] as const, ([study, busy]) => {
    $<HTMLButtonElement>("run-analysis").disabled = !study || busy;
    $("cancel-analysis").hidden = !busy;
  }, { equals: shallow, immediate: true });
  store.subscribe((s) => [s.result, s.settings] as const, ([result, settings]) => ($("model-line").textContent = modelLine(result, settings)), {
    equals: shallow,
    immediate: true,
  });
  // A warning about this model on this study (a synthetic-data demo model on a real CT).
  store.subscribe((s) => s.result?.diagnosis.model.notice ?? null, (notice) => {
    const box = $("model-notice");
    box.textContent = notice ?? "";
    box.hidden = !notice;
  }, { immediate: true });
  store.subscribe((s) => s.progress, (p) => {
    const box = $("progress");
    box.hidden = !p;
    if (p) renderProgress(box, p.stages, p.current);
  }, { immediate: true });
  store.subscribe((s) => s.analysisError, (e) => showText("analysis-error", e), { immediate: true });
}

/** The findings list with the store's verdicts, and the typed-finding form. */
export function mountFindings(store: AppStore, select: (f: api.ScoredFinding) => void) {
  store.subscribe(
    (s) => [s.result, s.typed, s.selected?.label ?? null, s.verdicts] as const,
    ([, , selected, verdicts]) => renderFindings($("findings"), allFindings(store.get()), selected, (l) => rowVerdict(verdicts, l), select),
    { equals: shallow, immediate: true },
  );
  store.subscribe((s) => !s.result || s.busy, (off) => {
    for (const id of ["finding-input", "finding-score", "missed-input", "add-missed", "export-report", "pacs-send"]) $<HTMLButtonElement>(id).disabled = off;
  }, { immediate: true });
}

/** The knowledge-bank entries behind the selected finding. */
export function mountKnowledge(store: AppStore) {
  store.subscribe((s) => [s.result?.diagnosis ?? null, s.selected] as const, ([d, f]) => renderKnowledge($("knowledge"), d, f), { equals: shallow, immediate: true });
}

/** Review: the target, the buttons, and this session's recorded events. */
export function mountReview(store: AppStore) {
  store.subscribe((s) => s.selected, (f) => {
    for (const id of ["confirm-finding", "mark-false-positive"]) $<HTMLButtonElement>(id).disabled = !f;
    $("feedback-target").textContent = f ? `${f.label} — score ${f.score.toFixed(3)}` : "Select a finding.";
  }, { immediate: true });
  store.subscribe((s) => undoTarget(s.verdicts) === null, (none) => ($<HTMLButtonElement>("undo-feedback").disabled = none), { immediate: true });
  store.subscribe((s) => s.events, (events) => {
    $("feedback-events").replaceChildren(
      ...events.map((e) => el("li", { "data-testid": "feedback-event", "data-action": e.action.action, "data-label": e.label, text: describeEvent(e) })),
    );
  }, { immediate: true });
}

/** The heat-map line and controls under the viewer. */
export function mountOverlay(store: AppStore) {
  store.subscribe((s) => s.overlay, (o) => {
    const info = $("overlay-info");
    info.textContent = o?.text ?? "";
    if (o) {
      info.dataset.state = o.state;
      if (o.state === "shown") info.dataset.label = o.label;
    }
  }, { immediate: true });
  store.subscribe((s) => s.overlayControls, (on) => {
    $<HTMLInputElement>("overlay-toggle").disabled = !on;
    $<HTMLInputElement>("overlay-opacity").disabled = !on;
  }, { immediate: true });
}

function renderHits(list: HTMLElement, info: HTMLElement, s: SearchState | null, testid: "search-result" | "similar-study", what: string, open: (id: number) => void) {
  list.replaceChildren(...(s?.result?.hits ?? []).map((h) => hitRow(h, testid, open)));
  info.textContent = !s ? "" : s.busy ? "searching…" : s.error ?? (s.result ? describeSearch(s.result, what) : "");
  info.classList.toggle("error-text", !!s?.error);
}

/**
 * The Library panel: the worklist (virtual: only the rows on screen are drawn), its sort and
 * filters, the text search; and "Similar studies" for the open study (left). `open` opens a
 * library study; `painted` is called once a listed worklist is in the DOM.
 */
export function mountLibrary(store: AppStore, open: (id: number) => void, painted: (rows: number) => void) {
  let current: number | null = null;
  const vlist = new VirtualList($("library-list"), (st: api.LibraryStudy) => studyRow(st, st.id === current, open));
  for (const st of STATUSES) $("library-status").append(el("option", { value: st, text: statusText(st) }));
  store.subscribe((s) => s.libraryOpen, (on) => {
    $("library").hidden = !on;
    $("library-open").classList.toggle("active", on);
    if (on) vlist.render(true); // its size is known now
  }, { immediate: true });
  store.subscribe((s) => [s.library, s.libraryView] as const, ([list, view], prev) => {
    if (!list) return;
    const rows = worklist(list, view);
    vlist.setItems(rows, view !== prev[1]);
    $("library-count").textContent = rows.length === list.length ? studies(list.length) : `${rows.length} of ${studies(list.length)}`;
    $("library-empty").hidden = list.length > 0;
    painted(vlist.rendered);
  }, { equals: shallow });
  store.subscribe((s) => s.libraryView, (view) => {
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-sort]")) {
      const on = b.dataset.sort === (view.sort as SortKey);
      b.classList.toggle("active", on);
      b.setAttribute("aria-sort", on ? (view.desc ? "descending" : "ascending") : "none");
      b.dataset.dir = on ? (view.desc ? "desc" : "asc") : "";
    }
  }, { immediate: true });
  store.subscribe((s) => openStudyId(s), (id) => {
    current = id;
    vlist.render(true);
  }, { immediate: true });
  store.subscribe((s) => s.libraryError, (e) => showText("library-error", e), { immediate: true });
  store.subscribe((s) => s.search, (se) => renderHits($("search-results"), $("search-info"), se, "search-result", "ranked", open), { immediate: true });
  store.subscribe((s) => s.similar, (se) => renderHits($("similar-list"), $("similar-info"), se, "similar-study", "compared", open), { immediate: true });
  store.subscribe((s) => [s.study, s.result?.run_id ?? null, s.libraryStudyId, s.similar?.busy ?? false] as const, ([study, run, id, busy]) => {
    $<HTMLButtonElement>("similar-find").disabled = !study || (run == null && id == null) || busy;
  }, { equals: shallow, immediate: true });
}
