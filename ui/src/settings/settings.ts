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
      $("settings-resolved").textContent = String(e);
    }
  };
  api.getSettings().then(show, () => {});
}
