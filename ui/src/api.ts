// The only door to Rust: Tauri commands and the binary volume:// scheme.
import { invoke, convertFileSrc } from "@tauri-apps/api/core";

export interface Warning { code: string; message: string }
export interface SeriesInfo {
  index: number; uid: string; grouped_by: string; modality: string; description: string;
  slice_count: number; dimensions: [number, number, number]; spacing: [number, number, number];
  transfer_syntaxes: string[]; warnings: Warning[];
}
export interface VolumeSummary {
  path: string; format: string; format_detail: string; modality: string | null; description: string | null;
  dims: [number, number, number]; spacing: [number, number, number]; orientation: string; source_orientation: string;
  affine_lps: number[][]; hu_min: number; hu_max: number; series: SeriesInfo[]; chosen: number;
  files_scanned: number; non_dicom_skipped: number; warnings: Warning[]; generation: number;
}

export const startupPath = () => invoke<string | null>("startup_path");
export const openPath = (path: string, series?: string) => invoke<VolumeSummary>("open_path", { path, series: series ?? null });
export const pickPath = (folder: boolean) => invoke<string | null>("pick_path", { folder });
export const noticeStatus = () => invoke<boolean>("notice_status");
export const acknowledgeNotice = () => invoke<void>("acknowledge_notice");

/** The displayed volume's voxels: int16 HU, canonical LPS order, i fastest. */
export async function fetchVoxels(generation: number): Promise<Int16Array> {
  const res = await fetch(`${convertFileSrc("voxels", "volume")}?g=${generation}`);
  if (!res.ok) throw new Error(`volume transfer failed: ${res.status} ${await res.text()}`);
  return new Int16Array(await res.arrayBuffer());
}
