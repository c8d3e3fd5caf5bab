//! DICOMweb: QIDO-RS search, WADO-RS retrieve (streamed to disk as it arrives), STOW-RS send.
//!
//! Hand-written over `ureq` rather than through the `dicom-web` crate (0.7), which was checked:
//! its WADO-RS decodes every instance into memory and would have us re-encode it (not byte
//! faithful, slower), its `reqwest` client cannot be given a connect timeout, TLS roots or a
//! per-read timeout, its HTTP errors drop the server's explanation, and it is async-only.

use serde_json::Value;

use crate::http::{encode, uid_segment, Http};
use crate::query::{SeriesMatch, StudyMatch, StudyQuery};
use crate::{Endpoint, ErrorKind, PacsError, Result, Server};

pub(crate) fn root(server: &Server) -> Result<&str> {
    match &server.endpoint {
        Endpoint::DicomWeb { root } => Ok(root),
        Endpoint::Dimse { .. } => Err(server.err(ErrorKind::Config("not a DICOMweb server".into()))),
    }
}

// --- DICOM JSON (PS3.18 F.2): {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, ...} ---

fn values<'v>(item: &'v Value, tag: &str) -> &'v [Value] {
    item.get(tag).and_then(|e| e.get("Value")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        // Person names: {"Alphabetic": "Doe^John"}.
        Value::Object(o) => o.get("Alphabetic").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The first value of `tag` as text ("" when absent).
pub(crate) fn text(item: &Value, tag: &str) -> String {
    values(item, tag).first().and_then(value_str).unwrap_or_default()
}

pub(crate) fn texts(item: &Value, tag: &str) -> Vec<String> {
    values(item, tag).iter().filter_map(value_str).collect()
}

fn int(item: &Value, tag: &str) -> Option<i64> {
    let v = values(item, tag).first()?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0).map(|f| f as i64))
        .or_else(|| v.as_str()?.trim().parse().ok())
}

pub(crate) mod tag {
    pub const STUDY_UID: &str = "0020000D";
    pub const SERIES_UID: &str = "0020000E";
    pub const SOP_UID: &str = "00080018";
    pub const PATIENT_ID: &str = "00100020";
    pub const PATIENT_NAME: &str = "00100010";
    pub const STUDY_DATE: &str = "00080020";
    pub const ACCESSION: &str = "00080050";
    pub const STUDY_DESCRIPTION: &str = "00081030";
    pub const MODALITIES_IN_STUDY: &str = "00080061";
    pub const MODALITY: &str = "00080060";
    pub const SERIES_DESCRIPTION: &str = "0008103E";
    pub const SERIES_NUMBER: &str = "00200011";
    pub const SERIES_INSTANCES: &str = "00201209";
    pub const REFERENCED_SOP_SEQUENCE: &str = "00081199";
    pub const FAILED_SOP_SEQUENCE: &str = "00081198";
    pub const REFERENCED_SOP_INSTANCE: &str = "00081155";
    pub const FAILURE_REASON: &str = "00081197";
}

/// QIDO-RS: the studies matching `query`, each with its series.
pub fn search(server: &Server, query: &StudyQuery) -> Result<Vec<StudyMatch>> {
    let http = Http::new(server)?;
    let root = root(server)?;
    let mut params: Vec<String> = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            params.push(format!("{k}={}", encode(v)));
        }
    };
    add("PatientID", &query.patient_id);
    add("PatientName", &query.patient_name);
    add("StudyDate", &query.study_date);
    add("ModalitiesInStudy", &query.modality);
    add("AccessionNumber", &query.accession);
    add("StudyInstanceUID", &query.study_uid);
    for t in [tag::STUDY_DESCRIPTION, tag::MODALITIES_IN_STUDY, tag::PATIENT_ID, tag::PATIENT_NAME, tag::ACCESSION] {
        params.push(format!("includefield={t}"));
    }
    let url = format!("{root}/studies?{}", params.join("&"));
    let studies = http.get_json(&url)?;
    let mut out = Vec::with_capacity(studies.len());
    for s in &studies {
        let study_uid = text(s, tag::STUDY_UID);
        if study_uid.is_empty() {
            return Err(server.err(ErrorKind::Json { url, msg: "a study without StudyInstanceUID".into() }));
        }
        let series = list_series(&http, root, &study_uid, None)?;
        let mut modalities = texts(s, tag::MODALITIES_IN_STUDY);
        if modalities.is_empty() {
            for se in &series {
                if !se.modality.is_empty() && !modalities.contains(&se.modality) {
                    modalities.push(se.modality.clone());
                }
            }
        }
        out.push(StudyMatch {
            study_uid,
            patient_id: text(s, tag::PATIENT_ID),
            patient_name: text(s, tag::PATIENT_NAME),
            study_date: text(s, tag::STUDY_DATE),
            accession: text(s, tag::ACCESSION),
            description: text(s, tag::STUDY_DESCRIPTION),
            modalities,
            series,
        });
    }
    Ok(out)
}

/// QIDO-RS series of a study (one series when `series_uid` is given).
pub(crate) fn list_series(http: &Http<'_>, root: &str, study_uid: &str, series_uid: Option<&str>) -> Result<Vec<SeriesMatch>> {
    let study = uid_segment(http.server, study_uid)?;
    let mut url = format!(
        "{root}/studies/{study}/series?includefield={}&includefield={}&includefield={}",
        tag::SERIES_DESCRIPTION,
        tag::SERIES_NUMBER,
        tag::SERIES_INSTANCES
    );
    if let Some(se) = series_uid {
        url.push_str(&format!("&SeriesInstanceUID={}", uid_segment(http.server, se)?));
    }
    let rows = match http.get_json(&url) {
        Err(PacsError { kind: ErrorKind::Http { status: 404, .. }, .. }) => Vec::new(),
        other => other?,
    };
    let mut out: Vec<SeriesMatch> = rows
        .iter()
        .map(|r| SeriesMatch {
            series_uid: text(r, tag::SERIES_UID),
            modality: text(r, tag::MODALITY),
            description: text(r, tag::SERIES_DESCRIPTION),
            number: int(r, tag::SERIES_NUMBER),
            instances: int(r, tag::SERIES_INSTANCES).and_then(|n| u64::try_from(n).ok()),
        })
        .filter(|s| !s.series_uid.is_empty())
        .collect();
    out.sort_by(|a, b| a.number.unwrap_or(i64::MAX).cmp(&b.number.unwrap_or(i64::MAX)).then(a.series_uid.cmp(&b.series_uid)));
    Ok(out)
}

/// QIDO-RS: the SOP Instance UIDs of a series.
pub(crate) fn list_instances(http: &Http<'_>, root: &str, study_uid: &str, series_uid: &str) -> Result<Vec<String>> {
    let url = format!(
        "{root}/studies/{}/series/{}/instances?includefield={}",
        uid_segment(http.server, study_uid)?,
        uid_segment(http.server, series_uid)?,
        tag::SOP_UID
    );
    let rows = match http.get_json(&url) {
        Err(PacsError { kind: ErrorKind::Http { status: 404, .. }, .. }) => Vec::new(),
        other => other?,
    };
    Ok(rows.iter().map(|r| text(r, tag::SOP_UID)).filter(|u| !u.is_empty()).collect())
}

/// Whether a study exists (QIDO-RS by StudyInstanceUID).
pub(crate) fn study_exists(http: &Http<'_>, root: &str, study_uid: &str) -> Result<bool> {
    let url = format!("{root}/studies?StudyInstanceUID={}", uid_segment(http.server, study_uid)?);
    Ok(!http.get_json(&url)?.is_empty())
}

/// C-ECHO's DICOMweb counterpart: a QIDO-RS query for nothing that proves we can reach the server
/// and that it accepts our credentials.
pub fn echo(server: &Server) -> Result<()> {
    let http = Http::new(server)?;
    let root = root(server)?;
    http.get_json(&format!("{root}/studies?limit=1&StudyInstanceUID=1.2.3.4.5.6.7.8.9.0"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_json_values() {
        let v: Value = serde_json::from_str(
            r#"{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
                "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
                "00200011": {"vr": "IS", "Value": [3]},
                "00201209": {"vr": "IS", "Value": ["20"]},
                "00081030": {"vr": "LO"}}"#,
        )
        .unwrap();
        assert_eq!(text(&v, tag::PATIENT_NAME), "Doe^John");
        assert_eq!(texts(&v, tag::MODALITIES_IN_STUDY), ["CT", "SR"]);
        assert_eq!(int(&v, tag::SERIES_NUMBER), Some(3));
        assert_eq!(int(&v, tag::SERIES_INSTANCES), Some(20));
        assert_eq!(text(&v, tag::STUDY_DESCRIPTION), "");
        assert_eq!(text(&v, "FFFFFFFF"), "");
    }
}
