// Window presets (width / level in HU), as radiology viewers name them.
export interface Window { width: number; level: number }

export const PRESETS: Record<string, Window & { label: string; key: string }> = {
  lung: { label: "Lung", key: "1", width: 1500, level: -600 },
  mediastinum: { label: "Mediastinum", key: "2", width: 350, level: 50 },
  bone: { label: "Bone", key: "3", width: 2000, level: 300 },
  soft_tissue: { label: "Soft tissue", key: "4", width: 400, level: 40 },
};

/** Grey level 0..255 of a HU value under a window (linear ramp, clamped). */
export function gray(hu: number, w: Window): number {
  const lo = w.level - w.width / 2;
  const v = ((hu - lo) / w.width) * 255;
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}
