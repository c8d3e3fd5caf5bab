//! The DIMSE layer of radbridge-pacs (C-ECHO, C-FIND, C-MOVE to our Storage SCP, C-STORE)
//! against a real Orthanc (`radbridge_tests::orthanc`), started per test on free loopback ports.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use radbridge_pacs::dimse::{self, DimseError, DimsePeer, ReceivedInstance};
use radbridge_pacs::query::StudyQuery;
use radbridge_tests::orthanc::{free_port, Orthanc};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn ct2_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(format!("{DATA}/pydicom/head_ct_series_CT2")).expect("CT2 dir").map(|e| e.expect("entry").path()).collect();
    v.sort();
    assert_eq!(v.len(), 4);
    v
}

const CT2_STUDY: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1";
const CT2_SERIES: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2";
const J2K_STUDY: &str = "1.2.276.0.7230010.3.1.2.296485376.1.1521713414.1800996";
const J2K_SERIES: &str = "1.2.276.0.7230010.3.1.3.296485376.1.1521713419.1802493";

fn j2k_files() -> Vec<PathBuf> {
    vec![PathBuf::from(format!("{DATA}/pydicom-data/693_J2KR.dcm")), PathBuf::from(format!("{DATA}/generated/693_j2k_lossy.dcm"))]
}

/// PixelData as a list of byte chunks: the fragments when encapsulated, else one native blob.
fn pixel_chunks(obj: &dicom_object::DefaultDicomObject) -> Vec<Vec<u8>> {
    let e = obj.element(tags::PIXEL_DATA).expect("PixelData");
    match e.value() {
        Value::PixelSequence(seq) => seq.fragments().iter().map(|f| f.to_vec()).collect(),
        Value::Primitive(p) => vec![p.to_bytes().to_vec()],
        Value::Sequence(_) => panic!("PixelData is a sequence"),
    }
}

fn sop_uid(obj: &dicom_object::DefaultDicomObject) -> String {
    obj.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string()
}

fn originals(files: &[PathBuf]) -> HashMap<String, (String, Vec<Vec<u8>>)> {
    files
        .iter()
        .map(|f| {
            let o = dicom_object::open_file(f).expect("open original");
            (sop_uid(&o), (o.meta().transfer_syntax().to_string(), pixel_chunks(&o)))
        })
        .collect()
}

fn do_move(
    orthanc: &Orthanc,
    scp_port: u16,
    calling: &str,
    study: &str,
    series: Option<&str>,
) -> (Result<dimse::MoveOutcome, DimseError>, Vec<ReceivedInstance>) {
    let mut got: Vec<ReceivedInstance> = Vec::new();
    let cancel = AtomicBool::new(false);
    let r = {
        let mut cb = |i: ReceivedInstance| -> Result<(), String> {
            got.push(i);
            Ok(())
        };
        dimse::move_to_self(&orthanc.peer(calling), study, series, scp_port, &mut cb, &cancel)
    };
    (r, got)
}

fn check_received(got: &[ReceivedInstance], files: &[PathBuf], series: &str) {
    let orig = originals(files);
    assert_eq!(got.len(), files.len());
    for inst in got {
        assert_eq!(inst.series_uid.as_deref(), Some(series));
        let obj = dicom_object::OpenFileOptions::new().from_reader(&inst.file_bytes[128..]).expect("received file parses");
        assert_eq!(&inst.file_bytes[128..132], b"DICM");
        assert_eq!(sop_uid(&obj), inst.sop_instance_uid);
        let (ts, px) = orig.get(&inst.sop_instance_uid).unwrap_or_else(|| panic!("unexpected instance {}", inst.sop_instance_uid));
        assert_eq!(inst.transfer_syntax.trim_end_matches('\0'), ts.trim_end_matches('\0'));
        assert_eq!(&pixel_chunks(&obj), px, "pixel data differs");
    }
}

#[test]
fn echo_ok() {
    let o = Orthanc::start();
    dimse::echo(&o.peer("RADBRIDGE")).expect("echo");
}

#[test]
fn echo_closed_port_fails_fast() {
    let port = free_port();
    let peer = DimsePeer {
        called_aet: "NOBODY".into(),
        host: "127.0.0.1".into(),
        port,
        calling_aet: "RADBRIDGE".into(),
        timeout: Duration::from_secs(3),
    };
    let t0 = Instant::now();
    let e = dimse::echo(&peer).expect_err("must fail");
    assert!(matches!(e, DimseError::Connect { .. }), "got {e:?}");
    assert!(t0.elapsed() < Duration::from_secs(4));
    let msg = e.to_string();
    assert!(msg.starts_with("cannot connect to"), "{msg}");
}

#[test]
fn find_by_patient_id() {
    let o = Orthanc::holding(&[ct2_files(), j2k_files()].concat());
    let peer = o.peer("RADBRIDGE");
    let q = StudyQuery { patient_id: Some("77654033".into()), ..Default::default() };
    let r = dimse::find_studies(&peer, &q).expect("find");
    assert_eq!(r.len(), 1, "{r:?}");
    let s = &r[0];
    assert_eq!(s.study_uid, CT2_STUDY);
    assert_eq!(s.patient_id, "77654033");
    assert_eq!(s.patient_name, "Doe^Archibald");
    assert_eq!(s.modalities, vec!["CT".to_string()]);
    assert_eq!(s.series.len(), 1);
    assert_eq!(s.series[0].series_uid, CT2_SERIES);
    assert_eq!(s.series[0].modality, "CT");
    assert_eq!(s.series[0].instances, Some(4));

    // universal query sees both studies; a non-matching one sees none
    let all = dimse::find_studies(&peer, &StudyQuery::default()).expect("find all");
    assert_eq!(all.len(), 2);
    let j = all.iter().find(|s| s.study_uid == J2K_STUDY).expect("j2k study");
    assert_eq!(j.series.len(), 1);
    assert_eq!(j.series[0].instances, Some(2));
    let none =
        dimse::find_studies(&peer, &StudyQuery { patient_id: Some("NO-SUCH-PATIENT".into()), ..Default::default() }).expect("find none");
    assert!(none.is_empty());
    // wildcard name + modality
    let w =
        dimse::find_studies(&peer, &StudyQuery { patient_name: Some("Doe*".into()), modality: Some("CT".into()), ..Default::default() })
            .expect("find wildcard");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].study_uid, CT2_STUDY);
}

#[test]
fn find_non_ascii_patient_name() {
    let o = Orthanc::start();
    o.post_json(
        "/tools/create-dicom",
        r#"{"Tags":{"PatientName":"M\u00fcller^Hans","PatientID":"UTF8-1","Modality":"CT","StudyDescription":"Th\u00f6rax nativ","SpecificCharacterSet":"ISO_IR 192"}}"#,
    );
    let peer = o.peer("RADBRIDGE");
    let r = dimse::find_studies(&peer, &StudyQuery { patient_id: Some("UTF8-1".into()), ..Default::default() }).expect("find");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].patient_name, "M\u{fc}ller^Hans");
    assert_eq!(r[0].description, "Th\u{f6}rax nativ");
    let r = dimse::find_studies(&peer, &StudyQuery { patient_name: Some("M\u{fc}ller*".into()), ..Default::default() })
        .expect("find by non-ascii name");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].patient_id, "UTF8-1");
}

#[test]
fn move_uncompressed_series_and_study() {
    let files = ct2_files();
    let o = Orthanc::holding(&files);
    let scp_port = o.scp;
    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", CT2_STUDY, Some(CT2_SERIES));
    let out = r.expect("move series");
    assert_eq!(out.received, 4);
    assert_eq!(out.completed, 4);
    assert_eq!(out.failed, 0);
    check_received(&got, &files, CT2_SERIES);

    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", CT2_STUDY, None);
    let out = r.expect("move study");
    assert_eq!(out.received, 4);
    check_received(&got, &files, CT2_SERIES);
}

#[test]
fn move_jpeg2000_series_byte_identical() {
    let files = j2k_files();
    let o = Orthanc::holding(&files);
    let scp_port = o.scp;
    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", J2K_STUDY, Some(J2K_SERIES));
    let out = r.expect("move j2k series");
    assert_eq!(out.received, 2);
    assert_eq!(out.completed, 2);
    check_received(&got, &files, J2K_SERIES);
    assert!(got.iter().all(|i| i.transfer_syntax.starts_with("1.2.840.10008.1.2.4.9")));
}

#[test]
fn move_refused_instance_counts_as_failed() {
    let o = Orthanc::holding(&ct2_files());
    let scp_port = o.scp;
    let cancel = AtomicBool::new(false);
    let mut calls = 0u32;
    let mut cb = |_i: ReceivedInstance| -> Result<(), String> {
        calls += 1;
        Err("disk full".into())
    };
    let r = dimse::move_to_self(&o.peer("RADBRIDGE"), CT2_STUDY, Some(CT2_SERIES), scp_port, &mut cb, &cancel);
    assert!(calls >= 1);
    match r {
        Ok(out) => {
            assert_eq!(out.received, 0);
            assert!(out.failed >= 1, "{out:?}");
        }
        Err(DimseError::Status { op, .. }) => assert_eq!(op, "c-move"),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[test]
fn move_to_unknown_ae_is_refused() {
    let o = Orthanc::holding(&ct2_files());
    let scp_port = o.scp;
    let (r, got) = do_move(&o, scp_port, "UNKNOWNAE", CT2_STUDY, Some(CT2_SERIES));
    assert!(got.is_empty());
    let e = r.expect_err("must be refused");
    match &e {
        DimseError::Status { op, status, .. } => {
            assert_eq!(*op, "c-move");
            assert!(*status != 0 && (*status & 0xF000) != 0xB000, "{status:04X}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let msg = e.to_string();
    eprintln!("unknown ae: {msg}");
    assert!(msg.starts_with("c-move failed with status 0x"), "{msg}");
}

#[test]
fn move_cancel_before_start() {
    let o = Orthanc::start();
    let scp_port = o.scp;
    let cancel = AtomicBool::new(true);
    let mut cb = |_i: ReceivedInstance| -> Result<(), String> { Ok(()) };
    let r = dimse::move_to_self(&o.peer("RADBRIDGE"), CT2_STUDY, None, scp_port, &mut cb, &cancel);
    assert!(matches!(r, Err(DimseError::Cancelled)));
}

#[test]
fn move_cancel_during_transfer() {
    let o = Orthanc::holding(&ct2_files());
    let scp_port = o.scp;
    let cancel = AtomicBool::new(false);
    let mut calls = 0u32;
    let t0 = Instant::now();
    let r = {
        let mut cb = |_i: ReceivedInstance| -> Result<(), String> {
            calls += 1;
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        };
        dimse::move_to_self(&o.peer("RADBRIDGE"), CT2_STUDY, Some(CT2_SERIES), scp_port, &mut cb, &cancel)
    };
    // either the cancel lands (Cancelled, only the first instance delivered to us), or the
    // move had already finished when the flag was seen
    match r {
        Err(DimseError::Cancelled) => assert_eq!(calls, 1),
        Ok(out) => assert_eq!(out.received, calls),
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert!(calls >= 1);
    assert!(t0.elapsed() < Duration::from_secs(15));
    // the server is still usable afterwards
    dimse::echo(&o.peer("RADBRIDGE")).expect("echo after cancel");
}

#[test]
fn store_then_visible_in_orthanc() {
    let o = Orthanc::start();
    assert_eq!(o.instances(), 0);
    let garbage = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    let files = vec![
        PathBuf::from(format!("{DATA}/pydicom/CT_small.dcm")),
        PathBuf::from(format!("{DATA}/pydicom-data/emri_small_jpeg_2k_lossless.dcm")),
        garbage.clone(),
        PathBuf::from(format!("{DATA}/generated/693_deflated.dcm")),
        PathBuf::from(format!("{DATA}/pydicom-data/693_J2KR.dcm")),
    ];
    let out = dimse::store(&o.peer("RADBRIDGE"), &files).expect("store");
    assert_eq!(out.len(), files.len());
    for (o_, f) in out.iter().zip(&files) {
        assert_eq!(&o_.path, f);
    }
    assert!(out[0].accepted && out[0].status == 0, "{:?}", out[0]);
    assert_eq!(out[0].sop_instance_uid, "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322");
    assert!(out[1].accepted, "{:?}", out[1]);
    assert!(!out[2].accepted);
    assert_eq!(out[2].status, 0xC000);
    assert!(out[2].comment.is_some());
    assert!(out[3].accepted, "{:?}", out[3]);
    assert!(out[4].accepted, "{:?}", out[4]);
    // 693_deflated and 693_J2KR share a SOP instance UID: 3 distinct instances
    assert_eq!(o.instances(), 3);

    let stats = o.get("/statistics").expect("statistics");
    assert!(stats.contains("\"CountInstances\" : 3"), "{stats}");
}

#[test]
fn store_big_endian_is_reencoded_or_accepted() {
    let o = Orthanc::start();
    let files = vec![PathBuf::from(format!("{DATA}/generated/ct_small_explicit_be.dcm"))];
    let out = dimse::store(&o.peer("RADBRIDGE"), &files).expect("store");
    assert_eq!(out.len(), 1);
    assert!(out[0].accepted, "{:?}", out[0]);
    assert_eq!(o.instances(), 1);
    let ids = o.get("/instances").expect("instances");
    let id = ids.split('"').nth(1).expect("an id").to_string();
    let ts = o.get(&format!("/instances/{id}/metadata/TransferSyntax")).expect("ts");
    eprintln!("big endian file stored by the server as {ts}");
    assert!(ts.starts_with("1.2.840.10008.1.2.1") || ts.starts_with("1.2.840.10008.1.2.2") || ts == "1.2.840.10008.1.2", "{ts}");
}

#[test]
fn store_reencodes_native_syntax_the_server_refuses() {
    // the server refuses deflate: the deflated file must be re-encoded (explicit/implicit LE)
    let o = Orthanc::start_with(serde_json::json!({"DeflatedTransferSyntaxAccepted": false}));
    let scp_port = o.scp;
    let deflated = PathBuf::from(format!("{DATA}/generated/693_deflated.dcm"));
    let out = dimse::store(&o.peer("RADBRIDGE"), std::slice::from_ref(&deflated)).expect("store");
    assert!(out[0].accepted, "{:?}", out[0]);
    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", J2K_STUDY, Some(J2K_SERIES));
    assert_eq!(r.expect("move back").received, 1);
    let inst = &got[0];
    assert!(inst.transfer_syntax == "1.2.840.10008.1.2.1" || inst.transfer_syntax == "1.2.840.10008.1.2", "{}", inst.transfer_syntax);
    let back = dicom_object::OpenFileOptions::new().from_reader(&inst.file_bytes[128..]).expect("parse");
    let orig = dicom_object::open_file(&deflated).expect("open deflated");
    assert_eq!(pixel_chunks(&back), pixel_chunks(&orig));
    let uncr = dicom_object::open_file(format!("{DATA}/pydicom-data/693_UNCR.dcm")).expect("uncr");
    assert_eq!(pixel_chunks(&back), pixel_chunks(&uncr));
}

#[test]
fn store_to_closed_port_is_connect_error() {
    let peer = DimsePeer {
        called_aet: "NOBODY".into(),
        host: "127.0.0.1".into(),
        port: free_port(),
        calling_aet: "RADBRIDGE".into(),
        timeout: Duration::from_secs(2),
    };
    let files = vec![PathBuf::from(format!("{DATA}/pydicom/CT_small.dcm"))];
    let e = dimse::store(&peer, &files).expect_err("must fail");
    assert!(matches!(e, DimseError::Connect { .. }), "{e:?}");
}

#[test]
fn store_jpeg2000_then_move_back_identical() {
    let o = Orthanc::start();
    let scp_port = o.scp;
    let files = j2k_files();
    let out = dimse::store(&o.peer("RADBRIDGE"), &files).expect("store");
    assert!(out.iter().all(|x| x.accepted && x.status == 0), "{out:?}");
    assert_eq!(o.instances(), 2);
    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", J2K_STUDY, Some(J2K_SERIES));
    assert_eq!(r.expect("move back").received, 2);
    check_received(&got, &files, J2K_SERIES);
}

#[test]
fn store_refused_transfer_syntax_is_per_file() {
    let o = Orthanc::start_with(serde_json::json!({"Jpeg2000TransferSyntaxAccepted": false}));
    let files = vec![
        PathBuf::from(format!("{DATA}/pydicom-data/693_J2KR.dcm")),
        PathBuf::from(format!("{DATA}/pydicom/CT_small.dcm")),
        PathBuf::from(format!("{DATA}/pydicom/does-not-exist.dcm")),
    ];
    let out = dimse::store(&o.peer("RADBRIDGE"), &files).expect("store");
    assert_eq!(out.len(), 3);
    assert!(!out[0].accepted, "{:?}", out[0]);
    assert_eq!(out[0].status, 0x0122);
    assert!(out[0].comment.as_deref().unwrap_or("").contains("1.2.840.10008.1.2.4.90"), "{:?}", out[0]);
    assert!(out[1].accepted, "{:?}", out[1]);
    assert!(!out[2].accepted);
    assert_eq!(out[2].status, 0xC000);
    assert_eq!(o.instances(), 1);
}

#[test]
fn silent_peer_times_out() {
    // the kernel completes the TCP handshake (backlog) but nobody ever answers
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = DimsePeer {
        called_aet: "SILENT".into(),
        host: "127.0.0.1".into(),
        port: l.local_addr().expect("addr").port(),
        calling_aet: "RADBRIDGE".into(),
        timeout: Duration::from_secs(1),
    };
    let t0 = Instant::now();
    let e = dimse::echo(&peer).expect_err("must time out");
    assert!(matches!(e, DimseError::Timeout(_)), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    drop(l);
}

#[test]
fn garbage_peer_is_an_error_not_a_panic() {
    use std::io::{Read, Write};
    for reply in [
        &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"[..],
        // A-ASSOCIATE-AC claiming a length longer than what follows, then EOF
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x01][..],
        // A-ASSOCIATE-RJ, permanent, calling AE not recognized
        &[0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x01, 0x03][..],
        // A-ABORT
        &[0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00][..],
    ] {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let kind = reply.first().copied();
        let reply = reply.to_vec();
        let h = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&reply);
            }
        });
        let peer = DimsePeer {
            called_aet: "GARBAGE".into(),
            host: "127.0.0.1".into(),
            port,
            calling_aet: "RADBRIDGE".into(),
            timeout: Duration::from_secs(2),
        };
        let e = dimse::echo(&peer).expect_err("must fail");
        eprintln!("garbage reply -> {e}");
        if kind == Some(0x03) {
            assert!(matches!(e, DimseError::AssociationRejected { .. }), "{e:?}");
        }
        if kind == Some(0x07) {
            assert!(matches!(e, DimseError::Aborted(_)), "{e:?}");
        }
        let _ = h.join();
    }
}

#[test]
fn garbage_into_our_scp_does_not_break_the_move() {
    use std::io::Write;
    let files = ct2_files();
    let o = Orthanc::holding(&files);
    let scp_port = o.scp;
    // a rogue client hits our SCP port while the move runs
    let rogue = std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", scp_port)) {
                let _ = s.write_all(&[0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let (r, got) = do_move(&o, scp_port, "RADBRIDGE", CT2_STUDY, Some(CT2_SERIES));
    let _ = rogue.join();
    assert_eq!(r.expect("move").received, 4);
    check_received(&got, &files, CT2_SERIES);
}
