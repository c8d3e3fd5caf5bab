// The only door to Rust: Tauri commands, the `analysis-progress` event and the binary
// `volume://` scheme (volumes and heat maps never travel as JSON arrays).
import { invoke, convertFileSrc } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

/** What a failed command answers: a stable `code` to branch on, and a message for people. */
export type ErrorCode =
  | "cancelled" // the user cancelled the work
  | "no_study" // no study is open
  | "no_model" // no usable model directory
  | "bad_input" // the file, folder or argument is not usable (the message names it)
  | "io" // reading or writing a file failed
  | "model" // the model failed to load or run
  | "store" // the feedback store refused or failed
  | "report" // the report could not be built or written
  | "internal"; // a bug: a worker stopped unexpectedly
export interface AppError { code: ErrorCode; message: string }

/** The `code` of a command's error (undefined for anything that is not an AppError). */
export function errorCode(e: unknown): ErrorCode | undefined {
  return typeof e === "object" && e !== null && typeof (e as AppError).code === "string" ? (e as AppError).code : undefined;
}

/** A command's error as text for the user. */
export function errorMessage(e: unknown): string {
  if (typeof e === "object" && e !== null && typeof (e as AppError).message === "string") return (e as AppError).message;
  return String(e);
}

export interface Warning { code: string; message: string }
export interface SeriesInfo {
  index: number; uid: string; grouped_by: string; modality: string; description: string;
  slice_count: number; dimensions: [number, number, number]; spacing: [number, number, number];
  transfer_syntaxes: string[]; warnings: Warning[];
}
export interface VolumeSummary {
  path: string; format: string; format_detail: string; modality: string | null; description: string | null;
  dims: [number, number, number]; spacing: [number, number, number]; orientation: string; source_orientation: string;
  affine_lps: number[][]; hu_min: number; hu_max: number; series: SeriesInfo[]; chosen: number;
  files_scanned: number; non_dicom_skipped: number; warnings: Warning[]; generation: number;
}

/** A knowledge-bank entry as `diagnose --json` writes it (fields flattened). */
export interface BankEntry {
  index: number;
  weight?: number;
  image_weight?: number;
  text_weight?: number;
  bridge?: number;
  description?: string;
}
export interface ScoredFinding {
  label: string; prompt: string; score: number; threshold: number | null; flagged: boolean | null; custom: boolean;
  bank?: { text_top: BankEntry[]; shared: BankEntry[] };
  heatmap?: string;
  /** Heat-map maximum (added by the report task; optional until then). */
  peak?: { voxel?: number[]; lps_mm?: number[] } | null;
}
export interface Diagnosis {
  disclaimer: string;
  model: { name: string; architecture: string; weights_sha256: string; synthetic: boolean; scoring: string };
  findings: ScoredFinding[];
  image_bank_top?: BankEntry[];
  timings: [string, number][];
  [key: string]: unknown;
}
export interface AnalysisResult {
  diagnosis: Diagnosis; model_dir: string; label_set: string; study_generation: number;
  /** Run id in the feedback store (absent until the store is wired, or when it could not record). */
  run_id?: number | null;
  store_error?: string | null;
}
export interface HeatmapRef { id: number; label: string }
export interface Progress { stage: string; fraction: number; task: string }
export interface SettingsView {
  model_dir: string | null; label_set: string | null; resolved_model: string | null; resolved_from: string; model_ok: boolean;
}

export const startupPath = () => invoke<string | null>("startup_path");
export const openPath = (path: string, series?: string) => invoke<VolumeSummary>("open_path", { path, series: series ?? null });
export const pickPath = (folder: boolean) => invoke<string | null>("pick_path", { folder });
export const pickModelDir = () => invoke<string | null>("pick_model_dir");
export const noticeStatus = () => invoke<boolean>("notice_status");
export const acknowledgeNotice = () => invoke<void>("acknowledge_notice");
export const getSettings = () => invoke<SettingsView>("get_settings");
export const setSettings = (modelDir: string | null, labelSet: string | null) =>
  invoke<SettingsView>("set_settings", { modelDir, labelSet });

export const runAnalysis = (labelSet?: string) => invoke<AnalysisResult>("run_analysis", { labelSet: labelSet ?? null });
export const scoreFinding = (text: string) => invoke<AnalysisResult>("score_finding", { text });
export const findingHeatmap = (label: string, custom: boolean) => invoke<HeatmapRef>("finding_heatmap", { label, custom });
export const cancelAnalysis = () => invoke<void>("cancel_analysis");

export interface ThresholdProposal {
  label: string;
  current: number | null;
  proposed: number | null;
  changed: boolean;
  positives: number;
  negatives: number;
  false_positives_flagged_before: number;
  false_positives_flagged_after: number;
  note?: string;
}
export interface Recalibration {
  model_dir: string;
  proposals: ThresholdProposal[];
  applied: { id: number; kind: string } | null;
  reverted: { id: number; kind: string } | null;
}
/** Threshold recalibration from the recorded verdicts: "propose" | "apply" | "revert". */
export const recalibrateThresholds = (action: "propose" | "apply" | "revert") =>
  invoke<Recalibration>("recalibrate_thresholds", { action });
/** File / Help menu items chosen in the native menu bar ("open-file", "open-folder", "help"). */
export const onMenu = (f: (id: string) => void): Promise<UnlistenFn> => listen<string>("menu", (e) => f(e.payload));
export const onProgress = (f: (p: Progress) => void): Promise<UnlistenFn> =>
  listen<Progress>("analysis-progress", (e) => f(e.payload));

/** `volume://localhost/<resource>` (or `http://volume.localhost/` where the platform wants it). */
export function schemeUrl(resource: string): string {
  const base = convertFileSrc("x", "volume");
  return base.slice(0, -1) + resource;
}

async function fetchBinary(resource: string): Promise<ArrayBuffer> {
  const res = await fetch(schemeUrl(resource));
  if (!res.ok) throw new Error(`${resource}: transfer failed: ${res.status} ${await res.text()}`);
  return res.arrayBuffer();
}

/** The displayed volume's voxels: int16 HU, canonical LPS order, i fastest. */
export async function fetchVoxels(generation: number): Promise<Int16Array> {
  return new Int16Array(await fetchBinary(`voxels?g=${generation}`));
}

/** One axial plane (k along the superior axis) of the displayed volume, int16 HU. */
export async function fetchSlice(k: number): Promise<Int16Array> {
  return new Int16Array(await fetchBinary(`slice/${k}`));
}

/** A heat map from `findingHeatmap`, still encoded (see viewer/heatmap.ts). */
export const fetchHeatmap = (id: number) => fetchBinary(`heatmap/${id}`);

// Feedback store and report export (commands answer an error until the backend has them).
export interface ReviewResult { event_id: number; verdicts: unknown[] }
export const reviewFinding = (runId: number, label: string, action: unknown) =>
  invoke<ReviewResult>("review_finding", { runId, label, action });
export interface ExportResult { path: string; format: string }
export const exportReport = (format: string, deidentify: boolean, runId: number | null, exportAnyway: boolean) =>
  invoke<ExportResult | null>("export_report", { format, deidentify, runId, exportAnyway, output: null });

/** The current verdicts of a run in the feedback store (the same list `review_finding` answers). */
export const runVerdicts = (runId: number) => invoke<ReviewResult["verdicts"]>("run_verdicts", { runId });
