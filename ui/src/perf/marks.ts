// performance.now() marks the end-to-end test reads (window.__radbridgePerf).
const marks: Record<string, number> = {};
(globalThis as unknown as { __radbridgePerf: Record<string, number> }).__radbridgePerf = marks;

export function mark(name: string) {
  marks[name] = performance.now();
}
export function resetMarks() {
  for (const k of Object.keys(marks)) delete marks[k];
}
export function marksSnapshot(): Record<string, number> {
  return { ...marks };
}
