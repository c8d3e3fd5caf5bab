// The virtual list's window maths: which rows of a long list are on screen (plus a few above
// and below, so a scroll shows drawn rows before the next frame redraws).

export interface RowWindow {
  /** First row to draw. */
  start: number;
  /** One past the last row to draw. */
  end: number;
}

/**
 * Rows [start, end) that intersect the viewport [scrollTop, scrollTop + viewport) of a list of
 * `count` rows of `rowHeight` px each, widened by `overscan` rows on each side and clamped to
 * the list. Non-finite or negative inputs count as 0; a row height below 1 px counts as 1.
 */
export function visibleRows(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan = 4): RowWindow {
  const n = Math.max(0, Math.floor(Number.isFinite(count) ? count : 0));
  const h = Math.max(1, Number.isFinite(rowHeight) ? rowHeight : 1);
  const top = Math.max(0, Number.isFinite(scrollTop) ? scrollTop : 0);
  const vp = Math.max(0, Number.isFinite(viewport) ? viewport : 0);
  const first = Math.floor(top / h);
  const last = Math.ceil((top + vp) / h);
  const o = Math.max(0, Math.floor(overscan));
  const start = Math.min(n, Math.max(0, first - o));
  const end = Math.min(n, Math.max(start, last + o));
  return { start, end };
}
