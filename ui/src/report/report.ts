// Report export: format (PDF / JSON / DICOM SR), de-identified by default.
import * as api from "../api";
import { $ } from "../dom";

export function bindReport(getRun: () => number | null, audit: (msg: string) => void) {
  $("export-report").onclick = async () => {
    const format = $<HTMLSelectElement>("report-format").value as api.Format; // the options are pdf, json, sr
    const deid = $<HTMLInputElement>("report-deid").checked;
    const anyway = $<HTMLInputElement>("report-anyway").checked;
    const status = $("report-status");
    status.textContent = `exporting ${format.toUpperCase()}…`;
    try {
      const r = await api.exportReport(format, deid, getRun(), anyway);
      let text = r ? `saved ${r.path}` : "export cancelled";
      if (r && deid && r.free_text?.length) {
        text += ` (free text exported as typed, check it: ${r.free_text.join(", ")})`;
      }
      if (r?.key_images_withheld) text += ` (key images withheld: ${r.key_images_withheld})`;
      status.textContent = text;
      if (r) audit(`exported ${r.format} to ${r.path}`);
    } catch (e) {
      status.textContent = `export failed: ${api.errorMessage(e)}`;
    }
  };
}
