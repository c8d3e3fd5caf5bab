// The Library panel's drawing: the worklist as a virtual list (only the rows on screen are in
// the DOM, so 10,000 studies draw as fast as 20), and the ranked studies of a search or a
// "similar studies" query. What is listed comes from the state (see panels.ts).
import type { LibraryStudy, SearchHit, SearchResult } from "../api";
import { el } from "../dom";
import { visibleRows } from "./window";
import { flaggedText, formatDate, statusText, studies, studyTitle } from "./worklist";

/** Height of one worklist row in px (style.css `.lib-row` has the same). */
export const ROW_HEIGHT = 26;

/**
 * A scrolling list that keeps only the rows in (and just around) the viewport in the DOM. The
 * container scrolls; a spacer gives it the height of every row; the drawn rows are absolutely
 * placed at their offsets. Redraws on scroll (once per animation frame) and on resize.
 */
export class VirtualList<T> {
  private items: readonly T[] = [];
  private readonly spacer: HTMLElement;
  private drawn = { start: 0, end: 0 };
  private pending = 0;

  constructor(
    readonly box: HTMLElement,
    private readonly draw: (item: T, index: number) => HTMLElement,
    readonly rowHeight = ROW_HEIGHT,
  ) {
    this.spacer = el("div", { class: "vlist-spacer" });
    box.replaceChildren(this.spacer);
    box.addEventListener("scroll", () => this.schedule(), { passive: true });
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(() => this.schedule()).observe(box);
  }

  /** Show these items (from the top when `reset`). */
  setItems(items: readonly T[], reset = false) {
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    if (reset) this.box.scrollTop = 0;
    this.render(true);
  }

  /** How many rows are in the DOM now. */
  get rendered(): number {
    return this.drawn.end - this.drawn.start;
  }

  private schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render(false);
    });
  }

  /** Draw the rows the viewport shows (a hidden box: the first screenful). */
  render(force: boolean) {
    const viewport = this.box.clientHeight || 20 * this.rowHeight;
    const w = visibleRows(this.box.scrollTop, viewport, this.rowHeight, this.items.length);
    if (!force && w.start === this.drawn.start && w.end === this.drawn.end) return;
    const rows: HTMLElement[] = [];
    for (let i = w.start; i < w.end; i++) {
      const r = this.draw(this.items[i], i);
      r.style.transform = `translateY(${i * this.rowHeight}px)`;
      rows.push(r);
    }
    this.spacer.replaceChildren(...rows);
    this.drawn = w;
  }
}

/** One worklist row: date, description, model, flagged, status. */
export function studyRow(s: LibraryStudy, current: boolean, open: (id: number) => void): HTMLElement {
  const row = el(
    "div",
    {
      class: `lib-row ${current ? "current" : ""}`,
      role: "row",
      tabindex: 0,
      title: s.path,
      "data-testid": "library-row",
      "data-study-id": s.id,
      "data-status": s.status,
      "data-flagged": s.flagged,
    },
    el("span", { class: "lib-date", text: formatDate(s.study_date) || "—" }),
    el("span", { class: "lib-desc", text: studyTitle(s) }),
    el("span", { class: "lib-model", text: s.model_name ?? "" }),
    el("span", { class: `lib-flagged ${s.flagged > s.decided ? "pending" : ""}`, text: flaggedText(s) }),
    el("span", { class: `lib-status status-${s.status}`, text: statusText(s.status) }),
  );
  row.onclick = () => open(s.id);
  row.onkeydown = (e) => e.key === "Enter" && open(s.id);
  return row;
}

/** A ranked study (search result or similar study); `testid` says which list it is in. */
export function hitRow(h: SearchHit, testid: "search-result" | "similar-study", open: (id: number) => void): HTMLElement {
  const li = el(
    "li",
    { class: "hit", tabindex: 0, title: h.path, "data-testid": testid, "data-study-id": h.study_id, "data-score": h.score.toFixed(6), "data-status": h.status },
    el("span", { class: "hit-score", text: h.score.toFixed(3) }),
    el("span", { class: "hit-date", text: formatDate(h.study_date) }),
    el("span", { class: "hit-desc", text: studyTitle(h) }),
    el("span", { class: `lib-status status-${h.status}`, text: statusText(h.status) }),
  );
  li.onclick = () => open(h.study_id);
  li.onkeydown = (e) => e.key === "Enter" && open(h.study_id);
  return li;
}

/** The line under a result list: how many studies were searched, by which model, and how many
 * were left out (analysed with another model). */
export function describeSearch(r: SearchResult, what: string): string {
  const skipped = r.skipped ? `; ${r.skipped} analysed with other models not searched (analyse them with this model to include them)` : "";
  if (r.searched === 0) return `No study analysed with ${r.model_name} to search${skipped}.`;
  return `${r.hits.length} of ${studies(r.searched)} ${what} by ${r.model_name}${skipped}.`;
}
