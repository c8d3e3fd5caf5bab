// The feedback store's verdicts (radbridge_store::Verdict: the current verdict per reviewed
// label of a run), as `review_finding` and `run_verdicts` answer them. The UI shows these and
// nothing it works out itself.

export type VerdictKind = "confirmed" | "false_positive" | "missed";
const KINDS: readonly string[] = ["confirmed", "false_positive", "missed"];

/** The fields of a store verdict the UI uses (the store sends more: reason, note, score…). */
export interface StoreVerdict {
  label: string;
  verdict: VerdictKind;
  /** The store event that decides it (what Undo withdraws). */
  event: number;
}

function isVerdict(v: unknown): v is StoreVerdict {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.label === "string" && typeof o.verdict === "string" && KINDS.includes(o.verdict) && typeof o.event === "number";
}

/** The verdicts of a command's answer; an entry of another shape is left out (never guessed). */
export function storeVerdicts(list: readonly unknown[] | null | undefined): StoreVerdict[] {
  return (Array.isArray(list) ? list : []).filter(isVerdict).map((v) => ({ label: v.label, verdict: v.verdict, event: v.event }));
}

/** The verdict a findings row shows: confirmed / false positive (a missed one has no row). */
export function rowVerdict(verdicts: readonly StoreVerdict[], label: string): "confirmed" | "false_positive" | null {
  const v = verdicts.find((x) => x.label === label)?.verdict;
  return v === "confirmed" || v === "false_positive" ? v : null;
}

/** The verdict Undo withdraws: the one decided by the newest event. */
export function undoTarget(verdicts: readonly StoreVerdict[]): StoreVerdict | null {
  let best: StoreVerdict | null = null;
  for (const v of verdicts) if (!best || v.event > best.event) best = v;
  return best;
}
