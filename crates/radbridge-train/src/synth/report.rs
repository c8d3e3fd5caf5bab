//! Free-text reports in the style of the CT-RATE reports: a "Findings:" section that walks the
//! anatomy (airways, heart and vessels, oesophagus, nodes, lungs, pleura, upper abdomen,
//! bones), normal-anatomy sentences, negations of absent findings, hedges for uncertain ones,
//! laterality and sizes measured on the masks; then an "Impression:" listing the positives.
//! The templates and vocabulary are written for Radbridge after the phrasing patterns of those
//! reports; no report text is copied.

use super::{lab, Finding, Rng, Side, N_LABELS};

/// Words of which at least one appears in a report that mentions the label (for tests and
/// for a simple keyword reader).
pub fn keywords(label: usize) -> &'static [&'static str] {
    use lab::*;
    match label {
        MEDICAL_MATERIAL => &["pacemaker", "port catheter"],
        ARTERIAL_CALC => &["atherosclerotic wall calcification", "millimetric wall calcification", "calcified plaque"],
        CARDIOMEGALY => &["cardiomegaly", "heart is enlarged"],
        PERICARDIAL_EFFUSION => &["pericardial effusion", "pericardial fluid"],
        CORONARY_CALC => &["coronary"],
        HIATAL_HERNIA => &["hiatal hernia"],
        LYMPHADENOPATHY => &["lymphadenopathy", "lymph nodes with short"],
        EMPHYSEMA => &["emphysema"],
        ATELECTASIS => &["atelectasis"],
        LUNG_NODULE => &["nodule"],
        LUNG_OPACITY => &["ground-glass", "opacit"],
        FIBROTIC_SEQUELA => &["sequela"],
        PLEURAL_EFFUSION => &["pleural effusion", "pleural fluid"],
        MOSAIC => &["mosaic attenuation"],
        PERIBRONCHIAL => &["peribronchial thickening"],
        CONSOLIDATION => &["consolidation"],
        BRONCHIECTASIS => &["bronchiectasis"],
        SEPTAL => &["interlobular septal thickening"],
        PNEUMONIA => &["pneumonia"],
        PNEUMOTHORAX => &["pneumothorax"],
        EMPYEMA => &["empyema"],
        TUBERCULOSIS => &["tuberculosis"],
        FIBROSIS => &["fibrosis"],
        LUNG_CYST => &["cyst"],
        BRONCHIAL_THICKENING => &["bronchial wall thickening"],
        LUNG_MASS => &["mass"],
        OSTEOPHYTE => &["osteophyte"],
        RIB_FRACTURE => &["rib fracture", "fracture of the"],
        ATHEROSCLEROSIS => &["atherosclerosis"],
        PERICARDIAL_CALC => &["pericardial calcification", "calcifications of the pericardium"],
        SPONDYLOSIS => &["spondylosis"],
        PLEURAL_CALC => &["pleural plaque", "pleural calcification"],
        PNEUMOMEDIASTINUM => &["pneumomediastinum"],
        _ => &[],
    }
}

fn p<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.int(0, xs.len())]
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn mm(x: f64) -> i64 {
    x.round().max(1.0) as i64
}

fn axial(f: &Finding) -> (i64, i64) {
    let a = f.size_mm[0].max(f.size_mm[1]);
    let b = f.size_mm[0].min(f.size_mm[1]);
    (mm(a), mm(b))
}

fn side_phrase(rng: &mut Rng, s: Side) -> String {
    match s {
        Side::Right => p(rng, &["on the right", "in the right hemithorax"]).to_string(),
        Side::Left => p(rng, &["on the left", "in the left hemithorax"]).to_string(),
        Side::Both => p(rng, &["bilaterally", "in both hemithoraces"]).to_string(),
        Side::Midline => String::new(),
    }
}

fn ordinal(n: i64) -> String {
    let suf = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suf}")
}

fn hedge(rng: &mut Rng, what: &str) -> String {
    match rng.int(0, 4) {
        0 => format!("possible {what}"),
        1 => format!("findings suspicious for {what}"),
        2 => format!("an appearance compatible with {what}"),
        _ => format!("findings evaluated in favor of {what}"),
    }
}

/// Write the report of a case.
pub fn write(findings: &[Finding], labels: &[bool; N_LABELS], on_chest: bool, rng: &mut Rng) -> String {
    use lab::*;
    let by = |l: usize| -> Vec<&Finding> { findings.iter().filter(|f| f.label == l).collect() };
    let has = |l: usize| labels[l];
    let mut fs: Vec<String> = Vec::new(); // findings sentences
    let mut imp: Vec<String> = Vec::new(); // impression items
    let neg = |rng: &mut Rng| rng.chance(0.7);

    // --- technique
    if rng.chance(0.45) {
        fs.push(
            p(
                rng,
                &[
                    "Mediastinal structures were evaluated as suboptimal since the examination was unenhanced.",
                    "Mediastinal structures were evaluated as optimal.",
                    "The mediastinum could not be evaluated optimally in this non-contrast examination. As far as can be seen;",
                ],
            )
            .to_string(),
        );
    }
    // --- airways
    if has(BRONCHIAL_THICKENING) {
        let f = by(BRONCHIAL_THICKENING)[0];
        let s = if f.location == "main bronchi" {
            "Bronchial wall thickening was observed in both main bronchi and the lobar bronchi.".to_string()
        } else {
            format!("Bronchial wall thickening was observed in the central bronchi of the {}.", f.location)
        };
        fs.push(s);
        imp.push("Bronchial wall thickening.".into());
    } else {
        fs.push(
            p(
                rng,
                &[
                    "Trachea and both main bronchi are open.",
                    "Trachea, both main bronchi are open and no occlusive pathology was detected.",
                    "The lumen of the trachea and both main bronchi is clear.",
                ],
            )
            .into(),
        );
    }
    // --- heart
    if has(CARDIOMEGALY) {
        let f = by(CARDIOMEGALY)[0];
        fs.push(format!("The heart is enlarged (cardiomegaly), with a cardiothoracic ratio of approximately {:.2}.", f.extra));
        imp.push("Cardiomegaly.".into());
    } else {
        fs.push(
            p(
                rng,
                &[
                    "Heart contour and size are normal.",
                    "Heart dimensions and compartments appear natural.",
                    "Mediastinal main vascular structures, heart contour and size are normal.",
                ],
            )
            .into(),
        );
    }
    if has(PERICARDIAL_EFFUSION) {
        let f = by(PERICARDIAL_EFFUSION)[0];
        let d = mm(f.depth_mm);
        if f.uncertain {
            fs.push(format!("A thin rim of pericardial fluid up to {d} mm is seen, possible minimal pericardial effusion."));
            imp.push("Possible minimal pericardial effusion.".into());
        } else {
            fs.push(format!("Pericardial effusion measuring {d} mm in its thickest part was observed."));
            imp.push(format!("Pericardial effusion ({d} mm)."));
        }
    } else if neg(rng) {
        fs.push(
            p(
                rng,
                &[
                    "Pericardial effusion-thickening was not observed.",
                    "No pericardial effusion was detected.",
                    "Pericardial thickening-effusion was not detected.",
                ],
            )
            .into(),
        );
    }
    if has(PERICARDIAL_CALC) {
        fs.push("Curvilinear pericardial calcifications were observed along the pericardium.".into());
        imp.push("Pericardial calcification.".into());
    }
    // --- vessels
    if has(ATHEROSCLEROSIS) {
        let f = by(ATHEROSCLEROSIS)[0];
        fs.push(format!("Diffuse atherosclerosis with numerous calcified plaques is observed along the {}.", f.location));
        imp.push("Aortic atherosclerosis.".into());
    } else if has(ARTERIAL_CALC) {
        let f = by(ARTERIAL_CALC)[0];
        fs.push(format!("{} wall calcifications were observed in the {}.", p(rng, &["Atherosclerotic", "Millimetric"]), f.location));
        imp.push("Atherosclerotic wall calcifications of the aorta.".into());
    } else {
        fs.push(
            p(
                rng,
                &[
                    "Thoracic aorta diameter is normal.",
                    "Calibration of thoracic main vascular structures is natural.",
                    "No dilatation was detected in the thoracic aorta.",
                ],
            )
            .into(),
        );
    }
    if has(CORONARY_CALC) {
        let f = by(CORONARY_CALC)[0];
        fs.push(format!("Calcified atheroma plaques are observed in the coronary artery walls ({}).", f.location));
        imp.push("Coronary artery wall calcification.".into());
    } else if neg(rng) && rng.chance(0.5) {
        fs.push("No calcification was observed in the coronary arteries.".into());
    }
    // --- oesophagus
    if has(HIATAL_HERNIA) {
        let f = by(HIATAL_HERNIA)[0];
        let kind = if f.kind == "sliding" { "Sliding type hiatal hernia" } else { "Hiatal hernia" };
        if f.uncertain {
            fs.push(format!("{} suspected at the lower end of the esophagus.", kind.replace(" type", "-type")));
            imp.push("Possible hiatal hernia.".into());
        } else {
            fs.push(format!("{kind} was observed at the lower end of the esophagus."));
            imp.push("Hiatal hernia.".into());
        }
    } else {
        fs.push(
            p(
                rng,
                &[
                    "Thoracic esophagus calibration was normal and no significant tumoral wall thickening was detected.",
                    "No pathological increase in wall thickness was observed in the thoracic esophagus.",
                ],
            )
            .into(),
        );
    }
    // --- nodes
    if has(LYMPHADENOPATHY) {
        let f = by(LYMPHADENOPATHY)[0];
        let short = mm(f.size_mm[0].min(f.size_mm[1]).clamp(11.0, 28.0));
        let w = if f.uncertain { "borderline " } else { "" };
        fs.push(format!(
            "{}ymph nodes with short axes reaching {short} mm were observed in the {} region, consistent with lymphadenopathy.",
            if w.is_empty() { "L" } else { "Borderline l" },
            f.location
        ));
        imp.push(format!("Mediastinal lymphadenopathy ({}).", f.location));
    } else {
        fs.push(p(rng, &[
            "No enlarged lymph nodes in prevascular, pre-paratracheal, subcarinal or bilateral hilar-axillary pathological dimensions were detected.",
            "No lymph node was detected in mediastinal and bilateral hilar pathological size and appearance.",
            "No lymphadenopathy was detected in the mediastinum or hila.",
        ]).into());
    }
    if has(PNEUMOMEDIASTINUM) {
        fs.push("Free air densities were observed within the mediastinal fat planes, consistent with pneumomediastinum.".into());
        imp.push("Pneumomediastinum.".into());
    } else if neg(rng) && rng.chance(0.3) {
        fs.push("No pneumomediastinum was detected.".into());
    }

    // --- lungs
    fs.push(
        p(rng, &["When examined in the lung parenchyma window;", "In the evaluation of both lung parenchyma;", "In the lung window:"])
            .into(),
    );
    let mut lung_pos = 0;
    if has(EMPHYSEMA) {
        lung_pos += 1;
        let f = by(EMPHYSEMA)[0];
        let sev = if f.extra > 1.5 { p(rng, &["Marked", "Widespread", "Advanced"]) } else { p(rng, &["Mild", "Minimal", "Mild"]) };
        let loc = if f.kind == "panlobular" { "predominantly in the lower lobes" } else { "predominantly in the upper lobes" };
        if f.uncertain {
            fs.push(format!("A few low-attenuation areas are seen in both lungs {loc}, possible early {} emphysema.", f.kind));
            imp.push("Possible mild emphysema.".into());
        } else {
            fs.push(format!("{sev} {} emphysematous changes (emphysema) were observed in both lungs, {loc}.", f.kind));
            imp.push(format!("{} emphysema.", cap(&f.kind)));
        }
    }
    if has(MOSAIC) {
        lung_pos += 1;
        let f = by(MOSAIC)[0];
        fs.push(format!(
            "A mosaic attenuation pattern was observed in the {}, with geographic areas of decreased and increased density.",
            if f.location == "lower lobes" { "lower lobes of both lungs" } else { "both lungs" }
        ));
        imp.push(format!("Mosaic attenuation pattern, {}.", hedge(rng, "small airway disease")));
    }
    if has(SEPTAL) {
        lung_pos += 1;
        let f = by(SEPTAL)[0];
        let loc = match f.side {
            Side::Both => "both lungs".to_string(),
            s => format!("the {} lung", s.word()),
        };
        fs.push(format!("Smooth interlobular septal thickening is observed in the subpleural areas of {loc}."));
        imp.push("Interlobular septal thickening.".into());
    }
    if has(FIBROSIS) {
        lung_pos += 1;
        let f = by(FIBROSIS)[0];
        if f.uncertain {
            fs.push(format!(
                "Subpleural reticulation is observed in the basal segments of both lower lobes, {}.",
                hedge(rng, "early pulmonary fibrosis")
            ));
        } else {
            fs.push("Subpleural reticulation and honeycombing compatible with pulmonary fibrosis are observed in the basal segments of both lower lobes.".into());
        }
        if f.uncertain {
            imp.push(format!("Subpleural basal reticulation, {}.", hedge(rng, "pulmonary fibrosis")));
        } else {
            imp.push("Pulmonary fibrosis with a basal subpleural distribution.".into());
        }
    }
    if has(FIBROTIC_SEQUELA) {
        lung_pos += 1;
        let f = by(FIBROTIC_SEQUELA)[0];
        fs.push(format!(
            "{} pleuroparenchymal fibrotic bands, evaluated as sequelae, were observed in the {}.",
            p(rng, &["Linear", "Band-like"]),
            f.location
        ));
        imp.push(format!("Fibrotic sequela changes in the {}.", f.location));
    }
    if has(EMPYEMA) {
        let f = by(EMPYEMA)[0];
        let gas = if f.kind == "gas" { " containing a few gas bubbles" } else { "" };
        let (a, b) = axial(f);
        fs.push(format!(
            "A loculated lenticular pleural fluid collection{gas} measuring {a}x{b} mm with thickened, split pleural layers is observed in the {}, {}.",
            f.location,
            if f.uncertain { hedge(rng, "empyema") } else { "consistent with empyema".to_string() }
        ));
        if f.uncertain {
            imp.push(format!("Loculated {} pleural collection, {}.", f.side.word(), hedge(rng, "empyema")));
        } else {
            imp.push(format!("{} empyema.", cap(f.side.word())));
        }
    }
    let effs = by(PLEURAL_EFFUSION);
    if !effs.is_empty() {
        if effs.len() == 2 {
            let (r, l) = (mm(effs[0].depth_mm), mm(effs[1].depth_mm));
            fs.push(format!(
                "Bilateral pleural effusion was observed, measuring {r} mm on the right and {l} mm on the left in its thickest part."
            ));
            imp.push("Bilateral pleural effusion.".into());
        } else {
            let f = effs[0];
            let d = mm(f.depth_mm);
            let sp = side_phrase(rng, f.side);
            if f.uncertain {
                fs.push(format!("A minimal amount of fluid {d} mm thick is seen in the dependent pleural space {sp}, possible minimal pleural effusion."));
                imp.push(format!("Possible minimal {} pleural effusion.", f.side.word()));
            } else {
                let amount = if d < 15 {
                    "Minimal pleural effusion"
                } else if d < 35 {
                    "Pleural effusion"
                } else {
                    "Large pleural effusion"
                };
                fs.push(format!("{amount} measuring {d} mm in its thickest part was observed {sp}."));
                imp.push(format!("{} pleural effusion.", cap(f.side.word())));
            }
        }
    } else if !has(EMPYEMA) && neg(rng) {
        fs.push(
            p(
                rng,
                &[
                    "Pleural effusion-thickening was not detected.",
                    "No pleural effusion was detected.",
                    "Pleural effusion was not observed in both hemithoraces.",
                ],
            )
            .into(),
        );
    }
    if has(PNEUMOTHORAX) {
        let f = by(PNEUMOTHORAX)[0];
        let d = mm(f.depth_mm);
        fs.push(format!(
            "A {} pneumothorax with a maximum depth of {d} mm is observed anteriorly {}.",
            if d < 15 { "small" } else { "moderate" },
            side_phrase(rng, f.side)
        ));
        imp.push(format!("{} pneumothorax.", cap(f.side.word())));
    } else if neg(rng) {
        fs.push(p(rng, &["No pneumothorax was detected.", "Pneumothorax was not observed."]).into());
    }
    if has(PLEURAL_CALC) {
        let f = by(PLEURAL_CALC)[0];
        let w = if f.side == Side::Both {
            "both hemithoraces"
        } else if f.side == Side::Left {
            "the left hemithorax"
        } else {
            "the right hemithorax"
        };
        let stable = if rng.chance(0.3) { " They are stable compared with the previous examination." } else { "" };
        fs.push(format!("Calcified pleural plaques (pleural calcification) were observed along the posterolateral pleura of {w}.{stable}"));
        imp.push("Calcified pleural plaques.".into());
    }
    for f in by(ATELECTASIS) {
        lung_pos += 1;
        let s = match f.kind.as_str() {
            "plate-like" => format!("Plate-like atelectasis was observed in the {}.", f.location),
            "compressive" => format!("Compressive atelectasis adjacent to the effusion was observed in the {}.", f.location),
            _ => format!("Subsegmental atelectasis was observed in the {}.", f.location),
        };
        fs.push(s);
        imp.push(format!("Atelectasis in the {}.", f.location));
    }
    let ggos = by(LUNG_OPACITY);
    let pneu = by(PNEUMONIA);
    for f in &ggos {
        if pneu.iter().any(|x| x.instance == f.instance) {
            continue;
        }
        lung_pos += 1;
        let (a, _) = axial(f);
        fs.push(format!("A ground-glass opacity of about {a} mm is observed in the {}.", f.location));
        if f.uncertain {
            imp.push(format!("Ground-glass opacity in the {}, {}.", f.location, hedge(rng, "an infectious process")));
        } else {
            imp.push(format!("Ground-glass opacity in the {}.", f.location));
        }
    }
    for f in &pneu {
        lung_pos += 1;
        let w = if f.side == Side::Both { "both lungs" } else { "the lung" };
        fs.push(format!(
            "Patchy areas of consolidation surrounded by ground-glass opacities were observed in {w}, most prominently in the {}; {}.",
            f.location,
            if f.uncertain { hedge(rng, "pneumonia") } else { "the appearance is compatible with pneumonia".to_string() }
        ));
        if f.uncertain {
            imp.push(format!("Multifocal opacities, {}.", hedge(rng, "pneumonia")));
        } else {
            imp.push(format!("Findings compatible with pneumonia, most prominent in the {}.", f.location));
        }
    }
    for f in by(CONSOLIDATION) {
        lung_pos += 1;
        let (a, b) = axial(f);
        fs.push(format!("A consolidation area of {a}x{b} mm containing air bronchograms was observed in the {}.", f.location));
        if f.uncertain {
            imp.push(format!("Consolidation in the {} ({}).", f.location, hedge(rng, "pneumonic infiltration")));
        } else {
            imp.push(format!("Consolidation in the {}.", f.location));
        }
    }
    if has(BRONCHIECTASIS) {
        lung_pos += 1;
        let f = by(BRONCHIECTASIS)[0];
        let w = if f.side == Side::Both { "both lungs, mostly in the lower lobes" } else { f.location.as_str() };
        fs.push(format!("{} bronchiectasis was observed in {}{}.", cap(&f.kind), if f.side == Side::Both { "" } else { "the " }, w));
        imp.push("Bronchiectasis.".into());
    }
    if has(PERIBRONCHIAL) {
        lung_pos += 1;
        let f = by(PERIBRONCHIAL)[0];
        let w = if f.side == Side::Both { "Bilateral".to_string() } else { cap(f.side.word()) };
        fs.push(format!("{w} peribronchial thickening was observed."));
        imp.push("Peribronchial thickening.".into());
    }
    for f in by(TUBERCULOSIS) {
        lung_pos += 1;
        fs.push(format!(
            "A thick-walled cavitary lesion of {} mm with a surrounding centrilobular tree-in-bud pattern was observed in the {}, {}.",
            axial(f).0.min(mm(f.extra + 6.0)),
            f.location,
            if f.uncertain { hedge(rng, "tuberculosis") } else { "suggestive of tuberculosis".to_string() }
        ));
        if f.uncertain {
            imp.push(format!("Cavitary lesion in the {}, {}.", f.location, hedge(rng, "active tuberculosis")));
        } else {
            imp.push(format!("Cavitary lesion with a tree-in-bud pattern in the {}, consistent with tuberculosis.", f.location));
        }
    }
    let cysts = by(LUNG_CYST);
    if !cysts.is_empty() {
        lung_pos += 1;
        let big = cysts.iter().map(|f| axial(f).0).max().unwrap_or(0);
        if cysts.len() == 1 {
            fs.push(format!("A thin-walled air cyst measuring {big} mm was observed in the {}.", cysts[0].location));
        } else {
            fs.push(format!(
                "{} thin-walled air cysts were observed, the largest measuring {big} mm in the {}.",
                cap(&format!("{}", cysts.len())),
                cysts[0].location
            ));
        }
        imp.push("Lung cyst.".into());
    }
    for f in by(LUNG_MASS) {
        lung_pos += 1;
        let (a, b) = axial(f);
        let necro = if f.kind == "necrotic" { " with central necrosis" } else { "" };
        fs.push(format!("A lobulated soft tissue mass{necro} measuring approximately {a}x{b} mm was observed in the {}.", f.location));
        if f.uncertain {
            imp.push(format!("Mass in the {}, {}.", f.location, hedge(rng, "malignancy")));
        } else {
            imp.push(format!("Lung mass measuring {a}x{b} mm in the {}; tissue diagnosis is recommended.", f.location));
        }
    }
    let nods = by(LUNG_NODULE);
    if !nods.is_empty() {
        lung_pos += 1;
        let mut sorted = nods.clone();
        sorted.sort_by_key(|a| std::cmp::Reverse(axial(a).0));
        let f = sorted[0];
        let d = axial(f).0;
        let kind = match f.kind.as_str() {
            "calcified" => "calcified ",
            "spiculated" => "spiculated ",
            "subpleural" => "subpleural ",
            _ => "",
        };
        let stable = if rng.chance(0.15) { " It is stable in size compared with the previous examination." } else { "" };
        if sorted.len() == 1 {
            if f.uncertain {
                fs.push(format!("A possible small {kind}nodule of {d} mm is seen in the {}.{stable}", f.location));
                imp.push(format!("Possible {d} mm nodule in the {}.", f.location));
            } else {
                fs.push(format!("A {kind}nodule measuring {d} mm was observed in the {}.{stable}", f.location));
                let extra = if f.kind == "spiculated" {
                    ", suspicious for malignancy"
                } else if f.kind == "calcified" {
                    ", compatible with a granuloma"
                } else {
                    ""
                };
                imp.push(format!("{d} mm nodule in the {}{extra}.", f.location));
            }
        } else {
            let sides: Vec<Side> = sorted.iter().map(|f| f.side).collect();
            let where_ = if sides.contains(&Side::Left) && sides.contains(&Side::Right) {
                "both lungs".to_string()
            } else {
                format!("the {} lung", sides[0].word())
            };
            fs.push(format!(
                "{} nodules were observed in {where_}, the largest measuring {d} mm in the {}.",
                cap(&sorted.len().to_string()),
                f.location
            ));
            imp.push(format!("Multiple lung nodules, the largest {d} mm."));
        }
    }
    if lung_pos == 0 {
        fs.push(
            p(
                rng,
                &[
                    "Aeration of both lung parenchyma is normal and no nodular or infiltrative lesion is detected in the lung parenchyma.",
                    "No mass, nodule or infiltration was detected in both lungs.",
                    "Ventilation of both lungs is natural. No active infiltrative or mass lesion was detected in both lungs.",
                ],
            )
            .into(),
        );
    } else {
        // negations of some absent parenchymal findings
        let mut negs: Vec<&str> = Vec::new();
        if !has(LUNG_NODULE) && !has(LUNG_MASS) && neg(rng) {
            negs.push(p(rng, &["No nodular lesion was detected in the lung parenchyma.", "No suspicious mass or nodule was observed."]));
        }
        if !has(CONSOLIDATION) && !has(PNEUMONIA) && neg(rng) {
            negs.push(p(rng, &["No consolidation was observed.", "No pneumonic infiltration or consolidation area was detected."]));
        }
        if !has(EMPHYSEMA) && neg(rng) && rng.chance(0.5) {
            negs.push("There is no emphysema.");
        }
        if !has(BRONCHIECTASIS) && neg(rng) && rng.chance(0.4) {
            negs.push("Bronchiectasis was not observed.");
        }
        for s in negs {
            fs.push(s.into());
        }
    }

    // --- abdomen
    fs.push(
        p(
            rng,
            &[
                "Upper abdominal organs included in the sections are normal.",
                "Upper abdominal sections entering the examination area are natural.",
                "No space-occupying lesion was detected in the liver that entered the cross-sectional area.",
            ],
        )
        .into(),
    );
    if on_chest && rng.chance(0.5) {
        fs.push("Contrast enhancement of the thoracic aorta and its branches is noted.".into());
    }
    // --- bones
    let mut bone_pos = false;
    if has(RIB_FRACTURE) {
        bone_pos = true;
        let f = by(RIB_FRACTURE)[0];
        let n = ordinal(f.extra as i64);
        if f.kind == "healing" {
            fs.push(format!(
                "A healing fracture of the {} {n} rib with callus formation was observed in its {}.",
                f.side.word(),
                f.location
            ));
        } else {
            fs.push(format!("A displaced fracture of the {} {n} rib was observed in its {}.", f.side.word(), f.location));
        }
        if f.uncertain {
            imp.push(format!("{}.", cap(&hedge(rng, &format!("{} {n} rib fracture", f.side.word())))));
        } else {
            imp.push(format!("{} {n} rib fracture.", cap(f.side.word())));
        }
    }
    if has(SPONDYLOSIS) {
        bone_pos = true;
        fs.push("Degenerative changes with marginal osteophytes, end-plate sclerosis and disc space narrowing (spondylosis) were observed in the thoracic vertebrae.".into());
        imp.push("Thoracic spondylosis.".into());
    } else if has(OSTEOPHYTE) {
        bone_pos = true;
        fs.push(format!(
            "{} osteophytes were observed at the anterior margins of the thoracic vertebral bodies.",
            p(rng, &["Small", "Marginal", "Anterior"])
        ));
        imp.push("Degenerative osteophytes in the thoracic spine.".into());
    }
    if !bone_pos {
        fs.push(
            p(
                rng,
                &[
                    "Bone structures in the study area are natural. Vertebral corpus heights are preserved.",
                    "No lytic-destructive lesion was detected in bone structures.",
                    "No fracture or lytic-destructive lesion was observed in the bones included in the examination.",
                ],
            )
            .into(),
        );
    } else if !has(RIB_FRACTURE) && neg(rng) {
        fs.push("No rib fracture was detected.".into());
    }
    if has(MEDICAL_MATERIAL) {
        let f = by(MEDICAL_MATERIAL)[0];
        if f.kind == "port catheter" {
            fs.push(format!("A port catheter is observed in the {}, its tip extending into the superior vena cava.", f.location));
            imp.push("Port catheter (medical material).".into());
        } else {
            fs.push(format!("A pacemaker is observed in the {}, with its lead extending into the heart.", f.location));
            imp.push("Pacemaker (medical material).".into());
        }
    }

    if imp.is_empty() {
        imp.push(
            p(
                rng,
                &[
                    "Thoracic CT examination within normal limits.",
                    "Examination within normal limits.",
                    "No acute pathology was detected in the thorax.",
                ],
            )
            .into(),
        );
    }
    let findings = fs.join(" ");
    let impression = imp.join(" ");
    format!("Findings: {findings}\n\nImpression: {impression}")
}
