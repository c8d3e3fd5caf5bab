// What the reader sends to the feedback store (confirm, false positive with reason / note,
// missed finding, undo) and this session's list of the events the store recorded. The verdict
// per label is the store's (see verdicts.ts): the UI does not derive it.

export type Reason = "anatomy_mimic" | "artefact" | "device" | "post_operative" | "other";
export const REASONS: [Reason, string][] = [
  ["anatomy_mimic", "anatomy mimic"],
  ["artefact", "artefact"],
  ["device", "device"],
  ["post_operative", "post-operative"],
  ["other", "other"],
];

export type ReviewAction =
  | { action: "confirm" }
  | { action: "false_positive"; reason: Reason | null; note: string | null }
  | { action: "missed"; text: string }
  | { action: "undo"; event: number };

/** One recorded event: `id` is the store's event id. */
export interface ReviewEvent { id: number; label: string; action: ReviewAction; at: string }

/** The events with one more (a new array; the old one is left as it was). */
export function appendEvent(events: readonly ReviewEvent[], id: number, label: string, action: ReviewAction, at = new Date().toISOString()): ReviewEvent[] {
  return [...events, { id, label, action, at }];
}

/** The event as the review list shows it: "#12 false positive — Emphysema (artefact)". */
export function describeEvent(e: ReviewEvent): string {
  const reason = e.action.action === "false_positive" && e.action.reason ? ` (${e.action.reason})` : "";
  return `#${e.id} ${e.action.action.replace("_", " ")} — ${e.label}${reason}`;
}

/** The false-positive payload from the form's values (empty reason / note: none). */
export function falsePositive(reason: string, note: string): ReviewAction {
  return { action: "false_positive", reason: (reason || null) as Reason | null, note: note.trim() || null };
}
