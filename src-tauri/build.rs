fn main() {
    // Only the desktop shell needs Tauri's build step (context, capabilities, icons).
    #[cfg(feature = "desktop")]
    tauri_build::build();
}
