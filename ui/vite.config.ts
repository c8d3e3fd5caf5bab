import { defineConfig } from "vite";

// The app embeds ui/dist (no dev server at run time).
export default defineConfig({
  clearScreen: false,
  build: { outDir: "dist", target: "es2021", emptyOutDir: true },
});
