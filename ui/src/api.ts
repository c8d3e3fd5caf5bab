// The only door to Rust: Tauri commands, the `analysis-progress` event and the binary
// `volume://` scheme (volumes and heat maps never travel as JSON arrays).
import { invoke, convertFileSrc } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

// The types that cross IPC are generated from the Rust types (ts-rs) into ./bindings:
// `make bindings` rewrites them; a Rust test fails while they are out of date.
import type { AppError } from "./bindings/AppError";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { AnalysisResult } from "./bindings/AnalysisResult";
import type { Described } from "./bindings/Described";
import type { EntryWeight } from "./bindings/EntryWeight";
import type { ExportResult } from "./bindings/ExportResult";
import type { Format } from "./bindings/Format";
import type { HeatmapRef } from "./bindings/HeatmapRef";
import type { LibraryStudy } from "./bindings/LibraryStudy";
import type { OpenedStudy } from "./bindings/OpenedStudy";
import type { MeasureInput } from "./bindings/MeasureInput";
import type { Measurement } from "./bindings/Measurement";
import type { PacsProgress } from "./bindings/PacsProgress";
import type { PacsRetrieved } from "./bindings/PacsRetrieved";
import type { SendPreview } from "./bindings/SendPreview";
import type { SendResult } from "./bindings/SendResult";
import type { ServerEntry } from "./bindings/ServerEntry";
import type { StudyMatch } from "./bindings/StudyMatch";
import type { StudyQuery } from "./bindings/StudyQuery";
import type { Progress } from "./bindings/Progress";
import type { Recalibration } from "./bindings/Recalibration";
import type { RecalibrationAction } from "./bindings/RecalibrationAction";
import type { ReviewAction } from "./bindings/ReviewAction";
import type { ReviewResult } from "./bindings/ReviewResult";
import type { ReviewStatus } from "./bindings/ReviewStatus";
import type { SearchHit } from "./bindings/SearchHit";
import type { SearchResult } from "./bindings/SearchResult";
import type { SettingsView } from "./bindings/SettingsView";
import type { SharedEntry } from "./bindings/SharedEntry";
import type { Verdict } from "./bindings/Verdict";
import type { VolumeSummary } from "./bindings/VolumeSummary";

export type { AppError, ErrorCode, AnalysisResult, ExportResult, Format, HeatmapRef, Progress, Recalibration, RecalibrationAction };
export type { ReviewAction, ReviewResult, SettingsView, Verdict, VolumeSummary };
export type { LibraryStudy, OpenedStudy, ReviewStatus, SearchHit, SearchResult };
export type { MeasureInput, Measurement };
export type { PacsProgress, PacsRetrieved, SendPreview, SendResult, ServerEntry, StudyMatch, StudyQuery };
export type { SeriesMatch } from "./bindings/SeriesMatch";
export type { Diagnosis } from "./bindings/Diagnosis";
export type { ScoredFinding } from "./bindings/ScoredFinding";
export type { SeriesInfo } from "./bindings/SeriesInfo";
export type { Warning } from "./bindings/Warning";
export type { Stage } from "./bindings/Stage";
export type { Task } from "./bindings/Task";
/** A proposed threshold for one label (`recalibrate::Proposal`). */
export type { Proposal as ThresholdProposal } from "./bindings/Proposal";

/** A knowledge-bank entry of any of the lists (`Described<EntryWeight>` or `Described<SharedEntry>`). */
export type BankEntry = Described<Partial<EntryWeight & SharedEntry> & { index: number }>;

/** The `code` of a command's error (undefined for anything that is not an AppError). */
export function errorCode(e: unknown): ErrorCode | undefined {
  return typeof e === "object" && e !== null && typeof (e as AppError).code === "string" ? (e as AppError).code : undefined;
}

/** A command's error as text for the user. */
export function errorMessage(e: unknown): string {
  if (typeof e === "object" && e !== null && typeof (e as AppError).message === "string") return (e as AppError).message;
  return String(e);
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

/** Threshold recalibration from the recorded verdicts: "propose" | "apply" | "revert". */
export const recalibrateThresholds = (action: RecalibrationAction) =>
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

// Feedback store and report export.
export const reviewFinding = (runId: number, label: string, action: ReviewAction) =>
  invoke<ReviewResult>("review_finding", { runId, label, action });
export const exportReport = (format: Format, deidentify: boolean, runId: number | null, exportAnyway: boolean) =>
  invoke<ExportResult | null>("export_report", { format, deidentify, runId, exportAnyway });

/** The current verdicts of a run in the feedback store (the same list `review_finding` answers). */
export const runVerdicts = (runId: number) => invoke<ReviewResult["verdicts"]>("run_verdicts", { runId });

// The study library (every study analysed here, with its latest run and review status).
export const libraryList = () => invoke<LibraryStudy[]>("library_list");
/** Open a library study and restore its latest analysis and verdicts (the model does not run). */
export const libraryOpen = (studyId: number) => invoke<OpenedStudy>("library_open", { studyId });
/** The library's studies ranked by a sentence (each study's score for it as a typed finding). */
export const librarySearch = (text: string, top: number | null = null) => invoke<SearchResult>("library_search", { text, top });
/** The studies whose images are most like this one's (cosine of the image embeddings). */
export const similarStudies = (studyId: number, top: number | null = null) => invoke<SearchResult>("similar_studies", { studyId, top });

// The PACS: named servers (secrets stay in the shell), search, retrieve into the library, send
// the reviewed report. The page names servers by name and studies by UID, never a path.
export const pacsServers = () => invoke<ServerEntry[]>("pacs_servers");
/** Add or edit a server; `secret` (password or token) null keeps the stored one. */
export const pacsSaveServer = (entry: ServerEntry, secret: string | null) => invoke<ServerEntry>("pacs_save_server", { entry, secret });
export const pacsRemoveServer = (name: string) => invoke<void>("pacs_remove_server", { name });
export const pacsTestServer = (name: string) => invoke<string>("pacs_test_server", { name });
export const pacsSearch = (name: string, query: StudyQuery) => invoke<StudyMatch[]>("pacs_search", { name, query });
/** Retrieve into the library (progress: `onPacsProgress`); then open it with `libraryOpen`. */
export const pacsRetrieve = (name: string, studyUid: string, seriesUid: string | null) =>
  invoke<PacsRetrieved>("pacs_retrieve", { name, studyUid, seriesUid });
export const pacsCancel = () => invoke<void>("pacs_cancel");
export const pacsSendPreview = (name: string) => invoke<SendPreview>("pacs_send_preview", { name });
export const pacsSendReport = (name: string, runId: number | null, exportAnyway: boolean) =>
  invoke<SendResult[]>("pacs_send_report", { name, runId, exportAnyway });
export const onPacsProgress = (f: (p: PacsProgress) => void): Promise<UnlistenFn> => listen<PacsProgress>("pacs-progress", (e) => f(e.payload));

// Measurements on the displayed study (computed by the shell in patient space, kept per study).
export const measurementAdd = (input: MeasureInput) => invoke<Measurement>("measurement_add", { input });
export const measurementsList = () => invoke<Measurement[]>("measurements_list");
export const measurementDelete = (id: number) => invoke<void>("measurement_delete", { id });
