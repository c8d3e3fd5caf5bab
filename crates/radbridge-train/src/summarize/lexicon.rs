//! The finding lexicon: for every label of the CT-RATE, CT-RATE-LT and extended sets, the words
//! and phrases reports use for it, and the neighbouring words that veto a match ("subcutaneous"
//! before "emphysema", "thyroid" before "nodule").
//!
//! Pattern syntax (one phrase per string, matched on lower-case word tokens of one clause):
//! - `word` matches that word; `word*` any word starting with it; `a|b*|c` any of them;
//! - `~` skips up to 3 words, `~N` up to N words (never across punctuation other than hyphens),
//!   `~~N` up to N words and commas;
//! - inside a phrase one word joined by a hyphen, or a pair "and/or word", may be skipped, so
//!   "pleural thickening" matches "pleural effusion-thickening" and "pleural effusion or thickening".

/// One label's lexicon entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub label: &'static str,
    pub patterns: &'static [&'static str],
    /// A match is dropped when one of these (prefix with `*`) is among the 3 words before it.
    pub veto_before: &'static [&'static str],
    /// ... or a phrase starting among the 3 tokens after it.
    pub veto_after: &'static [&'static str],
    /// ... or one of these words is anywhere in its clause, unless one of `unless_clause` is too.
    pub veto_clause: &'static [&'static str],
    pub unless_clause: &'static [&'static str],
    /// More (veto, unless) clause rules.
    pub more_rules: &'static [(&'static [&'static str], &'static [&'static str])],
}

const fn e(label: &'static str, patterns: &'static [&'static str]) -> Entry {
    Entry { label, patterns, veto_before: &[], veto_after: &[], veto_clause: &[], unless_clause: &[], more_rules: &[] }
}

const fn ev(
    label: &'static str,
    patterns: &'static [&'static str],
    veto_before: &'static [&'static str],
    veto_after: &'static [&'static str],
) -> Entry {
    Entry { label, patterns, veto_before, veto_after, veto_clause: &[], unless_clause: &[], more_rules: &[] }
}

/// An entry whose matches are dropped in clauses about something else.
const fn ec(
    label: &'static str,
    patterns: &'static [&'static str],
    veto_before: &'static [&'static str],
    veto_clause: &'static [&'static str],
    unless_clause: &'static [&'static str],
) -> Entry {
    Entry { label, patterns, veto_before, veto_after: &[], veto_clause, unless_clause, more_rules: &[] }
}

/// An entry with several (veto, unless) clause rules.
const fn er(
    label: &'static str,
    patterns: &'static [&'static str],
    veto_before: &'static [&'static str],
    rules: &'static [(&'static [&'static str], &'static [&'static str])],
) -> Entry {
    Entry { label, patterns, veto_before, veto_after: &[], veto_clause: &[], unless_clause: &[], more_rules: rules }
}

/// Clause words that keep "sequelae"/"fibrotic" out of Pulmonary fibrotic sequela (other organs)...
const FIBROSIS_VETO: &[&str] = &[
    "kidney*",
    "renal",
    "breast*",
    "liver",
    "hepatic",
    "bone*",
    "vertebra*",
    "perirenal",
    "mastectom*",
    "postoperative",
    "operated",
    "subcutaneous",
    "thyroid*",
];
/// ... unless the clause is about the lungs.
const FIBROSIS_UNLESS: &[&str] = &["lung*", "lobe*", "pleura*", "parenchym*", "pulmonary", "apex*", "apical", "lingula*", "segment*"];

/// Every label's entry. Labels shared by several sets appear once.
pub const LEXICON: &[Entry] = &[
    // ---- CT-RATE (18) ----
    // The CT-RATE annotators count devices, lines, tubes, stents, sutures and prostheses, not
    // bone fixation or breast implants.
    ec(
        "Medical material",
        &[
            "medical material*",
            "catheter*",
            "stent*",
            "pacemaker*",
            "port",
            "sternotomy",
            "sternal wire*",
            "sternal suture*",
            "wire*",
            "suture*",
            "clip*",
            "prosthe*",
            "tube",
            "tubes",
            "cannula*",
            "drain",
            "drains",
            "drainage",
            "valve replacement",
            "graft*",
            "coil*",
            "electrode*",
            "cardiac device*",
            "defibrillator*",
            "icd",
            "tracheostomy",
            "tracheotomy",
            "intubat*",
            "metallic|metal|surgical|peg|operation material*",
            "metallic",
            "chemoport",
            "embolization material*",
            "cardiac valve*",
            "valve prosthe*",
            "endoprosthe*",
            "staple*",
            "cerclage*",
            "material",
        ],
        &["contrast", "opaque", "radiopaque"],
        &["choledoch*", "bile", "biliary", "cbd", "ureter*", "jj"],
        &[],
    ),
    // Thoracic arteries only: coronary-only and abdominal-only plaques are not counted.
    er(
        "Arterial wall calcification",
        &[
            "arterial wall calcification*",
            "aort* ~~8 calcif*|atherom*|plaque*|atherosclero*",
            "calcif*|atherom*|plaque*|atherosclero* ~~8 aort*|arch|carotid|subclavian|brachiocephalic|arter*|vascular|vessel*|wall*",
        ],
        &["noncalcified", "non"],
        &[
            (
                &["coronar*", "lad", "cx", "rca", "circumflex", "valve", "valvular", "pleura*"],
                &["aorta", "arch", "carotid", "subclavian", "brachiocephalic", "supraaortic", "thoracic"],
            ),
            (
                &["abdominal", "infrarenal", "iliac"],
                &["thoracic", "arch", "ascending", "descending", "carotid", "subclavian", "brachiocephalic", "supraaortic"],
            ),
        ],
    ),
    e(
        "Cardiomegaly",
        &[
            "cardiomegaly",
            "heart ~3 enlarg*|increased|larger|large",
            "enlarg* ~2 heart|cardiac",
            "cardiac enlargement",
            "cardiothoracic|ctr ~~5 increas*",
            "increas* ~~5 cardiothoracic|ctr",
            "heart size ~3 increas*",
            "increas* ~3 heart size*",
            "increase* in heart|cardiac size*",
            "heart|cardiac ~2 size ~3 increas*",
        ],
    ),
    ec(
        "Pericardial effusion",
        &[
            "pericardial effusion*",
            "pericardial fluid*",
            "effusion ~~6 pericard*",
            "pericardial ~2 effusion*",
            "hydropericard*",
            "pericardial thickening ~2 effusion",
            "fluid ~~6 pericard*",
            "pericardial space|recess* ~~6 effusion|fluid",
        ],
        &[],
        &[],
        &[],
    ),
    e(
        "Coronary artery wall calcification",
        &[
            "coronary artery wall calcification*",
            "coronar*|lad|cx|rca|circumflex ~~10 calcif*|plaque*|atherom*|atherosclero*",
            "calcif*|plaque*|atherom*|atherosclero* ~~10 coronar*|lad|cx|rca|circumflex",
        ],
    ),
    e("Hiatal hernia", &["hiatal|hiatus hernia*", "hernia* ~3 hiat*", "hiatal ~2 hernia*", "paraesophageal hernia*"]),
    // The CT-RATE annotators count any lymph node reported as seen, pathological or not.
    ev(
        "Lymphadenopathy",
        &["lymphadenopath*", "lap", "laps", "adenopath*", "lymph node*", "lymphnode*", "lymph nodul*", "conglomerat* ~3 lymph*"],
        &["intrapulmonary", "intraparenchymal", "perifissural", "fissural"],
        &[],
    ),
    ev(
        "Emphysema",
        &["emphysem*", "bulla*", "bullous", "bleb*"],
        &["subcutaneous", "subcutaneously", "soft", "mediastinal", "interstitial"],
        &["in the subcutaneous", "subcutaneous"],
    ),
    // Fibroatelectasis and band/linear atelectasis count as fibrotic sequelae, not atelectasis.
    ev(
        "Atelectasis",
        &["atelecta*", "subsegmental atelecta*", "collapse*", "plate like atelecta*", "platelike"],
        &["fibrotic", "sequel*", "pleuroparenchymal", "fibro"],
        &[],
    ),
    er(
        "Lung nodule",
        &["nodule*", "micronodul*", "nodular lesion*|formation*|opacit*|structure*|appearance*", "nodul*"],
        &[
            "thyroid*",
            "liver",
            "hepatic",
            "renal",
            "kidney*",
            "adrenal*",
            "spleen",
            "splenic",
            "breast*",
            "pancrea*",
            "gland*",
            "bone*",
            "skin",
            "subcutaneous",
            "schmorl",
            "glass",
            "ground",
            "hypodense",
            "hypoechoic",
            "axilla*",
            "bud",
            "buds",
            "budding",
            "pleural",
        ],
        &[
            (&["consolid*", "thicken*", "ground", "glass", "infiltrat*"], &["nodule", "nodules", "micronodule*"]),
            (
                &[
                    "thyroid*",
                    "spleen",
                    "splenic",
                    "liver",
                    "hepatic",
                    "capsule",
                    "mediastin*",
                    "abdom*",
                    "areola*",
                    "breast*",
                    "adrenal*",
                    "kidney*",
                    "renal",
                    "pancrea*",
                    "adipose",
                    "axilla*",
                    "schmorl",
                ],
                &["lung", "lungs", "pulmonary", "parenchym*", "fissur*", "subpleural"],
            ),
        ],
    ),
    ec(
        "Lung opacity",
        &["ground glass", "groundglass", "opacit*", "lung opacity", "crazy paving"],
        &[],
        &["micronodular", "acinar"],
        &["ground", "glass"],
    ),
    ec(
        "Lung opacity",
        &[
            "density increase*",
            "increase* in density",
            "increased density",
            "densit* ~3 increas*",
            "increase* ~2 densit*",
            "density ~2 area*",
            "patchy ~3 densit*",
            "densities",
        ],
        &["linear", "fibrotic", "sequel*", "pleuroparenchymal", "reticular", "band", "nodular"],
        &[
            "sequel*",
            "fibrot*",
            "pleuroparenchymal",
            "parenchymal",
            "fat",
            "fatty",
            "vertebra*",
            "skin",
            "subcutaneous",
            "liver",
            "spleen",
            "pancrea*",
            "kidney*",
            "renal",
            "perirenal",
            "perinephric",
            "perigastric",
            "paraduodenal",
            "bone*",
            "thymic",
            "thymus",
            "trachea",
            "mediastin*",
            "gallbladder",
            "cholelith*",
            "consolid*",
            "atelecta*",
            "linear",
            "band*",
            "mesenter*",
            "breast*",
            "muscle*",
            "peribronchial",
            "tissue*",
            "soft",
            "bronchiolitis",
            "tree",
            "bud*",
            "mosaic",
        ],
        &["ground", "glass"],
    ),
    er(
        "Pulmonary fibrotic sequela",
        &[
            "pulmonary fibrotic sequela*",
            "fibrotic",
            "fibrosis",
            "sequel*",
            "fibroatelecta*",
            "scar*",
            "pleuroparenchymal",
            "fibroreticular",
            "fibrous band*",
            "fibrotic band*",
            "band like",
            "bandlike",
        ],
        &["pyelonephrit*", "pulmonary", "interstitial", "idiopathic"],
        // Interstitial lung disease (honeycombing, UIP) is Pulmonary fibrosis, not a sequela.
        &[(&["honeycomb*", "uip", "nsip", "ipf"], &["sequel*", "scar*"]), (FIBROSIS_VETO, FIBROSIS_UNLESS)],
    ),
    ec(
        "Pleural effusion",
        &[
            "pleural effusion*",
            "pleural fluid*",
            "effusion*",
            "hydrothorax",
            "hydropneumothorax",
            "hydropnomothorax",
            "fluid ~3 pleural",
            "pleural ~2 effusion*",
            "pleural space ~~4 fluid|effusion",
        ],
        &["pericardial", "pericardium", "joint", "splenic", "perirenal"],
        &["pericard*", "perirenal", "perisplenic", "perihepatic", "abdom*", "pelvi*", "joint", "subdural"],
        &["pleura*", "hemithora*", "thorax", "thoracic", "bilateral", "hydrothorax"],
    ),
    e("Mosaic attenuation pattern", &["mosaic*", "air trapping", "air trap*"]),
    e(
        "Peribronchial thickening",
        &[
            "peribronchial ~3 thicken*|thickness*",
            "thicken* ~3 peribronchial",
            "peribronchial cuffing",
            "peribronchial ~4 increas* ~3 thickness*",
            "increas* ~3 peribronchial thickness*",
            "peribronchovascular ~3 thicken*|thickness*",
        ],
    ),
    e("Consolidation", &["consolidat*"]),
    e("Bronchiectasis", &["bronchiectas*", "bronchiectatic", "bronchiolectas*", "bronchial ectasi*"]),
    e(
        "Interlobular septal thickening",
        &["interlobular ~3 thicken*", "septal thicken*", "sept* ~3 thicken*", "thicken* ~3 sept*", "interlobular sept*"],
    ),
    // ---- CT-RATE-LT (15) ----
    e("Pneumonia", &["pneumoni*", "bronchopneumoni*", "infection*", "infectious", "infective", "pneumonitis"]),
    e("Pneumothorax", &["pneumothorax*", "hydropneumothorax", "hydropnomothorax", "pneumothoraces"]),
    e("Empyema", &["empyema*", "loculat* ~3 effusion*|fluid|collection*", "effusion* ~4 loculat*"]),
    e("Tuberculosis", &["tuberculosis", "tuberculous", "tb", "tbc", "koch*"]),
    e(
        "Pulmonary fibrosis",
        &["pulmonary fibrosis", "fibrosis", "fibrotic change*", "honeycomb*", "uip", "interstitial fibrosis", "fibrotic interstitial"],
    ),
    ec(
        "Lung cyst",
        &["lung cyst*", "cyst*", "cystic lesion*|area*|formation*|change*|appearance*"],
        &[
            "thyroid*",
            "liver",
            "hepatic",
            "renal",
            "kidney*",
            "adrenal*",
            "spleen",
            "splenic",
            "breast*",
            "pancrea*",
            "gland*",
            "bone*",
            "pericardial",
            "bronchogenic",
            "peripelvic",
            "parapelvic",
            "cortical",
            "hydatid",
        ],
        &[
            "kidney*",
            "renal",
            "liver",
            "hepatic",
            "thyroid*",
            "spleen",
            "splenic",
            "pancrea*",
            "adrenal*",
            "breast*",
            "bone*",
            "duct",
            "gallbladder",
            "ovar*",
            "pericardi*",
            "hypodense",
            "segment 4*",
        ],
        &["lung*", "pulmonary", "parenchym*", "lobe", "lobes", "pleura*", "subpleural", "air", "bulla*"],
    ),
    // CT-RATE-LT's weak labels count peribronchial thickening too.
    e(
        "Bronchial thickening",
        &[
            "bronchial ~3 thicken*|thickness*",
            "thicken* ~3 bronchial|bronchus|bronchi",
            "bronchial wall*",
            "peribronchial ~3 thicken*|thickness*",
        ],
    ),
    ev(
        "Lung mass",
        &["lung mass*", "mass", "masses", "mass lesion*", "mass like"],
        &["space", "occupying", "thyroid", "liver", "renal", "adrenal", "breast", "bone", "muscle*"],
        &["occupying"],
    ),
    e("Osteophyte", &["osteophyt*", "taper*", "spur*", "beak*"]),
    e("Rib fracture", &["rib* ~4 fractur*", "fractur* ~5 rib*", "costal fractur*", "callus*"]),
    ec(
        "Atherosclerosis",
        &["atherosclero*", "atherom*", "calcific|calcified plaque*", "plaque*"],
        &["pleural", "noncalcified"],
        &["pleura*", "pleural"],
        &["aort*", "arter*", "coronar*", "vascular", "carotid"],
    ),
    e("Pericardial calcification", &["pericardial calcif*", "calcif* ~3 pericard*", "pericard* ~3 calcif*"]),
    e(
        "Spondylosis",
        &[
            "spondylo*",
            "degenerative ~4 vertebra*|spine|spinal|dorsal|lumbar|disc*|endplate*",
            "vertebra*|spine|spinal ~4 degenerat*",
            "osteophyt*",
        ],
    ),
    // CT-RATE-LT's weak labels: "degenerative changes in the bone structures" counts unless mild.
    ev("Spondylosis", &["degenerative change*"], &["mild", "minimal", "slight", "minor", "early"], &[]),
    e("Pleural calcification", &["pleural calcif*", "calcif* ~3 pleura*", "pleura* ~3 calcif*", "calcified pleural plaque*"]),
    e("Pneumomediastinum", &["pneumomediastin*", "mediastinal emphysema", "free air ~4 mediastin*", "air ~3 mediastin*"]),
    // ---- extended (88; those not above) ----
    e("Acute respiratory distress syndrome", &["acute respiratory distress syndrome", "ards"]),
    ev("Adenoma", &["adenoma*"], &[], &[]),
    e("Adrenal hyperplasia", &["adrenal ~3 hyperplasi*", "hyperplasi* ~4 adrenal*", "adrenal ~3 thicken*"]),
    e("Ascites", &["ascit*", "intraabdominal fluid", "free fluid ~3 abdom*"]),
    e("Bone lesion", &["bone lesion*", "lesion* ~4 bone*|vertebra*|rib*|sternum|scapula", "lytic", "sclerotic", "blastic", "osteolytic"]),
    e("Bronchiolitis", &["bronchiolit*", "tree in bud", "tree in bud*"]),
    e("Bronchopneumonia", &["bronchopneumoni*"]),
    e("Calcification", &["calcif*"]),
    e("Carcinomatosis", &["carcinomatos*"]),
    e("Cavitary lesion", &["cavit*", "cavern*"]),
    e("Chilaiditi syndrome", &["chilaiditi*", "interposition ~3 colon*", "colon* ~3 interposition"]),
    e("Covid 19 pneumonia", &["covid*", "sars cov*", "coronavirus"]),
    e("Degenerative change", &["degenerat*", "spondylo*", "osteophyt*"]),
    e(
        "Fatty liver",
        &[
            "fatty liver",
            "hepatic steatosis",
            "steatosis",
            "hepatosteatosis",
            "liver ~5 hypodens*|fat|fatty|steato*",
            "fatty infiltration ~3 liver",
        ],
    ),
    e("Fibrosis", &["fibrosis", "fibrotic", "fibrous"]),
    e("Fracture", &["fractur*", "callus*"]),
    e(
        "Gallstone",
        &[
            "gallstone*",
            "cholelithiasis",
            "stone* ~3 gallbladder|gall bladder",
            "gallbladder ~4 stone*",
            "calculus ~4 gallbladder",
            "gallbladder ~4 calcul*",
        ],
    ),
    e("Ground glass opacity", &["ground glass", "groundglass", "ggo", "hazy opacit*"]),
    e("Gynecomastia", &["gynecomast*", "gynaecomast*"]),
    e("Heart failure", &["heart failure", "cardiac failure", "congestive", "cardiac decompensation"]),
    e("Hepatomegaly", &["hepatomegal*", "liver ~4 enlarg*|larger than normal|increased in size", "enlarg* ~2 liver"]),
    e("Hepatosplenomegaly", &["hepatosplenomegal*"]),
    e("Hydatid cyst", &["hydatid*", "echinococ*", "cyst hydatid*"]),
    e("Infarction", &["infarct*"]),
    e("Kidney atrophy", &["kidney ~3 atroph*", "renal ~3 atroph*", "atroph* ~3 kidney*|renal"]),
    e(
        "Kidney stone",
        &["kidney stone*", "renal stone*", "renal calcul*", "nephrolith*", "stone* ~3 kidney*|renal", "calcul* ~3 kidney*|renal"],
    ),
    e("Lipomatosis", &["lipomatos*"]),
    e(
        "Liver lesion",
        &["liver ~4 lesion*|cyst*|mass*|nodul*|hemangioma*", "hepatic ~2 lesion*|cyst*|mass*|nodul*", "lesion* ~4 liver", "hemangioma*"],
    ),
    e("Lymphangitis carcinomatosis", &["lymphangit*"]),
    e("Lymphoma", &["lymphoma*"]),
    e("Lytic bone lesion", &["lytic", "osteolytic", "lytic ~2 lesion*"]),
    e("Metastasis", &["metasta*"]),
    e("Myeloma", &["myeloma*"]),
    e(
        "Nephrolithiasis",
        &["nephrolith*", "renal calcul*", "kidney stone*", "renal stone*", "stone* ~3 kidney*|renal", "calcul* ~3 kidney*|renal"],
    ),
    e("Osteopenia", &["osteopeni*"]),
    e("Osteoporosis", &["osteoporo*"]),
    e("Pancreatic cancer", &["pancrea* ~3 cancer|carcinoma|malignan*|tumor*|tumour*|mass*", "cancer|carcinoma|tumor*|mass* ~3 pancrea*"]),
    e("Pancreatic pseudocyst", &["pseudocyst*"]),
    e("Pleural thickening", &["pleural thicken*", "pleura* ~3 thicken*", "thicken* ~3 pleura*"]),
    e(
        "Pulmonary hypertension",
        &["pulmonary hypertension", "pulmonary arter* ~5 dilat*|enlarg*|wide*", "pulmonary trunk ~5 dilat*|enlarg*|wide*"],
    ),
    e("Pulmonary hypertrophy", &["pulmonary hypertrophy", "hyperinflat*", "hyperexpan*", "hyperaerat*"]),
    e("Renal atrophy", &["renal ~3 atroph*", "kidney* ~3 atroph*", "atroph* ~3 kidney*|renal"]),
    e("Renal cyst", &["renal ~3 cyst*", "kidney* ~4 cyst*", "cyst* ~4 kidney*|renal"]),
    e("Renal parapelvic cyst", &["parapelvic", "peripelvic"]),
    e("Sclerotic bone lesion", &["sclerotic", "osteoblastic", "blastic", "sclerosis ~3 bone*|vertebra*"]),
    e("Scoliosis", &["scolio*"]),
    e("Situs inversus", &["situs inversus", "dextrocardia"]),
    e("Splenic effusion", &["splenic effusion*", "perisplenic ~3 fluid|effusion*", "fluid ~3 perisplenic|splenic"]),
    e("Splenomegaly", &["splenomegal*", "spleen ~4 enlarg*|larger than normal|increased in size", "enlarg* ~2 spleen"]),
    e("Thyroid nodule", &["thyroid ~4 nodul*|lesion*|cyst*|mass*", "nodul* ~4 thyroid"]),
    e("Tracheal stenosis", &["trache* ~3 stenos*|narrow*", "stenos* ~3 trache*"]),
    e("Tracheobronchopathy", &["tracheobronchopath*", "tracheobronchomalac*", "tracheomalac*"]),
    e(
        "Vertebral compression fracture",
        &["compression fractur*", "vertebra* ~4 fractur*|collapse*", "height loss*", "loss of height", "wedg*"],
    ),
    e(
        "Vertebral degeneration",
        &["vertebra* ~4 degenerat*", "degenerat* ~4 vertebra*|spine|spinal|thoracic|dorsal|lumbar", "spondylo*", "osteophyt*"],
    ),
    e("Viral pneumonia", &["viral pneumoni*", "viral infection*", "covid*", "viral"]),
];

/// The entry of a label (case-insensitive), if the lexicon has one.
pub fn entry(label: &str) -> Option<&'static Entry> {
    LEXICON.iter().find(|e| e.label.eq_ignore_ascii_case(label))
}

/// All entries of a label (a label may have several, each with its own vetoes).
pub fn entries(label: &str) -> impl Iterator<Item = &'static Entry> + '_ {
    LEXICON.iter().filter(move |e| e.label.eq_ignore_ascii_case(label))
}
