// Stand-in for the Rust side in UI-only tests: mockIPC answers the commands the UI calls and
// records every call in window.__calls; progress events go through the mocked event plugin.
// Binary resources use the http://volume.localhost/ form (mockConvertFileSrc("windows")), which
// the test serves with page.route.
import { mockConvertFileSrc, mockIPC, mockWindows } from "@tauri-apps/api/mocks";

type Args = Record<string, unknown> | undefined;
const w = window as unknown as {
  __calls: [string, Args][];
  __TAURI_INTERNALS__: { invoke: (c: string, a: unknown) => Promise<unknown> };
  __cancel?: () => void;
  __slowAnalysis?: boolean;
  /** When set, review_finding answers this store error. */
  __storeError?: string;
  /** How many studies library_list answers (default 3). */
  __libraryCount?: number;
};
w.__calls = [];

// A feedback store in memory: append-only events per run, the current verdict per label (the
// latest event that is not an undo and was not undone), as radbridge_store answers them.
type Ev = { id: number; run: number; label: string; action: { action: string; event?: number; reason?: string | null; note?: string | null; text?: string } };
const events: Ev[] = [];
// Library study 1's latest run (1000) was reviewed before: Atelectasis confirmed.
events.push({ id: 90, run: 1000, label: "Atelectasis", action: { action: "confirm" } });
const verdicts = (run: number) => {
  const mine = events.filter((e) => e.run === run);
  const undone = new Set(mine.filter((e) => e.action.action === "undo").map((e) => e.action.event));
  const latest = new Map<string, Ev>();
  for (const e of mine) if (e.action.action !== "undo" && !undone.has(e.id)) latest.set(e.label, e);
  const kind: Record<string, string> = { confirm: "confirmed", false_positive: "false_positive", missed: "missed" };
  return [...latest.values()].map((e) => ({
    label: e.label, verdict: kind[e.action.action], reason: e.action.reason ?? null, note: e.action.note ?? null, text: e.action.text ?? null,
    event: e.id, reviewer: null, at: "2026-12-07T00:00:00.000Z", score: null, threshold: null, flagged: null,
  }));
};

const dims = [64, 48, 20];
const affine = [[-0.8, 0, 0, 25], [0, -0.8, 0, 19], [0, 0, 2.5, -20], [0, 0, 0, 1]];
const bank = (n: number, base: number) => Array.from({ length: n }, (_, i) => ({ index: base + i, weight: 0.5 - i * 0.05, description: `entry ${base + i}: ${["effusion", "atelectasis", "nodule", "vessel", "rib"][i % 5]} pattern` }));
const finding = (label: string, score: number, threshold: number | null, custom = false) => ({
  label, prompt: `There is ${label}.`, score, threshold, flagged: threshold === null ? null : score > threshold, custom,
  bank: { text_top: bank(3, 100), shared: bank(2, 200).map((e) => ({ index: e.index, image_weight: 0.3, text_weight: 0.2, bridge: 0.06, description: e.description })) },
});
const diagnosis = (findings: unknown[]) => ({
  disclaimer: "Research use only.",
  model: { name: "mock", architecture: "brgsa", weights_sha256: "0".repeat(64), synthetic: true, scoring: "brgsa_mean_cosine" },
  findings, image_bank_top: bank(4, 10), timings: [["score", 0.01]],
});
const emit = (stage: string, fraction: number, task = "analysis") =>
  w.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "analysis-progress", payload: { stage, fraction, task } });
let nextRun = 7;
const summary = (path: string, generation: number) => ({
  path, format: "nifti", format_detail: "NIfTI-1", modality: "CT", description: null,
  dims, spacing: [0.8, 0.8, 2.5], orientation: "LPS", source_orientation: "RAS", affine_lps: affine, hu_min: -1024, hu_max: 1500,
  series: [{ index: 0, uid: "1", grouped_by: "uid", modality: "CT", description: "chest", slice_count: 20, dimensions: dims, spacing: [0.8, 0.8, 2.5], transfer_syntaxes: [], warnings: [] }],
  chosen: 0, files_scanned: 1, non_dicom_skipped: 0,
  warnings: [{ code: "uneven_spacing", message: "slice spacing varies" }, { code: "gantry_tilt", message: "gantry tilt 5°" }],
  generation,
});
// The study library: n studies, dates spread over 2010-2024, every status, 0-3 flagged.
const STATUSES = ["new", "analysed", "in_review", "reviewed", "reported"];
const pad = (x: number) => String(x).padStart(2, "0");
const study = (i: number) => ({
  id: i + 1, path: `/data/library/study${i + 1}`, origin: "app", modality: "CT",
  study_date: `20${pad(10 + (i % 15))}${pad(1 + (i % 12))}${pad(1 + (i % 28))}`,
  description: `CHEST CT ${i + 1}`, series: [], runs: 1, last_run: 1000 + i, model_name: "mock", model_checksum: "0".repeat(64),
  analysed_at: "2026-12-07T00:00:00Z", flagged: i % 4, decided: i % 4 === 3 ? 1 : 0, status: STATUSES[i % 5],
});
const libraryCount = () => w.__libraryCount ?? 3;
const hits = (ids: number[], top: number) =>
  ids.slice(0, top).map((id, k) => {
    const s = study(id - 1);
    return { study_id: id, score: 0.5 - 0.0125 * k, path: s.path, description: s.description, study_date: s.study_date, status: s.status };
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

mockWindows("main");
mockConvertFileSrc("windows");
mockIPC(
  async (cmd, args) => {
    w.__calls.push([cmd, args as Args]);
    switch (cmd) {
      case "startup_path": return "/data/chest_ct.nii.gz";
      case "notice_status": return false;
      case "acknowledge_notice": return null;
      case "get_settings": return { model_dir: null, label_set: null, resolved_model: "/repo/models/demo", resolved_from: "demo model", model_ok: true };
      case "set_settings": return { model_dir: (args as { modelDir: string }).modelDir || null, label_set: null, resolved_model: "/x", resolved_from: "settings", model_ok: false };
      case "open_path": return summary((args as { path: string }).path, 1);
      case "run_analysis": {
        // Cancel works from the moment the run starts (a click right after a stage showed must not be lost).
        const cancelled = new Promise<void>((resolve) => (w.__cancel = resolve));
        for (const [s, f] of [["load model", 0], ["preprocess", 0], ["encode image", 0.2]] as [string, number][]) { await emit(s, f); await sleep(30); }
        if (w.__slowAnalysis) {
          await cancelled;
          throw { code: "cancelled", message: "cancelled" };
        }
        for (const [s, f] of [["encode text", 0.7], ["score", 0.9], ["done", 1]] as [string, number][]) { await emit(s, f); await sleep(30); }
        return {
          diagnosis: diagnosis([finding("Atelectasis", 0.31, 0.25), finding("Emphysema", 0.12, 0.2), finding("Pleural effusion", 0.44, 0.3), finding("Lung nodule", 0.05, null)]),
          model_dir: "/repo/models/demo", label_set: "all", study_generation: 1, run_id: nextRun++,
        };
      }
      case "pick_path": return (args as { folder: boolean }).folder ? "/data/dicom_folder" : "/data/other.nii.gz";
      case "pick_model_dir": return "/models/other";
      case "cancel_analysis": w.__cancel?.(); return null;
      case "score_finding": return { diagnosis: diagnosis([finding((args as { text: string }).text, 0.22, null, true)]), model_dir: "/m", label_set: "all", study_generation: 1 };
      case "finding_heatmap": return { id: 0, label: (args as { label: string }).label };
      case "review_finding": {
        if (w.__storeError) throw { code: "store", message: w.__storeError };
        const a = args as { runId: number; label: string; action: Ev["action"] };
        const id = 100 + w.__calls.filter((c) => c[0] === "review_finding").length;
        events.push({ id, run: a.runId, label: a.label, action: a.action });
        return { event_id: id, verdicts: verdicts(a.runId) };
      }
      case "run_verdicts": return verdicts((args as { runId: number }).runId);
      case "export_report": return { path: "/tmp/report.pdf", format: (args as { format: string }).format };
      case "library_list": return Array.from({ length: libraryCount() }, (_, i) => study(i));
      case "library_open": {
        const id = (args as { studyId: number }).studyId;
        if (id < 1 || id > libraryCount()) throw { code: "store", message: `no study ${id} in the library` };
        const s = study(id - 1);
        return {
          volume: summary(s.path, 2), study: s, verdicts: verdicts(s.last_run), restore_error: null,
          result: {
            diagnosis: diagnosis([finding("Atelectasis", 0.31, 0.25), finding("Emphysema", 0.12, 0.2), finding("Pleural effusion", 0.44, 0.3)]),
            model_dir: "/repo/models/demo", label_set: "all", study_generation: 2, run_id: s.last_run, store_error: null,
          },
        };
      }
      case "library_search": {
        const a = args as { text: string; top: number | null };
        if (!a.text.trim()) throw { code: "bad_input", message: "type a sentence first" };
        const ids = Array.from({ length: libraryCount() }, (_, i) => libraryCount() - i);
        return { hits: hits(ids, a.top ?? 20), searched: libraryCount(), skipped: 1, model_name: "mock" };
      }
      case "similar_studies": {
        const a = args as { studyId: number; top: number | null };
        const ids = Array.from({ length: libraryCount() }, (_, i) => i + 1).filter((i) => i !== a.studyId);
        return { hits: hits(ids, a.top ?? 20), searched: libraryCount(), skipped: 0, model_name: "mock" };
      }
      default: throw { code: "internal", message: `unknown command ${cmd}` };
    }
  },
  { shouldMockEvents: true },
);
