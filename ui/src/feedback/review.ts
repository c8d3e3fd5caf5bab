// Review actions go to the feedback store; what the UI then shows is what the store answered:
// the recorded event (with the store's id) and the run's verdicts. Without a store, or when the
// command fails, the error is shown and nothing is recorded or shown as a verdict.
import * as api from "../api";
import type { AppStore } from "../state";
import { appendEvent, type ReviewAction } from "./log";
import { storeVerdicts } from "./verdicts";

export interface ReviewApi {
  reviewFinding: (runId: number, label: string, action: ReviewAction) => Promise<{ event_id: number; verdicts: readonly unknown[] }>;
  runVerdicts: (runId: number) => Promise<readonly unknown[]>;
}
const tauri: ReviewApi = { reviewFinding: api.reviewFinding, runVerdicts: api.runVerdicts };

/** Record one review action of the current run; true when the store recorded it. */
export async function review(store: AppStore, label: string, action: ReviewAction, io: ReviewApi = tauri): Promise<boolean> {
  const result = store.get().result;
  const runId = result?.run_id;
  if (runId == null) {
    const why = result?.store_error ? `: ${result.store_error}` : "";
    store.set({ analysisError: `feedback not saved: no feedback store for this run${why}` });
    return false;
  }
  let answer: Awaited<ReturnType<ReviewApi["reviewFinding"]>>;
  try {
    answer = await io.reviewFinding(runId, label, action);
  } catch (e) {
    store.set({ analysisError: `feedback not saved: ${api.errorMessage(e)}` });
    return false;
  }
  if (store.get().result?.run_id !== runId) return true; // another run is on screen now
  store.update((s) => ({ events: appendEvent(s.events, answer.event_id, label, action), verdicts: storeVerdicts(answer.verdicts) }));
  return true;
}

/** Show the store's verdicts of a run just loaded. */
export async function loadVerdicts(store: AppStore, runId: number, io: ReviewApi = tauri): Promise<void> {
  try {
    const list = await io.runVerdicts(runId);
    if (store.get().result?.run_id === runId) store.set({ verdicts: storeVerdicts(list) });
  } catch (e) {
    store.set({ analysisError: `feedback store: ${api.errorMessage(e)}` });
  }
}
