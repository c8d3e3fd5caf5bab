//! De-identification of exports: DICOM PS3.15 Annex E, Basic Application Level
//! Confidentiality Profile, for the attributes a report carries, with the Retain Longitudinal
//! Temporal Information with Modified Dates option:
//!
//! | attribute | action |
//! |---|---|
//! | PatientName, PatientID | replaced by a keyed pseudonym (same patient → same pseudonym): `ANONYMIZED^RB…`, `RB…` |
//! | PatientBirthDate, PatientSex, AccessionNumber, StudyID, ReferringPhysicianName | emptied (Z) |
//! | PatientAge, InstitutionName, StudyDescription, SeriesDescription | removed (X) |
//! | Study/Series/SOP Instance UIDs, FrameOfReferenceUID | replaced (U): `2.25.` + a keyed hash of the original, so every export maps a UID the same way |
//! | StudyDate (and every other date) | shifted back by 1–3650 days, one offset per study from a keyed hash of its StudyInstanceUID |
//! | local path of the study, heat-map paths | dropped |
//!
//! The key is 32 random bytes in `deidentify.key` in the data folder (the feedback store's
//! folder); it never leaves the machine. Without the key, pseudonyms, UIDs and the date offset
//! cannot be traced back.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Deidentification, ReportError, ReportStudy, Result};
use radbridge_model::analysis::StudySource;

/// Name of the key file in the data folder.
pub const KEY_FILE: &str = "deidentify.key";

/// DeidentificationMethod values (LO, each at most 64 characters).
pub const METHOD: [&str; 3] = [
    "DICOM PS3.15 E.1 Basic Application Confidentiality Profile",
    "Retain Longitudinal Temporal Info. Modified Dates Option",
    "UIDs remapped under 2.25 by keyed hash; Radbridge",
];

/// DeidentificationMethodCodeSequence (CID 7050).
pub const METHOD_CODES: [(&str, &str, &str); 2] = [
    ("113100", "DCM", "Basic Application Confidentiality Profile"),
    ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
];

/// Keyed, deterministic replacements.
#[derive(Clone)]
pub struct Deidentifier {
    secret: [u8; 32],
}

impl std::fmt::Debug for Deidentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deidentifier(..)")
    }
}

impl Deidentifier {
    pub fn new(secret: [u8; 32]) -> Self {
        Deidentifier { secret }
    }

    /// The local key: `deidentify.key` in the data folder (`$RADBRIDGE_DATA_DIR`, else the
    /// platform's app-data folder + `radbridge/`), created on first use.
    pub fn local() -> Result<Self> {
        let dir = radbridge_store::default_dir().map_err(|_| ReportError::NoDataDir)?;
        Self::load_or_create(&dir)
    }

    /// The key in `dir/deidentify.key` (64 hex digits), created with fresh random bytes when absent.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        let io = |e| ReportError::Io { path: path.clone(), source: e };
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let hex = text.trim();
            let bad = || ReportError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a de-identification key (64 hex digits)"),
            };
            if hex.len() != 64 {
                return Err(bad());
            }
            let mut key = [0u8; 32];
            for (n, b) in key.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * n..2 * n + 2], 16).map_err(|_| bad())?;
            }
            return Ok(Deidentifier::new(key));
        }
        radbridge_volume::atomic::create_private_dir_all(dir).map_err(|e| ReportError::Io { path: dir.to_path_buf(), source: e })?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| ReportError::Io { path: path.clone(), source: std::io::Error::other(e.to_string()) })?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = radbridge_volume::atomic::create_private_file(&path).map_err(io)?;
        std::io::Write::write_all(&mut f, (hex + "\n").as_bytes()).map_err(io)?;
        tracing::info!("created de-identification key {}", path.display());
        Ok(Deidentifier::new(key))
    }

    fn hash(&self, domain: &str, value: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(domain.as_bytes());
        h.update([0u8]);
        h.update(value.as_bytes());
        h.finalize().into()
    }

    /// A UID's replacement: `2.25.` and the decimal of 128 bits of a keyed hash.
    pub fn uid(&self, uid: &str) -> String {
        let h = self.hash("uid", uid.trim());
        let n = u128::from_be_bytes(h[..16].try_into().expect("16 bytes"));
        format!("2.25.{n}")
    }

    /// A pseudonym for a patient identifier: "RB" + 12 hex digits.
    pub fn pseudonym(&self, id: &str) -> String {
        let h = self.hash("patient", id.trim());
        format!("RB{}", h[..6].iter().map(|b| format!("{b:02X}")).collect::<String>())
    }

    /// Days every date of a study moves back (1..=3650), from its key (StudyInstanceUID).
    pub fn date_offset_days(&self, study_key: &str) -> i64 {
        let h = self.hash("date", study_key.trim());
        1 + (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % 3650) as i64
    }

    /// A reviewer's or exporter's pseudonym: "Reviewer-" + 10 hex digits of a keyed hash of
    /// the name (the same name gives the same pseudonym in every export).
    pub fn reviewer(&self, name: &str) -> String {
        let h = self.hash("reviewer", name.trim());
        format!("Reviewer-{}", h[..5].iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// The offset (days, negative: back) every date of this study's exports moves by.
    pub fn study_shift_days(&self, source: &StudySource) -> i64 {
        -self.date_offset_days(&study_key(source))
    }

    /// De-identify the study fields of a report in place.
    pub fn apply(&self, s: &mut ReportStudy, source: &StudySource) -> Deidentification {
        let study_key = study_key(source);
        let patient_key = source.patient.id.clone().filter(|x| !x.is_empty()).unwrap_or_else(|| study_key.clone());
        let offset = self.date_offset_days(&study_key);
        let pseudo = self.pseudonym(&patient_key);
        s.patient_name = Some(format!("ANONYMIZED^{pseudo}"));
        s.patient_id = Some(pseudo);
        s.patient_birth_date = None;
        s.patient_sex = None;
        s.patient_age = None;
        s.accession_number = None;
        s.study_id = None;
        s.referring_physician = None;
        s.institution = None;
        s.study_description = None;
        s.series_description = None;
        s.study_date = s.study_date.as_deref().and_then(|d| shift_date(d, -offset));
        let remap = |u: &Option<String>| u.as_deref().filter(|u| !u.trim().is_empty()).map(|u| self.uid(u));
        s.study_instance_uid = remap(&s.study_instance_uid);
        s.series_instance_uid = remap(&s.series_instance_uid);
        s.frame_of_reference_uid = remap(&s.frame_of_reference_uid);
        for i in &mut s.instances {
            i.sop_instance_uid = self.uid(&i.sop_instance_uid);
        }
        s.source_path = None;
        Deidentification {
            patient_identity_removed: "YES".into(),
            method: METHOD.iter().map(|m| m.to_string()).collect(),
            method_codes: METHOD_CODES.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect(),
        }
    }
}

/// What the per-study date offset is keyed on: the StudyInstanceUID, else the patient ID, else
/// the study's path.
fn study_key(source: &StudySource) -> String {
    source.study_instance_uid.clone().filter(|u| !u.is_empty()).or_else(|| source.patient.id.clone()).unwrap_or_else(|| source.path.clone())
}

/// An RFC 3339 timestamp (`YYYY-MM-DD` then anything: `T03:04:05Z`, fractions, an offset)
/// with its date moved by `days` and the rest (the time of day) kept; None when it does not
/// start with a valid date.
pub fn shift_timestamp(ts: &str, days: i64) -> Option<String> {
    let t = ts.trim();
    let date = t.get(..10)?;
    let rest = t.get(10..)?;
    let b = date.as_bytes();
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let compact: String = date.chars().filter(|c| *c != '-').collect();
    let shifted = shift_date(&compact, days)?;
    let (y, md) = shifted.split_at(4);
    let (m, d) = md.split_at(2);
    Some(format!("{y}-{m}-{d}{rest}"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A DICOM date (YYYYMMDD) moved by `days`; None when it is not a valid date.
pub fn shift_date(date: &str, days: i64) -> Option<String> {
    let t = date.trim();
    if t.len() != 8 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (t[..4].parse::<i64>().ok()?, t[4..6].parse::<u32>().ok()?, t[6..].parse::<u32>().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let n = days_from_civil(y, m, d);
    if civil_from_days(n) != (y, m, d) {
        return None;
    }
    let (y2, m2, d2) = civil_from_days(n + days);
    Some(format!("{y2:04}{m2:02}{d2:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips_and_shifts_across_leap_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
        for n in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(n);
            assert_eq!(days_from_civil(y, m, d), n);
        }
        assert_eq!(shift_date("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_date("19950903", -365).as_deref(), Some("19940903"));
        assert_eq!(shift_date("20230230", 0), None);
        assert_eq!(shift_date("", 3), None);
        assert_eq!(shift_timestamp("2026-01-02T03:04:05Z", -3).as_deref(), Some("2025-12-30T03:04:05Z"));
        assert_eq!(shift_timestamp("2024-03-01T23:59:59.250+01:00", -1).as_deref(), Some("2024-02-29T23:59:59.250+01:00"));
        assert_eq!(shift_timestamp("2024-03-01", 1).as_deref(), Some("2024-03-02"));
        assert_eq!(shift_timestamp("20240301T00", 1), None);
        assert_eq!(shift_timestamp("2023-02-30T00:00:00Z", 1), None);
        assert_eq!(shift_timestamp("yesterday", 1), None);
        assert_eq!(shift_timestamp("2024-ä3-01xx", 1), None);
    }

    #[test]
    fn replacements_are_keyed_deterministic_and_valid_uids() {
        let a = Deidentifier::new([7; 32]);
        let b = Deidentifier::new([8; 32]);
        let u = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1";
        assert_eq!(a.uid(u), a.uid(u));
        assert_ne!(a.uid(u), b.uid(u));
        assert_ne!(a.uid(u), a.uid("1.2.3"));
        let r = a.uid(u);
        assert!(r.starts_with("2.25.") && r.len() <= 64 && !r[5..].starts_with('0'));
        assert!(r[5..].bytes().all(|c| c.is_ascii_digit()));
        let o = a.date_offset_days(u);
        assert!((1..=3650).contains(&o));
        assert_eq!(o, a.date_offset_days(u));
        assert_eq!(a.pseudonym("77654033"), a.pseudonym("77654033"));
        assert_ne!(a.pseudonym("77654033"), a.pseudonym("77654034"));
        let r = a.reviewer("dr.house");
        assert!(r.starts_with("Reviewer-") && r.len() == "Reviewer-".len() + 10, "{r}");
        assert_eq!(r, a.reviewer("dr.house"));
        assert_ne!(r, a.reviewer("dr.wilson"));
        assert_ne!(r, b.reviewer("dr.house"));
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("radbridge-deid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Deidentifier::load_or_create(&dir).unwrap();
        let b = Deidentifier::load_or_create(&dir).unwrap();
        assert_eq!(a.uid("1.2.3"), b.uid("1.2.3"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        std::fs::write(dir.join(KEY_FILE), "zz").unwrap();
        assert!(Deidentifier::load_or_create(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
