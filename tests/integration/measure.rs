//! Measurements on the shared chest CT (canonical LPS, as the app shows it) against nibabel +
//! numpy on the same voxels (`tests/reference/measure_reference.py` →
//! `tests/data/reference/measurements.json`): oblique distances, angles, and ellipse and
//! rectangle regions on axial, coronal and sagittal slices (mean, SD, min, max, area, count).

use radbridge_tests::{data, json_file};
use radbridge_volume::measure::{angle_deg, distance_mm, region_stats, Region, RoiStats, SlicePlane};
use radbridge_volume::OpenOptions;

fn p3(v: &serde_json::Value) -> [f64; 3] {
    [0, 1, 2].map(|i| v[i].as_f64().unwrap())
}

#[test]
fn measurements_match_numpy_on_the_chest_ct() {
    let r = json_file("reference/measurements.json");
    let vol = radbridge_volume::open(data("totalsegmentator/chest_ct.nii.gz"), &OpenOptions::default()).unwrap().volume.into_canonical();
    assert_eq!(vol.dims.to_vec(), r["dims"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect::<Vec<_>>());
    for c in r["distances"].as_array().unwrap() {
        let mm = distance_mm(&vol, p3(&c["a"]), p3(&c["b"])).unwrap();
        assert!((mm - c["mm"].as_f64().unwrap()).abs() < 1e-6, "{c}: {mm}");
    }
    for c in r["angles"].as_array().unwrap() {
        let deg = angle_deg(&vol, p3(&c["a"]), p3(&c["vertex"]), p3(&c["b"])).unwrap();
        assert!((deg - c["deg"].as_f64().unwrap()).abs() < 1e-6, "{c}: {deg}");
    }
    let regions = r["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 5);
    for c in regions {
        let plane: SlicePlane = serde_json::from_value(c["plane"].clone()).unwrap();
        let region: Region = serde_json::from_value(c["region"].clone()).unwrap();
        let s: RoiStats = region_stats(&vol, plane, c["slice"].as_i64().unwrap(), region).unwrap();
        assert_eq!(s.voxels, c["voxels"].as_u64().unwrap(), "{c}");
        for (k, got, tol) in
            [("mean", s.mean, 1e-9), ("sd", s.sd, 1e-6), ("min", s.min, 0.0), ("max", s.max, 0.0), ("area_mm2", s.area_mm2, 1e-9)]
        {
            let want = c[k].as_f64().unwrap();
            assert!((got - want).abs() <= tol * want.abs().max(1.0), "{k}: {got} vs {want} in {c}");
        }
    }
    // Outside the volume: refused with a message.
    let e = distance_mm(&vol, [0.0, 0.0, 0.0], [233.0, 0.0, 0.0]).unwrap_err().to_string();
    assert!(e.contains("outside the volume"), "{e}");
    let e =
        region_stats(&vol, SlicePlane::Axial, 191, Region::Ellipse { center: [10.0, 10.0], radii: [3.0, 3.0] }).unwrap_err().to_string();
    assert!(e.contains("slice 191 is outside"), "{e}");
}
