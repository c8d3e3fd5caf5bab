// The PACS dialog: servers (add, edit, test), a query form, studies expanding into their
// series, retrieve with progress and cancel, then the study opens from the library. And "Send
// report to PACS" in the Report section, after a confirmation naming the patient, the study
// and the server. All of it goes through api.ts; the shell audits every query, retrieve, send.
import * as api from "../api";
import { $, el } from "../dom";
import { buildQuery, isoDate, personName, progressText, serverFromForm } from "./query";

interface Hooks {
  /** Open a library study (the retrieved one). */
  openStudy: (studyId: number) => Promise<void>;
  /** The current run (for the report). */
  runId: () => number | null;
}

let servers: api.ServerEntry[] = [];
let retrieving = false;

const status = (text: string) => ($("pacs-status").textContent = text);

function fillServers() {
  for (const id of ["pacs-server", "pacs-send-server"]) {
    const sel = $<HTMLSelectElement>(id);
    const keep = sel.value;
    sel.replaceChildren(...servers.map((s) => el("option", { value: s.name, text: `${s.name} (${s.kind})` })));
    if (servers.some((s) => s.name === keep)) sel.value = keep;
  }
  const none = servers.length === 0;
  for (const id of ["pacs-test", "pacs-edit", "pacs-search"]) $<HTMLButtonElement>(id).disabled = none;
}

async function loadServers() {
  try {
    servers = await api.pacsServers();
  } catch (e) {
    status(`servers: ${api.errorMessage(e)}`);
  }
  fillServers();
}

const current = () => $<HTMLSelectElement>("pacs-server").value;

function showForm(entry: api.ServerEntry | null) {
  const f = $("pacs-server-form");
  f.hidden = false;
  f.dataset.editing = entry?.name ?? "";
  $<HTMLInputElement>("pacs-f-name").value = entry?.name ?? "";
  $<HTMLInputElement>("pacs-f-address").value = entry?.address ?? "";
  $<HTMLSelectElement>("pacs-f-auth").value = entry?.auth ?? "none";
  $<HTMLInputElement>("pacs-f-user").value = entry?.user ?? "";
  $<HTMLInputElement>("pacs-f-secret").value = "";
  $<HTMLInputElement>("pacs-f-aet").value = entry?.calling_aet ?? "";
  $<HTMLInputElement>("pacs-f-port").value = entry?.scp_port ? String(entry.scp_port) : "";
  $<HTMLButtonElement>("pacs-f-remove").hidden = !entry;
}

async function saveForm() {
  const v = (id: string) => $<HTMLInputElement>(id).value;
  const entry = serverFromForm({ name: v("pacs-f-name"), address: v("pacs-f-address"), auth: v("pacs-f-auth"), user: v("pacs-f-user"), aet: v("pacs-f-aet"), port: v("pacs-f-port") });
  // Settings the form does not show (a CA file set with the CLI) are kept.
  entry.ca_file = servers.find((s) => s.name === $("pacs-server-form").dataset.editing)?.ca_file ?? null;
  const secret = v("pacs-f-secret") || null;
  try {
    const saved = await api.pacsSaveServer(entry, secret);
    $<HTMLInputElement>("pacs-f-secret").value = "";
    $("pacs-server-form").hidden = true;
    await loadServers();
    $<HTMLSelectElement>("pacs-server").value = saved.name;
    status(`saved ${saved.name} (${saved.kind})`);
  } catch (e) {
    status(`not saved: ${api.errorMessage(e)}`);
  }
}

function seriesRow(study: api.StudyMatch, s: api.SeriesMatch, hooks: Hooks): HTMLElement {
  const b = el("button", { "data-testid": "pacs-retrieve-series", "data-series-uid": s.series_uid, text: "Retrieve" });
  b.onclick = () => void retrieve(study.study_uid, s.series_uid, hooks);
  return el(
    "li",
    { class: "pacs-series", "data-testid": "pacs-series", "data-series-uid": s.series_uid, title: s.series_uid },
    el("span", { text: s.modality || "?" }),
    el("span", { text: s.number !== null ? `#${s.number}` : "" }),
    el("span", { class: "grow", text: s.description || "(no description)" }),
    el("span", { class: "muted", text: s.instances !== null ? `${s.instances} images` : "" }),
    b,
  );
}

function studyRow(study: api.StudyMatch, hooks: Hooks): HTMLElement {
  const series = el("ul", { class: "pacs-series-list", hidden: true }, ...study.series.map((s) => seriesRow(study, s, hooks)));
  const toggle = el("button", { class: "link", text: `${study.series.length} series ▸`, "data-testid": "pacs-expand" });
  toggle.onclick = () => {
    series.hidden = !series.hidden;
    toggle.textContent = `${study.series.length} series ${series.hidden ? "▸" : "▾"}`;
  };
  const get = el("button", { "data-testid": "pacs-retrieve", "data-study-uid": study.study_uid, text: "Retrieve study" });
  get.onclick = () => void retrieve(study.study_uid, null, hooks);
  return el(
    "li",
    { class: "pacs-study", "data-testid": "pacs-study", "data-study-uid": study.study_uid, title: study.study_uid },
    el(
      "div",
      { class: "row" },
      el("span", { class: "pacs-patient", text: `${personName(study.patient_name) || "(no name)"} · ${study.patient_id || "no ID"}` }),
      el("span", { text: isoDate(study.study_date) }),
      el("span", { text: study.modalities.join("/") }),
      el("span", { class: "grow", text: study.description || (study.accession ? `accession ${study.accession}` : "") }),
      toggle,
      get,
    ),
    series,
  );
}

async function search(hooks: Hooks) {
  const v = (id: string) => $<HTMLInputElement>(id).value;
  const query = buildQuery({ pid: v("pacs-q-pid"), name: v("pacs-q-name"), from: v("pacs-q-from"), to: v("pacs-q-to"), modality: v("pacs-q-modality"), accession: v("pacs-q-accession") });
  status(`searching ${current()} …`);
  $("pacs-results").replaceChildren();
  try {
    const found = await api.pacsSearch(current(), query);
    $("pacs-results").replaceChildren(...found.map((s) => studyRow(s, hooks)));
    status(found.length ? `${found.length} stud${found.length === 1 ? "y" : "ies"} on ${current()}` : `no study on ${current()} matches`);
  } catch (e) {
    status(`search failed: ${api.errorMessage(e)}`);
  }
}

async function retrieve(studyUid: string, seriesUid: string | null, hooks: Hooks) {
  if (retrieving) return;
  retrieving = true;
  const bar = $<HTMLProgressElement>("pacs-progress");
  bar.hidden = false;
  bar.removeAttribute("value");
  $("pacs-cancel").hidden = false;
  status(`retrieving from ${current()} …`);
  const stop = await api.onPacsProgress((p) => {
    if (p.instances_total) {
      bar.max = p.instances_total;
      bar.value = p.instances_done;
    }
    status(`retrieving: ${progressText(p)}`);
  });
  try {
    const r = await api.pacsRetrieve(current(), studyUid, seriesUid);
    status(`retrieved ${r.instances} instances (${r.fetched} now); opening …`);
    $("pacs").hidden = true;
    await hooks.openStudy(r.study_id);
  } catch (e) {
    status(api.errorCode(e) === "cancelled" ? "retrieve cancelled (what was complete is kept; retrieve again to finish)" : `retrieve failed: ${api.errorMessage(e)}`);
  } finally {
    stop();
    retrieving = false;
    bar.hidden = true;
    $("pacs-cancel").hidden = true;
  }
}

/** The confirmation text before a send: patient, study, server. */
function confirmText(p: api.SendPreview): string {
  const patient = `${p.patient_name ? personName(p.patient_name) : "(no name)"} (ID ${p.patient_id ?? "none"})`;
  const study = `${p.study_description ?? "study"} of ${p.study_date ? isoDate(p.study_date) : "unknown date"}`;
  return `Send the findings report of ${patient}, ${study}, to ${p.server} (${p.address})? It carries the patient's identifiers.`;
}

function bindSend(hooks: Hooks) {
  const report = $("report-status");
  $("pacs-send").onclick = async () => {
    const name = $<HTMLSelectElement>("pacs-send-server").value;
    if (!name) {
      report.textContent = "add a PACS server first (PACS → Add server)";
      return;
    }
    try {
      const p = await api.pacsSendPreview(name);
      $("pacs-confirm-text").textContent = confirmText(p);
      $("pacs-confirm").hidden = false;
      $("pacs-confirm").scrollIntoView({ block: "nearest" });
    } catch (e) {
      report.textContent = `send: ${api.errorMessage(e)}`;
    }
  };
  $("pacs-send-cancel").onclick = () => ($("pacs-confirm").hidden = true);
  $("pacs-send-confirm").onclick = async () => {
    $("pacs-confirm").hidden = true;
    const name = $<HTMLSelectElement>("pacs-send-server").value;
    const anyway = $<HTMLInputElement>("report-anyway").checked;
    report.textContent = `sending to ${name} …`;
    try {
      const r = await api.pacsSendReport(name, hooks.runId(), anyway);
      const ok = r.filter((x) => x.accepted).length;
      report.textContent = ok === r.length ? `sent to ${name}: stored` : `sent to ${name}: ${r.map((x) => `${x.accepted ? "stored" : "refused"} (${x.detail})`).join("; ")}`;
      report.dataset.sent = ok === r.length ? "stored" : "refused";
    } catch (e) {
      report.textContent = `send failed: ${api.errorMessage(e)}`;
      report.dataset.sent = "failed";
    }
  };
}

export function bindPacs(hooks: Hooks) {
  $("pacs-open").onclick = () => {
    $("pacs").hidden = false;
    void loadServers().then(() => {
      if (!servers.length) showForm(null);
    });
  };
  $("pacs-close").onclick = () => ($("pacs").hidden = true);
  $("pacs-add").onclick = () => showForm(null);
  $("pacs-edit").onclick = () => showForm(servers.find((s) => s.name === current()) ?? null);
  $("pacs-f-cancel").onclick = () => ($("pacs-server-form").hidden = true);
  $("pacs-server-form").onsubmit = (e) => {
    e.preventDefault();
    void saveForm();
  };
  $("pacs-f-remove").onclick = async () => {
    const name = $("pacs-server-form").dataset.editing;
    if (!name) return;
    try {
      await api.pacsRemoveServer(name);
      $("pacs-server-form").hidden = true;
      await loadServers();
      status(`removed ${name}`);
    } catch (e) {
      status(`not removed: ${api.errorMessage(e)}`);
    }
  };
  $("pacs-test").onclick = async () => {
    status(`testing ${current()} …`);
    try {
      status(await api.pacsTestServer(current()));
    } catch (e) {
      status(`test failed: ${api.errorMessage(e)}`);
    }
  };
  $("pacs-query").onsubmit = (e) => {
    e.preventDefault();
    void search(hooks);
  };
  $("pacs-cancel").onclick = () => void api.pacsCancel();
  bindSend(hooks);
  void loadServers();
}
