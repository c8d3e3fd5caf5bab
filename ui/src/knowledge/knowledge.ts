// Knowledge panel: the knowledge-bank entries behind a finding — the image's strongest, the
// finding's strongest, and the shared ones that bridge them — with weights and words.
import type { BankEntry, Diagnosis, ScoredFinding } from "../api";
import { el } from "../dom";

export type Kind = "image" | "finding" | "shared";

export function entryWeight(e: BankEntry, kind: Kind): string {
  if (kind === "shared") return `${(e.image_weight ?? 0).toFixed(3)} × ${(e.text_weight ?? 0).toFixed(3)}`;
  return (e.weight ?? 0).toFixed(3);
}

function section(title: string, kind: Kind, entries: BankEntry[]) {
  return el(
    "div",
    { class: "bank-section", "data-kind": kind },
    el("h3", { text: title }),
    entries.length === 0
      ? el("p", { class: "muted", text: "none" })
      : el(
          "ol",
          {},
          ...entries.map((e) =>
            el(
              "li",
              { "data-testid": "bank-entry", "data-kind": kind, "data-index": e.index },
              el("span", { class: "entry-index", text: `#${e.index}` }),
              el("span", { class: "entry-weight", text: entryWeight(e, kind) }),
              el("span", { class: "entry-text", text: e.description ?? "(no words for this entry: run `radbridge bank describe` for this model)" }),
            ),
          ),
        ),
  );
}

export function renderKnowledge(box: HTMLElement, d: Diagnosis | null, f: ScoredFinding | null) {
  if (!d || !f) {
    box.replaceChildren(el("p", { class: "muted", text: "Click a finding to see the knowledge-bank entries behind it." }));
    return;
  }
  if (!f.bank) {
    box.replaceChildren(el("p", { class: "muted", text: `${d.model.name} (${d.model.architecture}) has no knowledge bank.` }));
    return;
  }
  box.replaceChildren(
    section("Shared by the image and the finding (the bridge)", "shared", f.bank.shared),
    section(`The finding “${f.label}”`, "finding", f.bank.text_top),
    section("The image", "image", d.image_bank_top ?? []),
  );
}
