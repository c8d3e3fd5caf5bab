import { describe, expect, it } from "vitest";
import { allFindings, clearedAnalysis, createStore, initialState, shallow } from "../../src/state";
import type { ScoredFinding } from "../../src/api";

describe("state store", () => {
  it("get / set / update replace fields and keep the others", () => {
    const s = createStore({ a: 1, b: "x" });
    const before = s.get();
    s.set({ a: 2 });
    expect(s.get()).toEqual({ a: 2, b: "x" });
    expect(before).toEqual({ a: 1, b: "x" }); // the old state object is not mutated
    s.update((st) => ({ b: st.b + "y" }));
    expect(s.get()).toEqual({ a: 2, b: "xy" });
  });

  it("calls a listener only when its slice changes, with the new and previous value", () => {
    const s = createStore({ a: 1, b: 1 });
    const seen: [number, number][] = [];
    s.subscribe((st) => st.a, (v, prev) => seen.push([v, prev]));
    s.set({ b: 2 }); // another slice
    s.set({ a: 1 }); // same value
    s.set({ a: 3 });
    s.update((st) => ({ a: st.a, b: st.b + 1 }));
    s.set({ a: 4, b: 9 });
    expect(seen).toEqual([[3, 1], [4, 3]]);
  });

  it("immediate calls once at once; unsubscribe stops the calls", () => {
    const s = createStore({ a: 1 });
    const seen: number[] = [];
    const off = s.subscribe((st) => st.a, (v) => seen.push(v), { immediate: true });
    s.set({ a: 2 });
    off();
    s.set({ a: 3 });
    expect(seen).toEqual([1, 2]);
  });

  it("a tuple selector with shallow equality fires only when an item changes", () => {
    const list = [1, 2];
    const s = createStore({ list, sel: null as string | null, other: 0 });
    let calls = 0;
    s.subscribe((st) => [st.list, st.sel] as const, () => calls++, { equals: shallow });
    s.set({ other: 1 }); // a new tuple each time, but the same items
    expect(calls).toBe(0);
    s.set({ sel: "a" });
    s.set({ list: [...list] }); // a new array is a change
    s.set({ list: s.get().list }); // the same array is not
    expect(calls).toBe(2);
  });

  it("a listener that sets state: every listener ends on the newest value, each called once per change", () => {
    const s = createStore({ a: 0, b: 0 });
    const bs: number[] = [];
    s.subscribe((st) => st.a, (a) => s.set({ b: a * 10 }));
    s.subscribe((st) => st.b, (b) => bs.push(b));
    s.set({ a: 1 });
    expect(s.get().b).toBe(10);
    expect(bs).toEqual([10]);
  });

  it("a failing listener does not stop the others; its error is rethrown", () => {
    const s = createStore({ a: 0 });
    let other = 0;
    s.subscribe((st) => st.a, () => {
      throw new Error("boom");
    });
    s.subscribe((st) => st.a, (a) => (other = a));
    expect(() => s.set({ a: 5 })).toThrow("boom");
    expect(other).toBe(5);
  });

  it("shallow compares arrays and plain objects item by item", () => {
    const o = {};
    expect(shallow([1, o], [1, o])).toBe(true);
    expect(shallow([1, {}], [1, {}])).toBe(false);
    expect(shallow([1], [1, 2])).toBe(false);
    expect(shallow({ x: 1 }, { x: 1 })).toBe(true);
    expect(shallow({ x: 1 }, { y: 1 })).toBe(false);
    expect(shallow([1] as unknown, { 0: 1 } as unknown)).toBe(false);
    expect(shallow(null as unknown, {} as unknown)).toBe(false);
  });
});

describe("app state", () => {
  const f = (label: string): ScoredFinding => ({ label, prompt: label, score: 0.5, threshold: 0.4, flagged: true, custom: false });

  it("clearing the analysis drops result, review and selection but keeps the study and settings", () => {
    const s = createStore(initialState());
    const study = { path: "/x" } as never;
    s.set({ study, selected: f("a"), verdicts: [{ label: "a", verdict: "confirmed", event: 1 }], heatmaps: { a: 3 }, busy: false });
    s.set(clearedAnalysis());
    const st = s.get();
    expect(st.study).toBe(study);
    expect([st.selected, st.result, st.verdicts, st.heatmaps, st.events]).toEqual([null, null, [], {}, []]);
  });

  it("lists the analysis' findings, then the typed ones", () => {
    const s = createStore(initialState());
    s.set({ result: { diagnosis: { findings: [f("a"), f("b")] } } as never, typed: [f("typed")] });
    expect(allFindings(s.get()).map((x) => x.label)).toEqual(["a", "b", "typed"]);
  });
});
