// Knowledge panel: the knowledge-bank entries behind a finding — the image's strongest, the
// finding's strongest, and the shared ones that bridge them — with weights and words.
import type { BankEntry, Diagnosis, ScoredFinding } from "../api";
import { el } from "../dom";

export type Kind = "image" | "finding" | "shared";

export function entryWeight(e: BankEntry, kind: Kind): string {
  if (kind === "shared") return `${(e.image_weight ?? 0).toFixed(3)} × ${(e.text_weight ?? 0).toFixed(3)}`;
  return (e.weight ?? 0).toFixed(3);
}

/** Which of an entry's words came from this site's feedback (`bank describe --feedback`):
 * whether its description is one, and the other site sentences among its examples. */
export function siteWords(e: BankEntry): { description: boolean; others: string[] } {
  const site = e.site_words ?? [];
  const description = e.description != null && site.includes(e.description);
  return { description, others: site.filter((s) => s !== e.description) };
}

function siteBadge() {
  return el("span", { class: "site-badge", "data-testid": "bank-site-word", title: "a sentence from this site's confirmed or missed findings", text: "site" });
}

function entryText(e: BankEntry) {
  const site = siteWords(e);
  const text = el("span", { class: "entry-text", text: e.description ?? "(no words for this entry: run `radbridge bank describe` for this model)" });
  if (site.description) text.append(" ", siteBadge());
  if (site.others.length === 0) return text;
  return el(
    "span",
    { class: "entry-words" },
    text,
    el("span", { class: "entry-site-words" }, ...site.others.map((s) => el("span", { class: "entry-site-word" }, siteBadge(), " ", s))),
  );
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
              entryText(e),
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
