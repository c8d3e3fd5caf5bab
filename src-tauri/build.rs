fn main() {
    // Tauri's build step: context, capabilities, icons.
    tauri_build::build();
}
