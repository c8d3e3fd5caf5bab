import * as api from "./api";
import { PRESETS } from "./presets";
import { Mpr } from "./viewer";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const mpr = new Mpr($("viewer"));
let current: api.VolumeSummary | null = null;

mpr.onChange = (s) => ($("status").textContent = s);
mpr.onWindow = (w) => {
  $("wl-readout").textContent = `W ${Math.round(w.width)}  L ${Math.round(w.level)}`;
  for (const b of document.querySelectorAll<HTMLButtonElement>("#presets button")) {
    const p = PRESETS[b.dataset.preset!];
    b.classList.toggle("active", p.width === w.width && p.level === w.level);
  }
};

// Preset buttons.
for (const [name, p] of Object.entries(PRESETS)) {
  const b = document.createElement("button");
  b.textContent = p.label;
  b.dataset.preset = name;
  b.dataset.testid = `preset-${name}`;
  b.title = `${p.label}: W ${p.width} / L ${p.level} (key ${p.key})`;
  b.onclick = () => mpr.setWindow(p);
  $("presets").append(b);
}

function showError(msg: string | null) {
  const box = $("error-box");
  box.hidden = !msg;
  box.textContent = msg ?? "";
}

function row(label: string, value: string) {
  const d = document.createElement("div");
  const a = document.createElement("span");
  const b = document.createElement("span");
  a.textContent = label;
  b.textContent = value;
  d.append(a, b);
  return d;
}

function render(s: api.VolumeSummary) {
  const info = $("study-info");
  info.replaceChildren(
    row("Source", s.path.split("/").filter(Boolean).pop() ?? s.path),
    row("Format", s.format_detail),
    row("Modality", s.modality ?? "unknown"),
    row("Description", s.description ?? ""),
    row("Grid", s.dims.join(" × ")),
    row("Spacing (mm)", s.spacing.map((x) => x.toFixed(3)).join(" × ")),
    row("Stored orientation", s.source_orientation),
    row("HU range", `${Math.round(s.hu_min)} .. ${Math.round(s.hu_max)}`),
  );
  const list = $("series-list");
  list.replaceChildren(
    ...s.series.map((se) => {
      const li = document.createElement("li");
      li.dataset.testid = "series";
      li.className = se.index === s.chosen ? "chosen" : "";
      li.textContent = `${se.index}: ${se.modality} ${se.description || "(no description)"} — ${se.slice_count} slices, ${se.dimensions[0]}×${se.dimensions[1]}`;
      li.onclick = () => se.index !== s.chosen && open(s.path, String(se.index));
      return li;
    }),
  );
  const warnings = $("warnings");
  warnings.replaceChildren(
    ...s.warnings.map((w) => {
      const li = document.createElement("li");
      li.dataset.testid = "load-warning";
      li.dataset.code = w.code;
      li.textContent = w.message;
      return li;
    }),
  );
  if (s.warnings.length === 0) {
    const li = document.createElement("li");
    li.textContent = "none";
    li.style.background = "transparent";
    li.style.borderLeft = "none";
    warnings.append(li);
  }
}

async function open(path: string, series?: string) {
  $("status").textContent = `loading ${path} …`;
  try {
    const s = await api.openPath(path, series);
    const voxels = await api.fetchVoxels(s.generation);
    if (voxels.length !== s.dims[0] * s.dims[1] * s.dims[2]) throw new Error("volume transfer was incomplete");
    current = s;
    showError(null);
    render(s);
    mpr.load(voxels, s.dims, s.spacing);
    document.title = `Radbridge — ${s.path}`;
  } catch (e) {
    // The previous volume stays on screen; the error names the file and the problem.
    showError(String(e));
    $("status").textContent = current ? mpr.status() : "";
  }
}

async function pick(folder: boolean) {
  const p = await api.pickPath(folder);
  if (p) await open(p);
}

$("open-file").onclick = () => pick(false);
$("open-folder").onclick = () => pick(true);
$("help-button").onclick = () => ($("help").hidden = false);
$("help-close").onclick = () => ($("help").hidden = true);

let hovered: EventTarget | null = null;
document.addEventListener("mouseover", (e) => (hovered = e.target));
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey && e.key.toLowerCase() === "o") { e.preventDefault(); pick(e.shiftKey); return; }
  if (e.key === "?") { $("help").hidden = !$("help").hidden; return; }
  if (e.key === "Escape") { $("help").hidden = true; return; }
  const preset = Object.values(PRESETS).find((p) => p.key === e.key);
  if (preset) { mpr.setWindow(preset); return; }
  if (e.key === "r" || e.key === "R") { mpr.resetView(); mpr.setWindow(PRESETS.soft_tissue); return; }
  const v = mpr.viewUnder(hovered) ?? mpr.views[0];
  const step = e.key === "ArrowUp" ? -1 : e.key === "ArrowDown" ? 1 : e.key === "PageUp" ? -10 : e.key === "PageDown" ? 10 : 0;
  if (step) { e.preventDefault(); mpr.step(v, step); }
});

// Drag and drop a file or folder onto the window.
import("@tauri-apps/api/webview").then(({ getCurrentWebview }) =>
  getCurrentWebview().onDragDropEvent((ev) => {
    if (ev.payload.type === "drop" && ev.payload.paths.length > 0) open(ev.payload.paths[0]);
  }),
);

async function start() {
  mpr.setWindow(PRESETS.soft_tissue);
  if (!(await api.noticeStatus())) {
    $("notice").hidden = false;
    $("acknowledge").onclick = async () => {
      await api.acknowledgeNotice().catch((e) => showError(String(e)));
      $("notice").hidden = true;
    };
  }
  const p = await api.startupPath();
  if (p) await open(p);
}
start();
