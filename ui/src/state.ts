// The UI's state in one place: a small typed store (get / set / update) with subscriptions to
// slices of it. A panel subscribes with a selector for the slice it shows and re-renders only
// when that slice changes (Object.is, or the `equals` it passes, e.g. `shallow` for a tuple).
// State is replaced, never mutated: `set` takes the fields that change.
import type { AnalysisResult, LibraryStudy, ScoredFinding, SearchResult, SettingsView, VolumeSummary } from "./api";
import type { ReviewEvent } from "./feedback/log";
import type { StoreVerdict } from "./feedback/verdicts";
import { DEFAULT_VIEW, type WorklistView } from "./library/worklist";

export type Equals<T> = (a: T, b: T) => boolean;
export type Listener<T> = (value: T, prev: T) => void;
export interface SubscribeOptions<T> {
  /** When the selected slice counts as unchanged (default Object.is). */
  equals?: Equals<T>;
  /** Also call the listener once now, with the current slice (prev = the same value). */
  immediate?: boolean;
}

export interface Store<S extends object> {
  get(): Readonly<S>;
  /** Replace the given fields; listeners whose slice changed are called (once each). */
  set(patch: Partial<S>): void;
  update(f: (s: Readonly<S>) => Partial<S>): void;
  /** Listen to one slice; returns the unsubscribe function. */
  subscribe<T>(selector: (s: Readonly<S>) => T, listener: Listener<T>, opts?: SubscribeOptions<T>): () => void;
}

/** Equal when both are arrays (or plain objects) whose items (own values) are Object.is-equal. */
export function shallow<T>(a: T, b: T): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && Object.is((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

interface Sub<S> {
  select: (s: S) => unknown;
  listener: Listener<unknown>;
  equals: Equals<unknown>;
  last: unknown;
  active: boolean;
}

export function createStore<S extends object>(initial: S): Store<S> {
  let state: S = { ...initial };
  let subs: Sub<S>[] = [];

  // A listener may call set(): the nested notify brings every subscriber to the newest state,
  // and the outer loop then finds nothing new (each subscriber compares with what it last saw).
  const notify = () => {
    let failure: unknown = null;
    for (const sub of [...subs]) {
      if (!sub.active) continue;
      const value = sub.select(state);
      if (sub.equals(sub.last, value)) continue;
      const prev = sub.last;
      sub.last = value;
      try {
        sub.listener(value, prev);
      } catch (e) {
        failure ??= e; // the other panels still render; the first error is rethrown
      }
    }
    if (failure !== null) throw failure;
  };

  const store: Store<S> = {
    get: () => state,
    set(patch) {
      const keys = Object.keys(patch) as (keyof S)[];
      if (keys.every((k) => Object.is(state[k], patch[k]))) return;
      state = { ...state, ...patch };
      notify();
    },
    update(f) {
      store.set(f(state));
    },
    subscribe(selector, listener, opts = {}) {
      const sub: Sub<S> = {
        select: selector as (s: S) => unknown,
        listener: listener as Listener<unknown>,
        equals: (opts.equals ?? Object.is) as Equals<unknown>,
        last: selector(state),
        active: true,
      };
      subs.push(sub);
      if (opts.immediate) listener(sub.last as never, sub.last as never);
      return () => {
        sub.active = false;
        subs = subs.filter((s) => s !== sub);
      };
    },
  };
  return store;
}

/** Where an analysis' progress bars come from: the main analysis, a heat map or a typed finding. */
export type ProgressTask = "analysis" | "heatmap" | "finding";

/** The heat-map line under the viewer. */
export interface OverlayInfo {
  state: "loading" | "shown" | "error";
  label: string;
  text: string;
}

/** A library search (by a sentence, or for studies like the open one) and its answer. */
export interface SearchState {
  busy: boolean;
  result: SearchResult | null;
  error: string | null;
}

export interface AppState {
  /** The open study (null until one opened). */
  study: VolumeSummary | null;
  /** Why the last open failed (the previous study stays on screen). */
  loadError: string | null;
  /** The last analysis of the open study. */
  result: AnalysisResult | null;
  /** Findings typed by the reader and scored on the spot. */
  typed: readonly ScoredFinding[];
  selected: ScoredFinding | null;
  /** This session's review events, as the store recorded them (store event ids). */
  events: readonly ReviewEvent[];
  /** The run's current verdicts, as the feedback store last answered them. */
  verdicts: readonly StoreVerdict[];
  /** Heat-map ids by finding label (the backend keeps the maps). */
  heatmaps: Readonly<Record<string, number>>;
  busy: boolean;
  progressTask: ProgressTask;
  progress: { stages: readonly string[]; current: string | null } | null;
  analysisError: string | null;
  overlay: OverlayInfo | null;
  /** The heat-map toggle and opacity slider apply (a map is on screen). */
  overlayControls: boolean;
  settings: SettingsView | null;
  /** The Library panel is shown. */
  libraryOpen: boolean;
  /** The library's studies as last listed (null until listed). */
  library: readonly LibraryStudy[] | null;
  libraryError: string | null;
  /** The worklist's sort and filters. */
  libraryView: WorklistView;
  /** The last text search. */
  search: SearchState | null;
  /** Studies like the open one. */
  similar: SearchState | null;
  /** The library id of the open study, when known (opened from the library, or found there). */
  libraryStudyId: number | null;
}

export function initialState(): AppState {
  return {
    study: null,
    loadError: null,
    result: null,
    typed: [],
    selected: null,
    events: [],
    verdicts: [],
    heatmaps: {},
    busy: false,
    progressTask: "analysis",
    progress: null,
    analysisError: null,
    overlay: null,
    overlayControls: false,
    settings: null,
    libraryOpen: false,
    library: null,
    libraryError: null,
    libraryView: DEFAULT_VIEW,
    search: null,
    similar: null,
    libraryStudyId: null,
  };
}

/** What a new analysis (or a newly opened study) starts from: no result, no review. */
export function clearedAnalysis(): Partial<AppState> {
  return { result: null, typed: [], selected: null, events: [], verdicts: [], heatmaps: {}, progress: null, analysisError: null, overlay: null, overlayControls: false };
}

export type AppStore = Store<AppState>;

/** Every finding on screen: the analysis' and the typed ones. */
export function allFindings(s: Readonly<AppState>): ScoredFinding[] {
  return [...(s.result?.diagnosis.findings ?? []), ...s.typed];
}

/** The library id of the open study: known from the library, else the study whose latest run
 * is the one on screen (null when neither). */
export function openStudyId(s: Readonly<AppState>): number | null {
  if (s.libraryStudyId != null) return s.libraryStudyId;
  const run = s.result?.run_id;
  if (run == null || !s.library) return null;
  return s.library.find((x) => x.last_run === run)?.id ?? null;
}
