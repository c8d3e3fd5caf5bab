// Findings panel: every label of the chosen set with its score, threshold and flagged / not
// flagged, sorted (flagged first, then by score), plus typed findings scored on the spot.
import type { ScoredFinding } from "../api";
import { el } from "../dom";

export type Verdict = "confirmed" | "false_positive" | null;

/** Flagged first, then unflagged / no threshold; within each, highest score first. */
export function sortFindings(fs: ScoredFinding[]): ScoredFinding[] {
  const rank = (f: ScoredFinding) => (f.flagged === true ? 0 : 1);
  return [...fs].sort((a, b) => rank(a) - rank(b) || b.score - a.score || a.label.localeCompare(b.label));
}

export function flagText(f: ScoredFinding): string {
  if (f.flagged === true) return "flagged";
  if (f.flagged === false) return "not flagged";
  return "no threshold";
}

export function renderFindings(
  list: HTMLElement,
  findings: ScoredFinding[],
  selected: string | null,
  verdicts: (label: string) => Verdict,
  onSelect: (f: ScoredFinding) => void,
) {
  list.replaceChildren(
    ...sortFindings(findings).map((f) => {
      const v = verdicts(f.label);
      const row = el(
        "li",
        {
          "data-testid": "finding",
          "data-label": f.label,
          "data-score": f.score.toFixed(6),
          "data-flagged": String(f.flagged),
          "data-verdict": v ?? "",
          class: `finding ${f.flagged ? "flagged" : ""} ${selected === f.label ? "selected" : ""}`,
          tabindex: 0,
          title: `prompt: ${f.prompt}`,
        },
        el("span", { class: "label", text: f.label + (f.custom ? " (typed)" : "") }),
        el("span", { class: "score", text: f.score.toFixed(3) }),
        el("span", { class: "threshold", text: f.threshold == null ? "–" : f.threshold.toFixed(3) }),
        el("span", { class: "flag", text: flagText(f) }),
        el("span", { class: `verdict ${v ?? ""}`, text: v === "confirmed" ? "✓ confirmed" : v === "false_positive" ? "✗ false positive" : "" }),
      );
      row.onclick = () => onSelect(f);
      row.onkeydown = (e) => e.key === "Enter" && onSelect(f);
      return row;
    }),
  );
}
