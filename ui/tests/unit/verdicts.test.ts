import { describe, expect, it } from "vitest";
import { createStore, initialState, type AppStore } from "../../src/state";
import { rowVerdict, storeVerdicts, undoTarget } from "../../src/feedback/verdicts";
import { loadVerdicts, review, type ReviewApi } from "../../src/feedback/review";
import type { ReviewAction } from "../../src/feedback/log";
import { distinctSteps, quantile } from "../../src/perf/bench";

const v = (label: string, verdict: string, event: number) => ({ label, verdict, event, reason: null, note: null, text: null, reviewer: null, at: "t", score: 0.4, threshold: 0.3, flagged: true });

function withRun(runId: number | null, storeError: string | null = null): AppStore {
  const s = createStore(initialState());
  s.set({ result: { diagnosis: { findings: [] }, run_id: runId, store_error: storeError } as never });
  return s;
}

/** A fake backend that answers what it is told, and records the calls. */
function fake(answer: { event_id: number; verdicts: unknown[] } | Error, list: unknown[] | { fail: unknown } = []) {
  const calls: [number, string, ReviewAction][] = [];
  const io: ReviewApi = {
    reviewFinding: async (runId, label, action) => {
      calls.push([runId, label, action]);
      if (answer instanceof Error) throw answer;
      return answer;
    },
    runVerdicts: async () => {
      if (!Array.isArray(list)) throw list.fail;
      return list;
    },
  };
  return { io, calls };
}

describe("store verdicts", () => {
  it("keep the store's entries and leave out what is not a verdict", () => {
    const got = storeVerdicts([v("Emphysema", "false_positive", 4), { label: "x", verdict: "maybe", event: 1 }, null, "confirmed", v("rib", "missed", 5)]);
    expect(got).toEqual([
      { label: "Emphysema", verdict: "false_positive", event: 4 },
      { label: "rib", verdict: "missed", event: 5 },
    ]);
  });
  it("a findings row shows confirmed / false positive only; undo takes the newest event", () => {
    const list = storeVerdicts([v("a", "confirmed", 3), v("b", "false_positive", 9), v("c", "missed", 7)]);
    expect([rowVerdict(list, "a"), rowVerdict(list, "b"), rowVerdict(list, "c"), rowVerdict(list, "d")]).toEqual(["confirmed", "false_positive", null, null]);
    expect(undoTarget(list)?.event).toBe(9);
    expect(undoTarget([])).toBeNull();
  });
});

describe("review actions show what the store answered", () => {
  it("uses the returned verdicts, not a verdict derived from the action", async () => {
    const s = withRun(7);
    // The store answers with its own view (another reviewer's confirm stands): the UI shows that.
    const { io, calls } = fake({ event_id: 12, verdicts: [v("Emphysema", "confirmed", 11), v("Atelectasis", "false_positive", 10)] });
    expect(await review(s, "Emphysema", { action: "false_positive", reason: "artefact", note: null }, io)).toBe(true);
    expect(calls).toEqual([[7, "Emphysema", { action: "false_positive", reason: "artefact", note: null }]]);
    const st = s.get();
    expect(rowVerdict(st.verdicts, "Emphysema")).toBe("confirmed");
    expect(rowVerdict(st.verdicts, "Atelectasis")).toBe("false_positive");
    expect(st.events.map((e) => [e.id, e.label, e.action.action])).toEqual([[12, "Emphysema", "false_positive"]]);
    expect(st.analysisError).toBeNull();
  });

  it("an empty answer clears the verdicts (an undo that withdrew the last one)", async () => {
    const s = withRun(7);
    s.set({ verdicts: [{ label: "Emphysema", verdict: "confirmed", event: 3 }] });
    await review(s, "Emphysema", { action: "undo", event: 3 }, fake({ event_id: 4, verdicts: [] }).io);
    expect(s.get().verdicts).toEqual([]);
  });

  it("a failed command shows the error and changes no verdict", async () => {
    const s = withRun(7);
    const before = [{ label: "Emphysema", verdict: "confirmed" as const, event: 3 }];
    s.set({ verdicts: before });
    const err = Object.assign(new Error("x"), { code: "store", message: "feedback.sqlite: database is locked" });
    expect(await review(s, "Emphysema", { action: "confirm" }, fake(err).io)).toBe(false);
    expect(s.get().analysisError).toBe("feedback not saved: feedback.sqlite: database is locked");
    expect(s.get().verdicts).toBe(before);
    expect(s.get().events).toEqual([]);
  });

  it("without a store for the run: the error, no call, no verdict", async () => {
    const s = withRun(null, "cannot open feedback.sqlite");
    const { io, calls } = fake({ event_id: 1, verdicts: [v("Emphysema", "confirmed", 1)] });
    expect(await review(s, "Emphysema", { action: "confirm" }, io)).toBe(false);
    expect(calls).toEqual([]);
    expect(s.get().analysisError).toBe("feedback not saved: no feedback store for this run: cannot open feedback.sqlite");
    expect(s.get().verdicts).toEqual([]);
  });

  it("an answer for a run no longer on screen is dropped", async () => {
    const s = withRun(7);
    let answer!: (r: { event_id: number; verdicts: unknown[] }) => void;
    const io: ReviewApi = { reviewFinding: () => new Promise((r) => (answer = r)), runVerdicts: async () => [] };
    const pending = review(s, "Emphysema", { action: "confirm" }, io);
    s.set({ result: { diagnosis: { findings: [] }, run_id: 8 } as never });
    answer({ event_id: 5, verdicts: [v("Emphysema", "confirmed", 5)] });
    await pending;
    expect(s.get().verdicts).toEqual([]);
    expect(s.get().events).toEqual([]);
  });

  it("loading a run shows its stored verdicts; a failure is shown", async () => {
    const s = withRun(7);
    await loadVerdicts(s, 7, fake({ event_id: 0, verdicts: [] }, [v("Emphysema", "false_positive", 2)]).io);
    expect(rowVerdict(s.get().verdicts, "Emphysema")).toBe("false_positive");
    await loadVerdicts(s, 7, fake({ event_id: 0, verdicts: [] }, { fail: { code: "store", message: "no such run 7" } }).io);
    expect(s.get().analysisError).toBe("feedback store: no such run 7");
  });
});

describe("benchmark arithmetic", () => {
  it("quantiles of sorted values and distinct slice changes", () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4], 0.9)).toBe(4);
    expect(quantile([], 0.5)).toBeNaN();
    expect(distinctSteps([5, 5, 6, 7, 7, 6])).toBe(3);
    expect(distinctSteps([])).toBe(0);
  });
});
