// The worklist's pure logic: which studies a filter keeps, in which order, and how a row
// reads (no DOM here; library.ts draws).
import type { LibraryStudy, ReviewStatus } from "../api";

export type SortKey = "date" | "status" | "flagged";

/** What the reader chose: the sort column and direction, the status and the text filter. */
export interface WorklistView {
  sort: SortKey;
  desc: boolean;
  status: ReviewStatus | "";
  text: string;
}

export const DEFAULT_VIEW: WorklistView = { sort: "date", desc: true, status: "", text: "" };

/** The review statuses in workflow order (how the status column sorts). */
export const STATUSES: readonly ReviewStatus[] = ["new", "analysed", "in_review", "reviewed", "reported"];

export function statusText(s: ReviewStatus): string {
  return s === "in_review" ? "in review" : s;
}

/** "20240102" → "2024-01-02"; anything else as it is; none → "". */
export function formatDate(d: string | null | undefined): string {
  if (!d) return "";
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : d;
}

/** The date a study sorts by: its StudyDate, else the day of its latest analysis (YYYYMMDD). */
export function sortDate(s: LibraryStudy): string {
  if (s.study_date) return s.study_date;
  return s.analysed_at ? s.analysed_at.slice(0, 10).replaceAll("-", "") : "";
}

/** What a row calls the study: its description, else the last part of its path. */
export function studyTitle(s: Pick<LibraryStudy, "description" | "path">): string {
  return s.description || s.path.split("/").filter(Boolean).pop() || s.path;
}

/** The text a filter word matches: description, path, model, modality, date and status. */
function haystack(s: LibraryStudy): string {
  return [s.description, s.path, s.model_name, s.modality, s.study_date, formatDate(s.study_date), statusText(s.status)]
    .filter(Boolean)
    .join("\n")
    .toLowerCase();
}

/** Does one filter word match the study? "#42" is the study id 42 exactly; any other word is
 * a case-insensitive part of its description, path, model, modality, date or status. */
function matches(s: LibraryStudy, word: string, text: string): boolean {
  const id = /^#(\d+)$/.exec(word);
  return id ? s.id === Number(id[1]) : text.includes(word);
}

/** The studies the view's status and text keep (every word of the text must match). */
export function filterStudies(list: readonly LibraryStudy[], view: Pick<WorklistView, "status" | "text">): LibraryStudy[] {
  const words = view.text.toLowerCase().split(/\s+/).filter(Boolean);
  return list.filter((s) => {
    if (view.status && s.status !== view.status) return false;
    if (words.length === 0) return true;
    const text = haystack(s);
    return words.every((w) => matches(s, w, text));
  });
}

const statusRank = (s: ReviewStatus) => STATUSES.indexOf(s);

/**
 * Sorted by the view's column and direction; ties by date (newest first), then id (highest
 * first), so the order is total. Studies without a date sort after dated ones either way.
 */
export function sortStudies(list: readonly LibraryStudy[], view: Pick<WorklistView, "sort" | "desc">): LibraryStudy[] {
  const dir = view.desc ? -1 : 1;
  // Ascending by date, undated last.
  const byDate = (a: LibraryStudy, b: LibraryStudy, d: number) => {
    const da = sortDate(a), db = sortDate(b);
    if (!da !== !db) return da ? -1 : 1;
    return d * (da < db ? -1 : da > db ? 1 : 0);
  };
  const primary = (a: LibraryStudy, b: LibraryStudy): number => {
    if (view.sort === "date") return byDate(a, b, dir);
    if (view.sort === "status") return dir * (statusRank(a.status) - statusRank(b.status));
    return dir * (a.flagged - b.flagged);
  };
  return [...list].sort((a, b) => primary(a, b) || byDate(a, b, -1) || b.id - a.id);
}

/** The worklist the panel shows: filtered, then sorted. */
export function worklist(list: readonly LibraryStudy[], view: WorklistView): LibraryStudy[] {
  return sortStudies(filterStudies(list, view), view);
}

/** The flagged column: "3" or "3 (2 decided)" once some have a verdict; "–" without a run. */
export function flaggedText(s: Pick<LibraryStudy, "flagged" | "decided" | "last_run">): string {
  if (s.last_run == null) return "–";
  return s.decided > 0 ? `${s.flagged} (${s.decided} decided)` : String(s.flagged);
}

/** The view after a click on a column header: the same column flips direction; another one
 * starts descending (newest, most advanced status, most flagged first). */
export function clickSort(view: WorklistView, key: SortKey): WorklistView {
  return view.sort === key ? { ...view, desc: !view.desc } : { ...view, sort: key, desc: true };
}

/** "1 study", "2 studies". */
export function studies(n: number): string {
  return `${n} ${n === 1 ? "study" : "studies"}`;
}
