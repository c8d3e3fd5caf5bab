// Settings: the model folder (default: RADBRIDGE_MODEL, else models/demo) and the label set.
import * as api from "../api";
import { $ } from "../dom";

export function describeModel(s: api.SettingsView): string {
  if (!s.resolved_model) return `No model found (${s.resolved_from}). Choose a model folder.`;
  return `${s.model_ok ? "Model" : "Not a model folder (no model.json)"}: ${s.resolved_model} (from ${s.resolved_from})`;
}

export function bindSettings(onChange: (s: api.SettingsView) => void) {
  const show = (s: api.SettingsView) => {
    $<HTMLInputElement>("model-dir").value = s.model_dir ?? "";
    $<HTMLSelectElement>("label-set").value = s.label_set ?? "";
    $("settings-resolved").textContent = describeModel(s);
    onChange(s);
  };
  $("settings-button").onclick = async () => {
    show(await api.getSettings());
    $("settings").hidden = false;
  };
  $("settings-close").onclick = () => ($("settings").hidden = true);
  $("model-browse").onclick = async () => {
    const p = await api.pickModelDir();
    if (p) $<HTMLInputElement>("model-dir").value = p;
  };
  $("settings-save").onclick = async () => {
    try {
      show(await api.setSettings($<HTMLInputElement>("model-dir").value.trim(), $<HTMLSelectElement>("label-set").value));
    } catch (e) {
      $("settings-resolved").textContent = api.errorMessage(e);
    }
  };
  const recalibrate = async (action: "propose" | "apply" | "revert") => {
    const out = $("recalibrate-result");
    try {
      out.textContent = describeRecalibration(await api.recalibrateThresholds(action));
    } catch (e) {
      out.textContent = api.errorMessage(e);
    }
  };
  $("recalibrate-propose").onclick = () => recalibrate("propose");
  $("recalibrate-apply").onclick = () => recalibrate("apply");
  $("recalibrate-revert").onclick = () => recalibrate("revert");
  api.getSettings().then(show, () => {});
}

const fmt = (x: number | null) => (x == null ? "none" : x.toFixed(4));

/** One line per label whose threshold would change (or did), plus what happened. */
export function describeRecalibration(r: api.Recalibration): string {
  const head = r.applied ? `Applied (version ${r.applied.id}). ` : r.reverted ? `Reverted (version ${r.reverted.id}). ` : "";
  const changed = r.proposals.filter((p) => p.changed);
  if (changed.length === 0) return `${head}No threshold change proposed from the recorded verdicts (${r.proposals.length} labels checked).`;
  return (
    head +
    changed
      .map((p) => `${p.label}: ${fmt(p.current)} → ${fmt(p.proposed)} (false positives flagged ${p.false_positives_flagged_before} → ${p.false_positives_flagged_after})`)
      .join("; ")
  );
}
