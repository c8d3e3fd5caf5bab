import { describe, expect, it } from "vitest";
import type { ScoredFinding } from "../../src/api";
import { flagText, sortFindings } from "../../src/findings/findings";
import { stageStates, STAGES } from "../../src/findings/progress";
import { appendEvent, describeEvent, falsePositive } from "../../src/feedback/log";
import { entryWeight, siteWords } from "../../src/knowledge/knowledge";
import { describeModel } from "../../src/settings/settings";

const f = (label: string, score: number, threshold: number | null): ScoredFinding => ({
  label, prompt: `There is ${label}`, score, threshold, flagged: threshold === null ? null : score > threshold, custom: false,
});

describe("findings list", () => {
  it("puts flagged findings first, then sorts by score", () => {
    const out = sortFindings([f("a", 0.2, 0.5), f("b", 0.6, 0.5), f("c", 0.9, null), f("d", 0.3, 0.1), f("e", 0.4, 0.5)]);
    expect(out.map((x) => x.label)).toEqual(["b", "d", "c", "e", "a"]);
  });
  it("describes the flag", () => {
    expect(flagText(f("a", 0.6, 0.5))).toBe("flagged");
    expect(flagText(f("a", 0.4, 0.5))).toBe("not flagged");
    expect(flagText(f("a", 0.4, null))).toBe("no threshold");
  });
});

describe("progress per stage", () => {
  it("marks earlier stages done and later ones pending", () => {
    expect(stageStates(STAGES, "encode image")).toEqual(["done", "done", "active", "pending", "pending", "pending"]);
    expect(stageStates(STAGES, null).every((s) => s === "pending")).toBe(true);
    expect(stageStates(STAGES, "done").every((s) => s === "done")).toBe(true);
  });
});

describe("review events", () => {
  it("appends without changing the old list, and describes an event", () => {
    const a = appendEvent([], 41, "Emphysema", { action: "false_positive", reason: "artefact", note: null }, "t0");
    const b = appendEvent(a, 42, "rib fracture", { action: "missed", text: "rib fracture" }, "t1");
    expect(a).toHaveLength(1);
    expect(b.map((e) => e.id)).toEqual([41, 42]);
    expect(describeEvent(a[0])).toBe("#41 false positive — Emphysema (artefact)");
    expect(describeEvent(b[1])).toBe("#42 missed — rib fracture");
  });
  it("builds the false-positive payload from the form", () => {
    expect(falsePositive("device", "  ECG lead ")).toEqual({ action: "false_positive", reason: "device", note: "ECG lead" });
    expect(falsePositive("", "   ")).toEqual({ action: "false_positive", reason: null, note: null });
  });
});

describe("knowledge and settings text", () => {
  it("formats weights", () => {
    expect(entryWeight({ index: 1, weight: 0.12345 }, "image")).toBe("0.123");
    expect(entryWeight({ index: 1, image_weight: 0.5, text_weight: 0.25 }, "shared")).toBe("0.500 × 0.250");
  });
  it("marks the words that came from this site", () => {
    expect(siteWords({ index: 1, description: "nodule" })).toEqual({ description: false, others: [] });
    expect(siteWords({ index: 1, description: "our nodule", site_words: ["our nodule", "our mass"] })).toEqual({ description: true, others: ["our mass"] });
    expect(siteWords({ index: 1, site_words: ["our mass"] })).toEqual({ description: false, others: ["our mass"] });
  });
  it("says which model runs and why", () => {
    expect(describeModel({ model_dir: null, label_set: null, resolved_model: null, resolved_from: "none found", model_ok: false })).toMatch(/No model found/);
    expect(describeModel({ model_dir: null, label_set: null, resolved_model: "/m/demo", resolved_from: "demo model", model_ok: true })).toBe("Model: /m/demo (from demo model)");
  });
});

import { describeRecalibration } from "../../src/settings/settings";

describe("threshold recalibration text", () => {
  const p = (label: string, changed: boolean) => ({
    label, current: 0.1, proposed: changed ? 0.25 : 0.1, changed, positives: 2, negatives: 1,
    false_positives_flagged_before: 1, false_positives_flagged_after: changed ? 0 : 1,
  });
  it("lists only the labels that change", () => {
    const t = describeRecalibration({ model_dir: "m", proposals: [p("Emphysema", true), p("Atelectasis", false)], applied: null, reverted: null });
    expect(t).toContain("Emphysema: 0.1000 → 0.2500");
    expect(t).not.toContain("Atelectasis");
  });
  it("says when nothing changes and when a version was applied", () => {
    expect(describeRecalibration({ model_dir: "m", proposals: [p("Emphysema", false)], applied: null, reverted: null })).toContain("No threshold change");
    expect(describeRecalibration({ model_dir: "m", proposals: [p("Emphysema", true)], applied: { id: 3, kind: "apply" }, reverted: null })).toMatch(/^Applied \(version 3\)/);
  });
});
