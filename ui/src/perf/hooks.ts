// The hooks the end-to-end test (tests/e2e/test_app.py) calls in the real window:
// window.__radbridge.{viewer, open, benchScroll, benchDraw, runId} (and window.__radbridgePerf,
// set by ./marks). Names and results are a contract with that test.
import type { Viewer } from "../viewer/viewer";
import { benchDraw, benchScroll, type ScrollOptions } from "./bench";

export interface TestHooks {
  viewer: Viewer;
  open: (path: string, series?: string) => Promise<void>;
  benchScroll: (n: number, opts?: ScrollOptions) => Promise<Record<string, unknown>>;
  benchDraw: (n: number) => number;
  runId: () => number | null;
}

export function installTestHooks(viewer: Viewer, open: TestHooks["open"], runId: TestHooks["runId"]): TestHooks {
  const hooks: TestHooks = {
    viewer,
    open,
    benchScroll: async (n, opts) => ({ ...(await benchScroll(viewer, n, opts)) }),
    benchDraw: (n) => benchDraw(viewer, n),
    runId,
  };
  (globalThis as unknown as { __radbridge: TestHooks }).__radbridge = hooks;
  return hooks;
}
