//! Decode speed of our sequential-DCT JPEG decoder (`radbridge_volume::jpeg12`) against a peer
//! measured in the same run: dicom-pixeldata's own JPEG path (the `jpeg-decoder` crate, 8-bit
//! only), which our DICOM reader uses for every JPEG Baseline file.
//!
//! The images are the same 512x512 CT slice (`tests/data/generated/693_*`, made by
//! tests/reference/make_transfer_syntaxes.sh), encoded as JPEG Baseline (8-bit) and as JPEG
//! Extended (12-bit, which only our decoder reads). Three timings, interleaved round by round so
//! that machine noise falls on all of them alike, median of the rounds:
//!   peer    : dicom-pixeldata `decode_pixel_data` of the 8-bit file (object already parsed)
//!   ours 8  : `jpeg12::decode` of the same 8-bit codestream (like for like with the peer)
//!   ours 12 : `jpeg12::decode` of the 12-bit codestream (what the reader really sends us)
//! and the ratios ours / peer (< 1: ours faster). Nothing is asserted on time: this prints.
//!
//! Run: `cargo bench --workspace --bench jpeg12` (or `make bench`); RADBRIDGE_BENCH_ROUNDS sets
//! the number of timed rounds (default 30).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use dicom_pixeldata::PixelDecoder;
use radbridge_volume::jpeg12;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/generated").join(name)
}

fn open(name: &str) -> dicom_object::DefaultDicomObject {
    let path = data(name);
    dicom_object::open_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The JPEG codestream of a single-frame encapsulated DICOM file.
fn codestream(obj: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    let elem = obj.element(tags::PIXEL_DATA).expect("pixel data");
    let frags = elem.value().fragments().expect("encapsulated pixel data");
    frags.iter().flat_map(|f| f.iter().copied()).collect()
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    let n = v.len();
    let mid = if n % 2 == 1 { v[n / 2].as_secs_f64() } else { (v[n / 2 - 1] + v[n / 2]).as_secs_f64() / 2.0 };
    mid * 1e3
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

fn main() {
    let rounds: usize = std::env::var("RADBRIDGE_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30).max(1);
    let base = open("693_jpeg_baseline.dcm");
    let ext = open("693_jpeg_extended12.dcm");
    let (s8, s12) = (codestream(&base), codestream(&ext));

    // Same pixels from both decoders of the 8-bit stream (a benchmark of a wrong decoder is
    // worthless): report how far apart they are.
    let peer = base.decode_pixel_data().expect("dicom-pixeldata decodes JPEG Baseline");
    let peer_px = peer.frame_data(0).expect("frame 0").to_vec();
    let ours8 = jpeg12::decode(&s8).expect("our decoder reads JPEG Baseline");
    let ours12 = jpeg12::decode(&s12).expect("our decoder reads JPEG Extended");
    assert_eq!(peer_px.len(), ours8.samples.len(), "the peer decoded {} samples, ours {}", peer_px.len(), ours8.samples.len());
    let max_diff = peer_px.iter().zip(&ours8.samples).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap_or(0);
    let differ = peer_px.iter().zip(&ours8.samples).filter(|(&a, &b)| a as u16 != b).count();

    // Warm-up (caches, allocator), then interleaved timed rounds.
    for _ in 0..3 {
        black_box(base.decode_pixel_data().unwrap());
        black_box(jpeg12::decode(&s8).unwrap());
        black_box(jpeg12::decode(&s12).unwrap());
    }
    let (mut tp, mut t8, mut t12) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        tp.push(time(|| base.decode_pixel_data().unwrap()));
        t8.push(time(|| jpeg12::decode(black_box(&s8)).unwrap()));
        t12.push(time(|| jpeg12::decode(black_box(&s12)).unwrap()));
    }
    let (mp, m8, m12) = (median(tp), median(t8), median(t12));
    println!("jpeg12 benchmark: {}x{} CT slice, {rounds} rounds, median ms per decode", ours8.width, ours8.height);
    println!("  peer    dicom-pixeldata (jpeg-decoder), 8-bit  ({:>7} bytes): {mp:8.2} ms", s8.len());
    println!("  ours    jpeg12::decode,                 8-bit  ({:>7} bytes): {m8:8.2} ms", s8.len());
    println!("  ours    jpeg12::decode,                 12-bit ({:>7} bytes): {m12:8.2} ms", s12.len());
    println!("  ratio   ours 8-bit  / peer 8-bit: {:.2}", m8 / mp);
    println!("  ratio   ours 12-bit / peer 8-bit: {:.2}", m12 / mp);
    println!("  (8-bit pixels: {differ} of {} differ between the two decoders, by at most {max_diff})", peer_px.len());
    println!(
        "{}",
        serde_json::json!({"rounds": rounds, "peer_8bit_ms": mp, "ours_8bit_ms": m8, "ours_12bit_ms": m12, "ratio_8bit": m8 / mp, "ratio_12bit": m12 / mp, "samples_differing_8bit": differ, "max_diff_8bit": max_diff, "ours_12bit_precision": ours12.precision})
    );
}
