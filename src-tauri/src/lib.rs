//! Radbridge core: CT volumes (DICOM series and NIfTI) in patient geometry, and the exact
//! input preprocessing of the BrgSA and CT-CLIP models. Builds and tests without a window;
//! the CLI (`radbridge`) and the desktop app call the same functions.

pub mod analysis;
pub mod bank;
pub mod bench;
pub mod eval;
pub mod feedback;
pub mod heatmap;
pub mod model;
pub mod preprocess;
pub mod report;
pub mod summarize;
pub mod train;
pub mod volume;
pub mod zeroshot;

#[cfg(feature = "desktop")]
pub mod app;
