//! Model inputs against the committed SimpleITK / torch reference
//! (`tests/reference/preprocess_reference.py` → `tests/data/reference/preprocess_*.json`):
//! exact shapes, mean absolute difference ≤ 1 HU-equivalent.

use radbridge_model::preprocess::{preprocess, PreprocessConfig};
use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions};

fn input_for(case: &str) -> &'static str {
    match case {
        "chest" => "totalsegmentator/chest_ct.nii.gz",
        "dicom" => "totalsegmentator/example_ct_dicom",
        "abdomen" => "totalsegmentator/abdomen_ct_int32.nii.gz",
        other => panic!("unknown preprocess reference case {other}"),
    }
}

#[test]
fn model_inputs_match_the_reference() {
    let mut files: Vec<String> = std::fs::read_dir(data("reference"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("preprocess_") && n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let stem = f.trim_start_matches("preprocess_").trim_end_matches(".json");
        let (model, case) = stem.split_once('_').unwrap();
        let cfg = PreprocessConfig::for_model(model).unwrap();
        // One HU expressed in the model's input units.
        let hu = 1.0 / (cfg.hu_scale as f64 * cfg.std as f64);
        let reference = json_file(&format!("reference/{f}"));
        let vol = volume::open(data(input_for(case)), &OpenOptions::default()).unwrap().volume;
        let input = preprocess(&vol, &cfg).unwrap();
        assert_eq!(input.shape.to_vec(), usizes(&reference["shape"]), "{f}: shape");
        let idx = usizes(&reference["sample"]["index"]);
        let val = f64s(&reference["sample"]["value"]);
        let diffs: Vec<f64> = idx.iter().zip(&val).map(|(&i, &v)| (input.data[i] as f64 - v).abs()).collect();
        let mad = diffs.iter().sum::<f64>() / diffs.len() as f64;
        assert!(mad <= hu, "{f}: sampled mean absolute difference {mad} > 1 HU ({hu})");
        // We reproduce ITK's and torch's arithmetic, so the values are the reference's float32
        // values, not merely close: at most one float32 rounding step apart.
        let worst = diffs.iter().cloned().fold(0.0, f64::max);
        assert!(worst <= 1e-6, "{f}: largest sampled difference {worst}");
        let mean = input.data.iter().map(|&x| x as f64).sum::<f64>() / input.data.len() as f64;
        let rmean = reference["stats"]["mean"].as_f64().unwrap();
        assert!((mean - rmean).abs() <= 0.1 * hu, "{f}: mean {mean} vs {rmean}");
        // Per-axis profiles catch a flipped or shifted axis that a global mean would hide.
        let s = &input.shape[2..];
        for axis in 0..3 {
            let prof = f64s(&reference["axis_means"][axis.to_string()]);
            assert_eq!(prof.len(), s[axis], "{f}: axis {axis} length");
            let mut sums = vec![0f64; s[axis]];
            for (flat, &x) in input.data.iter().enumerate() {
                let c = [flat / (s[1] * s[2]), (flat / s[2]) % s[1], flat % s[2]];
                sums[c[axis]] += x as f64;
            }
            let per = (input.data.len() / s[axis]) as f64;
            let worst = sums.iter().zip(&prof).map(|(a, b)| (a / per - b).abs()).fold(0.0, f64::max);
            assert!(worst <= hu, "{f}: axis {axis} profile differs by {worst}");
        }
    }
}

#[test]
fn padding_and_intensity_follow_each_model() {
    let vol = volume::open(data("totalsegmentator/chest_ct.nii.gz"), &OpenOptions::default()).unwrap().volume;
    let b = preprocess(&vol, &PreprocessConfig::brgsa()).unwrap();
    // Corner is padding: -1024 HU → clamp -1000 → (-1 - 0.4978) / 0.2449.
    assert!((b.data[0] - (-1.0 - 0.4978) / 0.2449).abs() < 1e-5);
    let c = preprocess(&vol, &PreprocessConfig::ctclip()).unwrap();
    assert_eq!(c.data[0], -1.0);
    assert!(c.data.iter().all(|x| (-1.0..=1.0).contains(x)));
    assert_eq!(c.resampled_shape, [466, 334, 191]);
    assert_eq!(b.resampled_shape, [233, 167, 96]);
}
