//! The report as a DICOM Comprehensive SR (SOP class 1.2.840.10008.5.1.4.1.1.88.33), explicit
//! VR little endian, written with dicom-object's in-memory API.
//!
//! Content tree (concept names: DCM / LOINC where one fits, else the private coding scheme
//! `99RDBG`):
//!
//! ```text
//! CONTAINER (18748-4, LN, "Diagnostic Imaging Report")
//!   CONTAINS TEXT      (121106, DCM, "Comment")            research-use notice
//!   CONTAINS TEXT      (111001, DCM, "Algorithm Name")      model name
//!   CONTAINS TEXT      (111003, DCM, "Algorithm Version")   weights SHA-256
//!   CONTAINS CONTAINER (121070, DCM, "Findings")
//!     CONTAINS CONTAINER (125007, DCM, "Measurement Group")      one per finding
//!       CONTAINS TEXT  (121071, DCM, "Finding")                  label
//!       CONTAINS NUM   (RB-SCORE, 99RDBG, "Zero-shot score")     unit (1, UCUM, "no units")
//!       CONTAINS NUM   (RB-THRESHOLD, 99RDBG, "Decision threshold")
//!       CONTAINS TEXT  (RB-FLAGGED, 99RDBG, "Flagged")           yes / no / not thresholded
//!       CONTAINS TEXT  (RB-VERDICT, 99RDBG, "Reviewer verdict")  or UNCONFIRMED
//!       CONTAINS TEXT  (RB-PEAK, 99RDBG, "Heat map peak")        LPS mm and voxel
//!       CONTAINS IMAGE (121112, DCM, "Source of Measurement")    the slice of the peak
//!       CONTAINS TEXT  (RB-KNOWLEDGE, 99RDBG, "Knowledge-bank entry")
//! ```
//!
//! The source series is referenced in CurrentRequestedProcedureEvidenceSequence (study, series
//! and SOP instance UIDs) when it is DICOM; de-identified reports use the remapped UIDs and
//! carry PatientIdentityRemoved, DeidentificationMethod(CodeSequence) and
//! LongitudinalTemporalInformationModified.

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

use radbridge_volume::SourceFormat;

use super::{now_utc, pdf::verdict_text, Report, ReportError, Result};

/// Comprehensive SR Storage.
pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
/// Private coding scheme of the Radbridge concepts.
pub const SCHEME: &str = "99RDBG";

type Obj = InMemDicomObject;

fn el(tag: Tag, vr: VR, v: &str) -> DataElement<Obj> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.to_string()))
}

fn el_opt(tag: Tag, vr: VR, v: &Option<String>) -> DataElement<Obj> {
    match v.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => el(tag, vr, s),
        None => DataElement::new(tag, vr, PrimitiveValue::Empty),
    }
}

fn seq(tag: Tag, items: Vec<Obj>) -> DataElement<Obj> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> Obj {
    Obj::from_element_iter([
        el(tags::CODE_VALUE, VR::SH, value),
        el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        el(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

fn concept(value: &str, scheme: &str, meaning: &str) -> DataElement<Obj> {
    seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code(value, scheme, meaning)])
}

fn text_item(c: (&str, &str, &str), text: &str) -> Obj {
    Obj::from_element_iter([
        el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        el(tags::VALUE_TYPE, VR::CS, "TEXT"),
        concept(c.0, c.1, c.2),
        el(tags::TEXT_VALUE, VR::UT, text),
    ])
}

/// DS text of a number (at most 16 characters).
fn ds(x: f64) -> String {
    for prec in (0..=8).rev() {
        let s = format!("{x:.prec$}");
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{x:.3e}")
}

fn num_item(c: (&str, &str, &str), x: f32) -> Obj {
    let mv = Obj::from_element_iter([
        el(tags::NUMERIC_VALUE, VR::DS, &ds(x as f64)),
        seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![code("1", "UCUM", "no units")]),
    ]);
    Obj::from_element_iter([
        el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        el(tags::VALUE_TYPE, VR::CS, "NUM"),
        concept(c.0, c.1, c.2),
        seq(tags::MEASURED_VALUE_SEQUENCE, vec![mv]),
    ])
}

fn container(rel: Option<&str>, c: (&str, &str, &str), children: Vec<Obj>) -> Obj {
    let mut o = Obj::new_empty();
    if let Some(r) = rel {
        o.put(el(tags::RELATIONSHIP_TYPE, VR::CS, r));
    }
    o.put(el(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
    o.put(concept(c.0, c.1, c.2));
    o.put(el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    if !children.is_empty() {
        o.put(seq(tags::CONTENT_SEQUENCE, children));
    }
    o
}

/// A UID for a new object of this report: 2.25 + hash of the report's identity and a role.
fn new_uid(r: &Report, role: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        role,
        &r.created,
        &r.model.weights_sha256,
        r.study.study_instance_uid.as_deref().unwrap_or(""),
        r.study.series_instance_uid.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for f in &r.findings {
        h.update(f.label.as_bytes());
        h.update(f.score.to_le_bytes());
    }
    let d: [u8; 32] = h.finalize().into();
    format!("2.25.{}", u128::from_be_bytes(d[..16].try_into().expect("16 bytes")))
}

/// DICOM DA and TM of an RFC 3339 UTC timestamp (`YYYY-MM-DDTHH:MM:SS…`).
fn da_tm(ts: &str) -> Option<(String, String)> {
    let date = ts.get(..10)?;
    let time = ts.get(11..19)?;
    let da: String = date.chars().filter(|c| *c != '-').collect();
    let tm: String = time.chars().filter(|c| *c != ':').collect();
    (da.len() == 8 && tm.len() == 6 && da.bytes().chain(tm.bytes()).all(|b| b.is_ascii_digit())).then_some((da, tm))
}

/// The SR data set of a report.
pub fn build(r: &Report) -> Obj {
    // The report's own time (shifted with the study's dates when de-identified).
    let (da, tm) = da_tm(&r.created).unwrap_or_else(|| {
        let (_, da, tm) = now_utc();
        (da, tm)
    });
    let s = &r.study;
    let mut o = Obj::new_empty();
    // SOP Common
    o.put(el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    o.put(el(tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_SR));
    o.put(el(tags::SOP_INSTANCE_UID, VR::UI, &new_uid(r, "sop")));
    o.put(el(tags::INSTANCE_CREATION_DATE, VR::DA, &da));
    o.put(el(tags::INSTANCE_CREATION_TIME, VR::TM, &tm));
    // Patient
    o.put(el_opt(tags::PATIENT_NAME, VR::PN, &s.patient_name));
    o.put(el_opt(tags::PATIENT_ID, VR::LO, &s.patient_id));
    o.put(el_opt(tags::PATIENT_BIRTH_DATE, VR::DA, &s.patient_birth_date));
    o.put(el_opt(tags::PATIENT_SEX, VR::CS, &s.patient_sex));
    if let Some(a) = s.patient_age.as_deref().filter(|a| a.len() == 4) {
        o.put(el(tags::PATIENT_AGE, VR::AS, a));
    }
    if let Some(d) = &r.deidentification {
        o.put(el(tags::PATIENT_IDENTITY_REMOVED, VR::CS, &d.patient_identity_removed));
        o.put(DataElement::new(tags::DEIDENTIFICATION_METHOD, VR::LO, PrimitiveValue::Strs(d.method.iter().cloned().collect())));
        o.put(seq(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE, d.method_codes.iter().map(|(v, sch, m)| code(v, sch, m)).collect()));
        o.put(el(tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, VR::CS, "MODIFIED"));
    }
    // General Study
    let study_uid = s.study_instance_uid.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| new_uid(r, "study"));
    o.put(el(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid));
    o.put(el_opt(tags::STUDY_DATE, VR::DA, &s.study_date));
    o.put(el_opt(tags::STUDY_TIME, VR::TM, &s.study_time));
    o.put(el_opt(tags::REFERRING_PHYSICIAN_NAME, VR::PN, &s.referring_physician));
    o.put(el_opt(tags::STUDY_ID, VR::SH, &s.study_id));
    o.put(el_opt(tags::ACCESSION_NUMBER, VR::SH, &s.accession_number));
    if let Some(d) = s.study_description.as_deref().filter(|d| !d.is_empty()) {
        o.put(el(tags::STUDY_DESCRIPTION, VR::LO, d));
    }
    if let Some(i) = s.institution.as_deref().filter(|d| !d.is_empty()) {
        o.put(el(tags::INSTITUTION_NAME, VR::LO, i));
    }
    // SR Document Series
    o.put(el(tags::MODALITY, VR::CS, "SR"));
    o.put(el(tags::SERIES_INSTANCE_UID, VR::UI, &new_uid(r, "series")));
    o.put(el(tags::SERIES_NUMBER, VR::IS, "9001"));
    o.put(el(tags::SERIES_DESCRIPTION, VR::LO, "Radbridge findings (research use only)"));
    o.put(seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]));
    // General Equipment
    o.put(el(tags::MANUFACTURER, VR::LO, "Radbridge"));
    o.put(el(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")));
    // SR Document General
    o.put(el(tags::INSTANCE_NUMBER, VR::IS, "1"));
    let complete = r.review.unreviewed_flagged.is_empty();
    o.put(el(tags::COMPLETION_FLAG, VR::CS, if complete { "COMPLETE" } else { "PARTIAL" }));
    if !complete {
        o.put(el(tags::COMPLETION_FLAG_DESCRIPTION, VR::LO, "flagged findings exported without a reviewer verdict"));
    }
    o.put(el(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"));
    o.put(el(tags::CONTENT_DATE, VR::DA, &da));
    o.put(el(tags::CONTENT_TIME, VR::TM, &tm));
    o.put(seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
    let referenced = s.source_format == SourceFormat::Dicom
        && !s.instances.is_empty()
        && s.series_instance_uid.as_deref().is_some_and(|u| !u.is_empty())
        && s.study_instance_uid.as_deref().is_some_and(|u| !u.is_empty());
    if referenced {
        let sops: Vec<Obj> = s
            .instances
            .iter()
            .map(|i| {
                Obj::from_element_iter([
                    el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &i.sop_class_uid),
                    el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &i.sop_instance_uid),
                ])
            })
            .collect();
        let series = Obj::from_element_iter([
            el(tags::SERIES_INSTANCE_UID, VR::UI, s.series_instance_uid.as_deref().unwrap_or_default()),
            seq(tags::REFERENCED_SOP_SEQUENCE, sops),
        ]);
        let study =
            Obj::from_element_iter([el(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid), seq(tags::REFERENCED_SERIES_SEQUENCE, vec![series])]);
        o.put(seq(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, vec![study]));
    }
    // SR Document Content
    let mut top = vec![
        text_item(("121106", "DCM", "Comment"), &r.disclaimer),
        text_item(("111001", "DCM", "Algorithm Name"), &r.model.name),
        text_item(("111003", "DCM", "Algorithm Version"), &format!("weights sha256 {}", r.model.weights_sha256)),
    ];
    if let Some(n) = &r.model.notice {
        top.push(text_item(("121106", "DCM", "Comment"), n));
    }
    let mut groups = Vec::new();
    for f in &r.findings {
        let mut items = vec![text_item(("121071", "DCM", "Finding"), &f.label), num_item(("RB-SCORE", SCHEME, "Zero-shot score"), f.score)];
        if let Some(t) = f.threshold {
            items.push(num_item(("RB-THRESHOLD", SCHEME, "Decision threshold"), t));
        }
        let flagged = match f.flagged {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not thresholded",
        };
        items.push(text_item(("RB-FLAGGED", SCHEME, "Flagged"), flagged));
        let mut verdict = verdict_text(f);
        if let Some(at) = f.review.as_ref().map(|r| r.at.clone()) {
            verdict = format!("{verdict} at {at}");
        }
        items.push(text_item(("RB-VERDICT", SCHEME, "Reviewer verdict"), &verdict));
        if let Some(p) = &f.peak {
            items.push(text_item(
                ("RB-PEAK", SCHEME, "Heat map peak"),
                &format!(
                    "LPS ({:.1}, {:.1}, {:.1}) mm; canonical voxel [{}, {}, {}]; value {:.4}",
                    p.lps_mm[0], p.lps_mm[1], p.lps_mm[2], p.voxel[0], p.voxel[1], p.voxel[2], p.value
                ),
            ));
        }
        if referenced {
            if let Some(inst) = f.key_image.and_then(|k| r.key_images.get(k)).and_then(|k| k.instance).and_then(|n| s.instances.get(n)) {
                let rs = Obj::from_element_iter([
                    el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &inst.sop_class_uid),
                    el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &inst.sop_instance_uid),
                ]);
                items.push(Obj::from_element_iter([
                    el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
                    el(tags::VALUE_TYPE, VR::CS, "IMAGE"),
                    concept("121112", "DCM", "Source of Measurement"),
                    seq(tags::REFERENCED_SOP_SEQUENCE, vec![rs]),
                ]));
            }
        }
        for k in &f.knowledge {
            if let Some(d) = &k.description {
                items.push(text_item(("RB-KNOWLEDGE", SCHEME, "Knowledge-bank entry"), &format!("#{}: {}", k.index, d)));
            }
        }
        groups.push(container(Some("CONTAINS"), ("125007", "DCM", "Measurement Group"), items));
    }
    top.push(container(Some("CONTAINS"), ("121070", "DCM", "Findings"), groups));
    if let Some(why) = &r.key_images_withheld {
        top.push(text_item(("RB-KEY-IMAGES-WITHHELD", SCHEME, "Key images withheld"), why));
    }
    for m in &r.missed {
        top.push(text_item(
            ("RB-MISSED", SCHEME, "Finding added by reviewer"),
            &format!("{}: {}", m.label, m.text.as_deref().unwrap_or("")),
        ));
    }
    let root = container(None, ("18748-4", "LN", "Diagnostic Imaging Report"), top);
    for e in root.into_iter() {
        o.put(e);
    }
    o
}

pub fn write_sr(report: &Report, output: &Path) -> Result<()> {
    let err = |reason: String| ReportError::Dicom { path: output.to_path_buf(), reason };
    let obj = build(report);
    let file =
        obj.with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)).map_err(|e| err(e.to_string()))?;
    // Preamble, "DICM", meta group and data set, as `write_to_file` writes them, but through
    // an atomic write.
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| err(e.to_string()))?;
    crate::write_file(output, bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ds_fits_sixteen_characters() {
        assert_eq!(super::ds(0.25), "0.25000000");
        assert!(super::ds(-123456.789).len() <= 16);
        assert!(super::ds(1.0e30).len() <= 16);
    }

    #[test]
    fn da_tm_of_a_timestamp() {
        assert_eq!(super::da_tm("2026-01-02T03:04:05Z"), Some(("20260102".into(), "030405".into())));
        assert_eq!(super::da_tm("2026-01-02T03:04:05.5+01:00"), Some(("20260102".into(), "030405".into())));
        assert_eq!(super::da_tm("(date withheld)"), None);
        assert_eq!(super::da_tm("2026-01-0ä"), None);
    }
}
