import { describe, expect, it } from "vitest";
import type { ScoredFinding } from "../../src/api";
import { flagText, sortFindings } from "../../src/findings/findings";
import { stageStates, STAGES } from "../../src/findings/progress";
import { FeedbackLog } from "../../src/feedback/log";
import { entryWeight } from "../../src/knowledge/knowledge";
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

describe("feedback log", () => {
  it("derives the verdict from the latest event that is not undone", () => {
    const log = new FeedbackLog();
    const a = log.add("Emphysema", { action: "confirm" });
    expect(log.verdict("Emphysema")).toBe("confirmed");
    const b = log.add("Emphysema", { action: "false_positive", reason: "artefact", note: null });
    expect(log.verdict("Emphysema")).toBe("false_positive");
    log.add("Emphysema", { action: "undo", event: b.id });
    expect(log.verdict("Emphysema")).toBe("confirmed");
    log.add("Emphysema", { action: "undo", event: a.id });
    expect(log.verdict("Emphysema")).toBeNull();
    expect(log.verdict("Atelectasis")).toBeNull();
  });
  it("keeps store event ids and lists missed findings", () => {
    const log = new FeedbackLog();
    const e = log.add("rib fracture", { action: "missed", text: "rib fracture" }, 41);
    expect(e.id).toBe(41);
    expect(log.add("x", { action: "confirm" }).id).toBe(42);
    expect(log.missed().map((m) => m.label)).toEqual(["rib fracture"]);
  });
});

describe("knowledge and settings text", () => {
  it("formats weights", () => {
    expect(entryWeight({ index: 1, weight: 0.12345 }, "image")).toBe("0.123");
    expect(entryWeight({ index: 1, image_weight: 0.5, text_weight: 0.25 }, "shared")).toBe("0.500 × 0.250");
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
