// What the PACS dialog sends and shows, as plain functions (tested in tests/unit/pacs.test.ts).
import type { PacsProgress, ServerEntry, StudyQuery } from "../api";

/** `2024-01-31` (an <input type=date> value) → `20240131`; anything else → "". */
export function dicomDate(v: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v.trim());
  return m ? `${m[1]}${m[2]}${m[3]}` : "";
}

/** A DICOM date range from two date inputs: `from-to`, `from-`, `-to`, one day, or null. */
export function dateRange(from: string, to: string): string | null {
  const a = dicomDate(from), b = dicomDate(to);
  if (a && b) return a === b ? a : `${a}-${b}`;
  if (a) return `${a}-`;
  if (b) return `-${b}`;
  return null;
}

/** The query of the form's fields: empty fields are left out (universal match). */
export function buildQuery(f: { pid: string; name: string; from: string; to: string; modality: string; accession: string }): StudyQuery {
  const v = (s: string) => (s.trim() ? s.trim() : null);
  return {
    patient_id: v(f.pid),
    patient_name: v(f.name),
    study_date: dateRange(f.from, f.to),
    modality: v(f.modality)?.toUpperCase() ?? null,
    accession: v(f.accession),
    study_uid: null,
  };
}

/** `Doe^John^^Dr` → `Doe, John Dr` (DICOM person name as people read it). */
export function personName(pn: string): string {
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = pn.split("^").map((s) => s.trim());
  const rest = [prefix, given, middle, suffix].filter(Boolean).join(" ");
  return family && rest ? `${family}, ${rest}` : family || rest;
}

/** `20240131` → `2024-01-31` (other text unchanged). */
export function isoDate(d: string): string {
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d;
}

/** The progress line of a retrieve. */
export function progressText(p: PacsProgress): string {
  const total = p.instances_total ?? null;
  const mb = (p.bytes / 1e6).toFixed(1);
  return total !== null ? `${p.instances_done} of ${total} instances (${mb} MB)` : `${p.instances_done} instances (${mb} MB)`;
}

/** A server entry from the form; the secret travels separately (null keeps the stored one). */
export function serverFromForm(f: { name: string; address: string; auth: string; user: string; aet: string; port: string }): ServerEntry {
  const port = Number(f.port);
  return {
    name: f.name.trim(),
    kind: "",
    address: f.address.trim(),
    auth: f.auth === "basic" || f.auth === "bearer" ? f.auth : "none",
    user: f.user.trim() || null,
    calling_aet: f.aet.trim() || null,
    scp_port: Number.isInteger(port) && port > 0 && port < 65536 ? port : null,
    ca_file: null,
  };
}
