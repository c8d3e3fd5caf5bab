import { describe, expect, it } from "vitest";
import type { LibraryStudy, ReviewStatus } from "../../src/api";
import { visibleRows } from "../../src/library/window";
import { initialState, openStudyId, type AppState } from "../../src/state";
import {
  clickSort, DEFAULT_VIEW, filterStudies, flaggedText, formatDate, sortDate, sortStudies, statusText, studies, studyTitle, worklist,
} from "../../src/library/worklist";

const s = (id: number, date: string | null, status: ReviewStatus, flagged: number, extra: Partial<LibraryStudy> = {}): LibraryStudy => ({
  id, path: `/data/s${id}`, origin: "app", modality: "CT", study_date: date, description: `CHEST ${id}`, series: [], runs: 1,
  last_run: id * 10, model_name: "brgsa-demo", model_checksum: "abc", analysed_at: "2026-12-07T10:00:00Z", flagged, decided: 0, status, ...extra,
});
const ids = (l: LibraryStudy[]) => l.map((x) => x.id);

describe("worklist rows", () => {
  it("formats dates, titles, statuses and the flagged column", () => {
    expect(formatDate("20240102")).toBe("2024-01-02");
    expect(formatDate("2024")).toBe("2024");
    expect(formatDate(null)).toBe("");
    expect(studyTitle({ description: null, path: "/data/ct/chest.nii.gz" })).toBe("chest.nii.gz");
    expect(studyTitle({ description: "", path: "/" })).toBe("/");
    expect(statusText("in_review")).toBe("in review");
    expect(flaggedText({ flagged: 3, decided: 0, last_run: 1 })).toBe("3");
    expect(flaggedText({ flagged: 3, decided: 2, last_run: 1 })).toBe("3 (2 decided)");
    expect(flaggedText({ flagged: 0, decided: 0, last_run: null })).toBe("–");
    expect([studies(1), studies(0), studies(10000)]).toEqual(["1 study", "0 studies", "10000 studies"]);
  });
  it("dates a study without StudyDate by its latest analysis", () => {
    expect(sortDate(s(1, null, "new", 0))).toBe("20261207");
    expect(sortDate(s(1, null, "new", 0, { analysed_at: null }))).toBe("");
  });
});

describe("sorting", () => {
  const list = [s(1, "20200101", "reviewed", 2), s(2, "20240101", "new", 0), s(3, null, "analysed", 5, { analysed_at: null }), s(4, "20240101", "in_review", 1)];
  it("by date, newest first, undated last either way; ties by id", () => {
    expect(ids(sortStudies(list, { sort: "date", desc: true }))).toEqual([4, 2, 1, 3]);
    expect(ids(sortStudies(list, { sort: "date", desc: false }))).toEqual([1, 4, 2, 3]);
  });
  it("by status in workflow order, and by flagged count", () => {
    expect(ids(sortStudies(list, { sort: "status", desc: false }))).toEqual([2, 3, 4, 1]);
    expect(ids(sortStudies(list, { sort: "status", desc: true }))).toEqual([1, 4, 3, 2]);
    expect(ids(sortStudies(list, { sort: "flagged", desc: true }))).toEqual([3, 1, 4, 2]);
  });
  it("leaves the input as it was", () => {
    const before = ids(list);
    sortStudies(list, { sort: "flagged", desc: true });
    expect(ids(list)).toEqual(before);
  });
  it("a header click flips the direction of its column, another column starts descending", () => {
    expect(clickSort(DEFAULT_VIEW, "date")).toEqual({ ...DEFAULT_VIEW, desc: false });
    expect(clickSort({ ...DEFAULT_VIEW, desc: false }, "flagged")).toEqual({ ...DEFAULT_VIEW, sort: "flagged", desc: true });
  });
});

describe("filtering", () => {
  const list = [s(1, "20200101", "reviewed", 2), s(2, "20240101", "new", 0, { description: "Abdomen", model_name: "ctclip" }), s(12, null, "analysed", 5)];
  it("by status", () => {
    expect(ids(filterStudies(list, { status: "new", text: "" }))).toEqual([2]);
  });
  it("by every word of the text, case-insensitive, over description, path, model, date and status", () => {
    expect(ids(filterStudies(list, { status: "", text: "chest" }))).toEqual([1, 12]);
    expect(ids(filterStudies(list, { status: "", text: "ABDOMEN ctclip" }))).toEqual([2]);
    expect(ids(filterStudies(list, { status: "", text: "2024-01" }))).toEqual([2]);
    expect(ids(filterStudies(list, { status: "", text: "reviewed" }))).toEqual([1]);
    expect(ids(filterStudies(list, { status: "", text: "   " }))).toEqual([1, 2, 12]);
  });
  it("#id is the study id exactly", () => {
    expect(ids(filterStudies(list, { status: "", text: "#1" }))).toEqual([1]);
    expect(ids(filterStudies(list, { status: "", text: "#12 chest" }))).toEqual([12]);
    expect(ids(filterStudies(list, { status: "", text: "#3" }))).toEqual([]);
  });
  it("the worklist filters then sorts 10,000 studies", () => {
    const many = Array.from({ length: 10000 }, (_, i) => s(i + 1, `20${10 + (i % 15)}0101`, (["new", "analysed"] as const)[i % 2], i % 4));
    const out = worklist(many, { sort: "flagged", desc: true, status: "analysed", text: "" });
    expect(out).toHaveLength(5000);
    expect(out[0].flagged).toBe(3);
    expect(out.every((x) => x.status === "analysed")).toBe(true);
  });
});

describe("the virtual list's window", () => {
  it("covers the viewport plus the overscan, clamped to the list", () => {
    expect(visibleRows(0, 260, 26, 10000, 4)).toEqual({ start: 0, end: 14 });
    expect(visibleRows(2600, 260, 26, 10000, 4)).toEqual({ start: 96, end: 114 });
    expect(visibleRows(13, 260, 26, 10000, 0)).toEqual({ start: 0, end: 11 });
    expect(visibleRows(26 * 9990, 260, 26, 10000, 4)).toEqual({ start: 9986, end: 10000 });
  });
  it("stays within the list for any input", () => {
    expect(visibleRows(0, 260, 26, 0)).toEqual({ start: 0, end: 0 });
    expect(visibleRows(1e9, 260, 26, 5)).toEqual({ start: 5, end: 5 });
    expect(visibleRows(-50, 260, 26, 5)).toEqual({ start: 0, end: 5 });
    expect(visibleRows(NaN, NaN, 0, 3)).toEqual({ start: 0, end: 3 });
    expect(visibleRows(0, 100, 26, Infinity)).toEqual({ start: 0, end: 0 });
  });
  it("draws far fewer rows than 10,000 for a screenful", () => {
    const w = visibleRows(123456, 800, 26, 10000);
    expect(w.end - w.start).toBeLessThan(50);
    expect(w.start).toBeLessThanOrEqual(Math.floor(123456 / 26));
    expect(w.end).toBeGreaterThanOrEqual(Math.ceil((123456 + 800) / 26));
  });
});

describe("the open study's library id", () => {
  const withRun = (run: number | null) => ({ run_id: run }) as unknown as AppState["result"];
  it("is the id it was opened with, else the study whose latest run is on screen", () => {
    const library = [s(1, null, "new", 0), s(2, null, "analysed", 1)]; // last runs 10, 20
    expect(openStudyId({ ...initialState(), libraryStudyId: 7, library, result: withRun(20) })).toBe(7);
    expect(openStudyId({ ...initialState(), library, result: withRun(20) })).toBe(2);
    expect(openStudyId({ ...initialState(), library, result: withRun(99) })).toBe(null);
    expect(openStudyId({ ...initialState(), library: null, result: withRun(20) })).toBe(null);
    expect(openStudyId({ ...initialState(), library, result: withRun(null) })).toBe(null);
  });
});
