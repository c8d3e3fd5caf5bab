//! `radbridge-app [PATH]`: the desktop review app; PATH (a DICOM folder or a NIfTI file) is
//! opened at start.

mod app;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RADBRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let initial = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    match app::run(initial) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
