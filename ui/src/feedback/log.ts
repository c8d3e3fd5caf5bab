// The reader's feedback on one run, as the feedback store keeps it: append-only events
// (confirm, false positive with reason/note, missed finding, undo), the current verdict per
// label derived from them. Kept in memory and mirrored to the store when the backend has one.

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

export interface ReviewEvent { id: number; label: string; action: ReviewAction; at: string }
export type VerdictKind = "confirmed" | "false_positive" | "missed";

export class FeedbackLog {
  events: ReviewEvent[] = [];
  private next = 1;

  add(label: string, action: ReviewAction, id?: number): ReviewEvent {
    const ev = { id: id ?? this.next, label, action, at: new Date().toISOString() };
    this.next = Math.max(this.next, ev.id) + 1;
    this.events.push(ev);
    return ev;
  }

  /** Latest event of the label that is not an undo and has not been undone. */
  current(label: string): ReviewEvent | null {
    const undone = new Set(this.events.filter((e) => e.action.action === "undo").map((e) => (e.action as { event: number }).event));
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i];
      if (e.label === label && e.action.action !== "undo" && !undone.has(e.id)) return e;
    }
    return null;
  }

  verdict(label: string): VerdictKind | null {
    const e = this.current(label);
    if (!e) return null;
    return e.action.action === "confirm" ? "confirmed" : e.action.action === "false_positive" ? "false_positive" : "missed";
  }

  missed(): ReviewEvent[] {
    const labels = [...new Set(this.events.map((e) => e.label))];
    return labels.map((l) => this.current(l)).filter((e): e is ReviewEvent => e?.action.action === "missed");
  }
}
