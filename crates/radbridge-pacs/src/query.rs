//! What a PACS query asks for and what it answers: the study and series matches shared by
//! DICOMweb (QIDO-RS) and DIMSE (C-FIND), in the shape `radbridge pacs search --json` prints.

use serde::{Deserialize, Serialize};

/// A DICOM UID as we accept it from a user or a server: 1 to 64 digits and dots, not starting
/// with a dot. Nothing else may become a file name or a URL path segment.
pub fn is_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !uid.starts_with('.')
}

/// Study-level search keys. Empty fields are not sent (universal match); the rest match as
/// the DICOM standard says (`*` wildcards in names, `YYYYMMDD-YYYYMMDD` date ranges).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct StudyQuery {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    /// `YYYYMMDD` or a range `YYYYMMDD-YYYYMMDD` (either end may be open).
    pub study_date: Option<String>,
    /// Matched against ModalitiesInStudy, e.g. `CT`.
    pub modality: Option<String>,
    pub accession: Option<String>,
    pub study_uid: Option<String>,
}

/// One study found on the server, with its series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct StudyMatch {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub study_date: String,
    pub accession: String,
    pub description: String,
    pub modalities: Vec<String>,
    pub series: Vec<SeriesMatch>,
}

/// One series of a found study.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct SeriesMatch {
    pub series_uid: String,
    pub modality: String,
    pub description: String,
    /// SeriesNumber, when the server gives one.
    pub number: Option<i64>,
    /// NumberOfSeriesRelatedInstances, when the server gives it.
    pub instances: Option<u64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn uids_safe_for_file_names_and_urls() {
        assert!(super::is_uid("1.2.840.10008.5.1.4.1.1.2"));
        for bad in ["", "..", "../x", "1.2/3", "1.2\\3", ".1.2", "1 2", &"1".repeat(65)] {
            assert!(!super::is_uid(bad), "{bad}");
        }
    }
}
