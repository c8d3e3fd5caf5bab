//! Unit tests of the built-in summariser: negation, hedges, hyphenated and listed pairs,
//! comparisons with prior studies, and the sentences it writes.

use super::*;

fn st(report: &str, label: &str) -> Status {
    let b = Builtin::new();
    b.summarize(report).unwrap().status(label).unwrap_or_else(|| panic!("no label {label}"))
}

#[test]
fn every_label_of_the_three_sets_is_covered_once() {
    let l = default_labels();
    assert_eq!(l.len(), 33 + 88 - count_overlap());
    let s = Builtin::new().summarize("Normal study.").unwrap();
    assert_eq!(s.findings.len(), l.len());
    assert!(s.findings.iter().all(|f| f.status == Status::Absent && f.evidence.is_empty()));
    for label in &l {
        assert!(lexicon::entry(label).is_some(), "no lexicon entry for {label}");
    }
}

fn count_overlap() -> usize {
    let base: Vec<String> = zeroshot::label_set("all").unwrap();
    zeroshot::CT_RATE_EXTENDED.iter().filter(|l| base.iter().any(|b| b == *l)).count()
}

#[test]
fn plain_mentions_are_present() {
    assert_eq!(st("Sliding type hiatal hernia was observed.", "Hiatal hernia"), Status::Present);
    assert_eq!(st("Bilateral peribronchial thickenings were observed.", "Peribronchial thickening"), Status::Present);
    assert_eq!(st("There is cardiomegaly.", "Cardiomegaly"), Status::Present);
    assert_eq!(st("Nothing here.", "Cardiomegaly"), Status::Absent);
}

#[test]
fn translated_negations() {
    assert_eq!(st("Pleural effusion was not observed.", "Pleural effusion"), Status::Absent);
    assert_eq!(
        st("No enlarged lymph nodes were detected in prevascular, subcarinal or hilar pathological dimensions.", "Lymphadenopathy"),
        Status::Absent
    );
    assert_eq!(st("No pleural effusion was detected.", "Pleural effusion"), Status::Absent);
    assert_eq!(
        st("Aeration of both lung parenchyma is normal and no nodular or infiltrative lesion is detected.", "Lung nodule"),
        Status::Absent
    );
    assert_eq!(
        st("Aeration of both lung parenchyma is normal and no nodular or infiltrative lesion is detected.", "Lung opacity"),
        Status::Absent
    );
}

#[test]
fn hyphenated_pairs_share_the_negation() {
    let r = "Pleural effusion-thickening was not detected. Pericardial thickening-effusion was not observed.";
    assert_eq!(st(r, "Pleural effusion"), Status::Absent);
    assert_eq!(st(r, "Pleural thickening"), Status::Absent);
    assert_eq!(st(r, "Pericardial effusion"), Status::Absent);
    assert_eq!(st("Effusion-thickening was not detected in the pleura.", "Pleural effusion"), Status::Absent);
}

#[test]
fn listed_pairs_share_the_negation() {
    let r = "There is no pleural effusion or pneumothorax.";
    assert_eq!(st(r, "Pleural effusion"), Status::Absent);
    assert_eq!(st(r, "Pneumothorax"), Status::Absent);
    assert_eq!(st("No consolidation, pleural effusion or pneumothorax.", "Pneumothorax"), Status::Absent);
    assert_eq!(st("Pleural effusion and pneumothorax were not observed.", "Pneumothorax"), Status::Absent);
}

#[test]
fn negation_ends_at_the_next_assertion() {
    let r = "No pathological wall thickening was detected, and a hiatal hernia was observed.";
    assert_eq!(st(r, "Hiatal hernia"), Status::Present);
    let r = "Atelectasis was observed in the left lower lobe and pleural effusion was not detected.";
    assert_eq!(st(r, "Atelectasis"), Status::Present);
    assert_eq!(st(r, "Pleural effusion"), Status::Absent);
    assert_eq!(st("No pleural effusion, but a small pneumothorax is seen.", "Pneumothorax"), Status::Present);
}

#[test]
fn hedges_are_uncertain() {
    assert_eq!(st("Findings suspicious for pneumonia.", "Pneumonia"), Status::Uncertain);
    assert_eq!(st("Appearance compatible with tuberculosis.", "Tuberculosis"), Status::Uncertain);
    assert_eq!(st("Pneumonia cannot be excluded.", "Pneumonia"), Status::Uncertain);
    assert_eq!(st("Edema in the mediastinal fat planes (mediastinitis?).", "Pneumonia"), Status::Absent);
    // The "?" doubts what the lesion is, not that there is one.
    assert_eq!(st("A hypodense lesion in the liver (cyst?).", "Liver lesion"), Status::Present);
    assert_eq!(st("Edema-inflammation in the mediastinal fat planes. Pneumonia?", "Pneumonia"), Status::Uncertain);
    assert_eq!(st("Findings may be compatible with pneumonic infiltration.", "Pneumonia"), Status::Uncertain);
    // "evaluated in favor of" states the reader's conclusion.
    assert_eq!(st("Multiple nodules evaluated in favor of metastasis were observed.", "Metastasis"), Status::Present);
}

#[test]
fn comparisons_with_prior_studies() {
    assert_eq!(st("The nodule in the right upper lobe is stable compared to the previous examination.", "Lung nodule"), Status::Present);
    assert_eq!(st("The consolidation has regressed compared to the previous study.", "Consolidation"), Status::Present);
    assert_eq!(st("The pleural effusion seen in the previous study has completely regressed.", "Pleural effusion"), Status::Absent);
    assert_eq!(st("The pneumothorax has resolved.", "Pneumothorax"), Status::Absent);
    assert_eq!(st("No significant change in the size of the nodules.", "Lung nodule"), Status::Present);
}

#[test]
fn impression_repeating_the_findings_keeps_the_strongest_status() {
    let r = "Pleural effusion was not detected. \" Minimal pleural effusion on the right?";
    assert_eq!(st(r, "Pleural effusion"), Status::Uncertain);
    let r = "Minimal effusion on the right. \" No pleural effusion.";
    assert_eq!(st(r, "Pleural effusion"), Status::Present);
}

#[test]
fn vetoes_keep_other_organs_out() {
    assert_eq!(st("Subcutaneous emphysema is seen in the chest wall.", "Emphysema"), Status::Absent);
    assert_eq!(st("A nodule in the thyroid gland was observed.", "Lung nodule"), Status::Absent);
    assert_eq!(st("A nodule in the thyroid gland was observed.", "Thyroid nodule"), Status::Present);
    assert_eq!(st("Pericardial effusion was observed.", "Pleural effusion"), Status::Absent);
    let ild = "Subpleural reticulation and honeycombing consistent with pulmonary fibrosis.";
    assert_eq!(st(ild, "Pulmonary fibrosis"), Status::Present);
    assert_eq!(st(ild, "Pulmonary fibrotic sequela"), Status::Absent);
    assert_eq!(st("Sequelae fibrotic changes in the right lung apex.", "Pulmonary fibrotic sequela"), Status::Present);
    assert_eq!(st("Postoperative sequelae changes in the left kidney.", "Pulmonary fibrotic sequela"), Status::Absent);
}

#[test]
fn sentences_are_short_finding_sentences() {
    let b = Builtin::new();
    let s = b
        .summarize("Sliding type hiatal hernia was observed. Pleural effusion-thickening was not detected. There is no pneumothorax.")
        .unwrap();
    assert!(s.sentences.contains(&"There is sliding type hiatal hernia.".to_string()), "{:?}", s.sentences);
    assert!(s.sentences.contains(&"There is no pleural effusion-thickening.".to_string()), "{:?}", s.sentences);
    assert!(s.sentences.contains(&"There is no pneumothorax.".to_string()), "{:?}", s.sentences);
    let f = s.findings.iter().find(|f| f.label == "Hiatal hernia").unwrap();
    assert_eq!(f.evidence, "Sliding type hiatal hernia was observed");
}

#[test]
fn empty_report_is_an_error_not_a_panic() {
    assert!(matches!(Builtin::new().summarize("  \n"), Err(SummarizeError::Empty)));
    // Odd input never panics.
    for r in ["?", "\"\"\"", "-- / --", "No", "é. ü? •", "1. 2. 3.", "no no no not", "(((", "effusion-"] {
        let _ = Builtin::new().summarize(r).unwrap();
    }
}

#[test]
fn endpoint_urls_and_answers() {
    assert_eq!(endpoint::completions_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080/v1/chat/completions");
    assert_eq!(endpoint::completions_url("http://h/v1/"), "http://h/v1/chat/completions");
    assert_eq!(endpoint::completions_url("http://h/v1/chat/completions"), "http://h/v1/chat/completions");
    let e = ChatEndpoint::new("http://h", None);
    let body = r#"{"choices":[{"message":{"role":"assistant","content":"```json\n{\"sentences\":[\"There is no pneumothorax.\"],\"findings\":[{\"label\":\"pneumothorax\",\"status\":\"absent\",\"evidence\":\"no pneumothorax\"},{\"label\":\"Emphysema\",\"status\":\"present\",\"evidence\":\"emphysema\"},{\"label\":\"Unknown thing\",\"status\":\"present\"}]}\n```"}}]}"#;
    let s = e.parse_response(body).unwrap();
    assert_eq!(s.sentences, vec!["There is no pneumothorax."]);
    assert_eq!(s.status("Emphysema"), Some(Status::Present));
    assert_eq!(s.status("Pneumothorax"), Some(Status::Absent));
    assert_eq!(s.findings.len(), default_labels().len());
    assert!(matches!(e.parse_response("{\"choices\":[{\"message\":{\"content\":\"sorry\"}}]}"), Err(SummarizeError::BadAnswer { .. })));
    assert!(matches!(e.parse_response("<html>"), Err(SummarizeError::BadAnswer { .. })));
}
