//! The PACS against a real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`, started here on
//! free loopback ports with a temporary storage folder and basic authentication, as in
//! ../shared/spec/pacs.md). Real series are uploaded through Orthanc's REST API; then
//! `radbridge pacs search / retrieve / send` run over DICOMweb and DIMSE. A retrieved series
//! must be byte-identical to what was uploaded, open like any folder, resume after a dropped
//! connection, and join the library; every bad answer is one named error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use radbridge_tests::orthanc::{free_port, Orthanc, PASSWORD, USER};
use radbridge_tests::{bin, data};
use serde_json::Value;

/// The J2K series gets these UIDs (the shared TotalSegmentator series has none).
const STUDY: &str = "2.25.318620114239047321190571";
const SERIES: &str = "2.25.318620114239047321190572";

/// The shared 20-instance JPEG 2000 CT series with Study/Series/SOP UIDs and patient data given
/// (in copies; the originals have empty UIDs, SOP Class included, which a C-MOVE cannot carry;
/// the rest of each file is unchanged, pixel data included).
pub fn j2k_series() -> &'static [PathBuf] {
    static S: OnceLock<Vec<PathBuf>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("pacs-j2k").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
        let mut out = Vec::new();
        let mut src: Vec<PathBuf> =
            std::fs::read_dir(data("totalsegmentator/example_ct_dicom")).unwrap().map(|e| e.unwrap().path()).collect();
        src.sort();
        for p in src {
            let mut obj = dicom_object::open_file(&p).unwrap();
            let sop = obj.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string();
            let class = obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string();
            let put = |obj: &mut dicom_object::DefaultDicomObject, tag, vr, v: &str| {
                obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
            };
            put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, STUDY);
            put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, SERIES);
            put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop);
            put(&mut obj, tags::SOP_CLASS_UID, VR::UI, &class);
            put(&mut obj, tags::PATIENT_ID, VR::LO, "RBPACS01");
            put(&mut obj, tags::PATIENT_NAME, VR::PN, "Test^Jane");
            put(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "ACC001");
            let dest = dir.join(format!("{sop}.dcm"));
            obj.write_to_file(&dest).unwrap();
            out.push(dest);
        }
        out
    })
}

pub fn pixel_bytes(path: &Path) -> Vec<u8> {
    let obj = dicom_object::open_file(path).unwrap();
    let e = obj.element(tags::PIXEL_DATA).unwrap();
    match e.value() {
        dicom_core::DicomValue::PixelSequence(seq) => seq.fragments().iter().flat_map(|f| f.iter().copied()).collect(),
        v => v.to_bytes().unwrap().to_vec(),
    }
}

pub fn radbridge(args: &[&str], data_dir: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("RADBRIDGE_DATA_DIR", data_dir)
        .env("RB_PACS_PASSWORD", PASSWORD)
        .env("RB_WRONG_PASSWORD", "not-the-password")
        .output()
        .expect("run radbridge")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The one error line of a failed command (exit 1).
fn err(o: &Output, what: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1; stdout {}", String::from_utf8_lossy(&o.stdout));
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(e.lines().any(|l| l.starts_with("error: pacs ")), "{what}: {e}");
    assert!(!e.contains("panicked"), "{what}: {e}");
    e
}

fn auth() -> [&'static str; 4] {
    ["--user", USER, "--password-env", "RB_PACS_PASSWORD"]
}

/// Files under a folder, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(files_under(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn audit_actions(db: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT action, detail FROM audit_log ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn dicomweb_search_retrieve_resume_send_and_audit() {
    let pacs = Orthanc::holding(j2k_series());
    for e in std::fs::read_dir(data("pydicom/head_ct_series_CT2")).unwrap() {
        pacs.upload(&e.unwrap().path());
    }
    let home = tempfile::tempdir().unwrap();
    let web = pacs.web();
    let a = auth();

    // Search: by patient, by date range and modality; the JSON contract.
    let out = ok(
        &radbridge(&["pacs", "search", "--server", &web, a[0], a[1], a[2], a[3], "--patient-id", "RBPACS01", "--json"], home.path()),
        "search",
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    let studies = found.as_array().unwrap();
    assert_eq!(studies.len(), 1, "{out}");
    let s = &studies[0];
    for k in ["study_uid", "patient_id", "patient_name", "study_date", "accession", "description", "modalities", "series"] {
        assert!(s.get(k).is_some(), "missing {k}");
    }
    assert_eq!(
        (s["study_uid"].as_str(), s["patient_name"].as_str(), s["accession"].as_str()),
        (Some(STUDY), Some("Test^Jane"), Some("ACC001"))
    );
    assert_eq!(s["modalities"], serde_json::json!(["CT"]));
    let se = &s["series"][0];
    for k in ["series_uid", "modality", "description", "number", "instances"] {
        assert!(se.get(k).is_some(), "series missing {k}");
    }
    assert_eq!((se["series_uid"].as_str(), se["instances"].as_u64()), (Some(SERIES), Some(20)));
    let out = ok(
        &radbridge(
            &[
                "pacs",
                "search",
                "--server",
                &web,
                a[0],
                a[1],
                a[2],
                a[3],
                "--study-date",
                "19950101-19951231",
                "--modality",
                "CT",
                "--json",
            ],
            home.path(),
        ),
        "search by date",
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "only the 1995 head CT: {out}");
    assert_eq!(found[0]["patient_id"], "77654033");
    assert_eq!(found[0]["series"][0]["instances"], 4);

    // Retrieve: byte-identical files, one folder per series, and the folder opens.
    let dest = home.path().join("retrieved");
    let out = ok(
        &radbridge(
            &["pacs", "retrieve", "--server", &web, a[0], a[1], a[2], a[3], "--study", STUDY, "--output", dest.to_str().unwrap(), "--json"],
            home.path(),
        ),
        "retrieve",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((o["series"][0]["fetched"].as_u64(), o["series"][0]["already_present"].as_u64()), (Some(20), Some(0)));
    let got = files_under(&dest.join(SERIES));
    assert_eq!(got.len(), 20);
    for f in j2k_series() {
        let mine = dest.join(SERIES).join(f.file_name().unwrap());
        assert_eq!(std::fs::read(&mine).unwrap(), std::fs::read(f).unwrap(), "{} differs from what was uploaded", mine.display());
    }
    let insp = ok(&radbridge(&["inspect", dest.to_str().unwrap(), "--json"], home.path()), "inspect");
    let insp: Value = serde_json::from_str(&insp).unwrap();
    assert_eq!(insp["volume"]["dimensions"], serde_json::json!([512, 512, 20]));

    // Resume: five instances gone and a stale temporary: only those five are fetched.
    for f in &got[..5] {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::write(dest.join(SERIES).join(".7.99999.part"), b"half an instance").unwrap();
    let out = ok(
        &radbridge(
            &[
                "pacs",
                "retrieve",
                "--server",
                &web,
                a[0],
                a[1],
                a[2],
                a[3],
                "--study",
                STUDY,
                "--series",
                SERIES,
                "--output",
                dest.to_str().unwrap(),
                "--json",
            ],
            home.path(),
        ),
        "resume",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((o["series"][0]["fetched"].as_u64(), o["series"][0]["already_present"].as_u64()), (Some(5), Some(15)), "{out}");
    assert_eq!(files_under(&dest.join(SERIES)), got, "all 20 back, no temporary left");

    // The library has the study once, from the PACS.
    let db = home.path().join("radbridge.sqlite3");
    let lib = ok(&radbridge(&["library", "list", "--json", "--db", db.to_str().unwrap()], home.path()), "library");
    let lib: Value = serde_json::from_str(&lib).unwrap();
    assert_eq!(lib.as_array().unwrap().len(), 1, "{lib}");
    assert_eq!((lib[0]["origin"].as_str(), lib[0]["modality"].as_str()), (Some("pacs"), Some("CT")));

    // Send: a DICOM file is stored (STOW-RS); a file that is not DICOM sends nothing.
    let before = pacs.instances();
    let out = ok(
        &radbridge(
            &["pacs", "send", "--server", &web, a[0], a[1], a[2], a[3], data("pydicom/CT_small.dcm").to_str().unwrap(), "--json"],
            home.path(),
        ),
        "send",
    );
    let sent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sent[0]["accepted"], true, "{out}");
    assert_eq!(pacs.instances(), before + 1);
    let not_dicom = home.path().join("notes.txt");
    std::fs::write(&not_dicom, "not dicom").unwrap();
    let e = err(
        &radbridge(
            &[
                "pacs",
                "send",
                "--server",
                &web,
                a[0],
                a[1],
                a[2],
                a[3],
                data("pydicom/CT_small.dcm").to_str().unwrap(),
                not_dicom.to_str().unwrap(),
            ],
            home.path(),
        ),
        "send non-DICOM",
    );
    assert!(e.contains("notes.txt") && e.contains("not a DICOM"), "{e}");
    assert_eq!(pacs.instances(), before + 1, "nothing sent");

    // Every operation is audited, without the password.
    let audit = audit_actions(&db);
    let count = |a: &str| audit.iter().filter(|(x, _)| x == a).count();
    assert_eq!((count("pacs_query"), count("pacs_retrieve"), count("pacs_send")), (2, 2, 2), "{audit:?}");
    assert!(audit.iter().all(|(_, d)| !d.contains(PASSWORD)));
}

/// Forwards to `target`, but closes each connection after `budget` bytes of response.
fn cutting_proxy(target: u16, budget: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { return };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let mut sent = 0usize;
                let mut buf = [0u8; 16384];
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let n = n.min(budget - sent);
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if sent >= budget {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
                let _ = s_read.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_dropped_connection_leaves_complete_files_only_and_a_rerun_completes() {
    let pacs = Orthanc::holding(j2k_series());
    let home = tempfile::tempdir().unwrap();
    let a = auth();
    let proxy = cutting_proxy(pacs.http, 1_200_000);
    let cut = format!("http://127.0.0.1:{proxy}/dicom-web");
    let dest = home.path().join("cut");
    let e = err(
        &radbridge(
            &["pacs", "retrieve", "--server", &cut, a[0], a[1], a[2], a[3], "--study", STUDY, "--output", dest.to_str().unwrap()],
            home.path(),
        ),
        "cut",
    );
    assert!(e.contains("dropped") && e.contains("run the same retrieve again"), "{e}");
    let partial = files_under(&dest.join(SERIES));
    assert!(!partial.is_empty() && partial.len() < 20, "some instances complete: {}", partial.len());
    for f in &partial {
        assert!(f.extension().is_some_and(|x| x == "dcm"), "no temporary left under {}", f.display());
        let orig = j2k_series().iter().find(|o| o.file_name() == f.file_name()).unwrap();
        assert_eq!(std::fs::read(f).unwrap(), std::fs::read(orig).unwrap(), "{} is complete", f.display());
    }
    // Straight to the server: only the rest is fetched.
    let out = ok(
        &radbridge(
            &[
                "pacs",
                "retrieve",
                "--server",
                &pacs.web(),
                a[0],
                a[1],
                a[2],
                a[3],
                "--study",
                STUDY,
                "--output",
                dest.to_str().unwrap(),
                "--json",
            ],
            home.path(),
        ),
        "rerun",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(o["series"][0]["already_present"].as_u64(), Some(partial.len() as u64));
    assert_eq!(o["series"][0]["instances"].as_u64(), Some(20));
    assert_eq!(files_under(&dest.join(SERIES)).len(), 20);
}

/// A one-shot HTTP server answering every request with `respond(path)`: (status line, headers, body).
fn fake_http(respond: impl Fn(&str) -> (String, Vec<u8>) + Send + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = vec![0u8; 65536];
            let mut n = 0;
            while let Ok(k) = s.read(&mut buf[n..]) {
                if k == 0 {
                    break;
                }
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (head, body) = respond(&path);
            let _ = s.write_all(format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
            let _ = s.write_all(&body);
        }
    });
    port
}

/// A DICOMweb server (its address) whose QIDO-RS lists one series of one instance and whose
/// WADO-RS answers `body` as a multipart/related response with boundary XYZ.
fn fake_wado(body: &'static [u8]) -> String {
    let port = fake_http(move |path| {
        if path.contains("/instances") || path.contains("/series?") {
            let uid = if path.contains("/instances") { "00080018" } else { "0020000E" };
            let json = format!(r#"[{{"{uid}": {{"vr": "UI", "Value": ["1.2.3.4.5"]}}}}]"#);
            ("HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json".into(), json.into_bytes())
        } else {
            ("HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=XYZ".into(), body.to_vec())
        }
    });
    format!("http://127.0.0.1:{port}/dicom-web")
}

#[test]
fn bad_servers_and_bad_answers_are_one_named_error_each() {
    let pacs = Orthanc::holding(&j2k_series()[..2]);
    let home = tempfile::tempdir().unwrap();
    let web = pacs.web();
    let dest = home.path().join("out");
    let d = dest.to_str().unwrap();

    let e = err(
        &radbridge(&["pacs", "search", "--server", &web, "--user", USER, "--password-env", "RB_WRONG_PASSWORD"], home.path()),
        "wrong password",
    );
    assert!(e.contains("refused the credentials (HTTP 401)") && !e.contains("not-the-password"), "{e}");
    let e = err(&radbridge(&["pacs", "search", "--server", &web], home.path()), "no credentials");
    assert!(e.contains("HTTP 401"), "{e}");

    let closed = format!("http://127.0.0.1:{}/dicom-web", free_port());
    let e = err(&radbridge(&["pacs", "search", "--server", &closed], home.path()), "unreachable");
    assert!(e.contains(&format!("pacs {closed}: cannot reach {closed}")), "{e}");
    let e = err(
        &radbridge(&["pacs", "echo", "--server", &format!("dimse://NOBODY@127.0.0.1:{}", free_port())], home.path()),
        "unreachable DIMSE",
    );
    assert!(e.contains("dimse://NOBODY@127.0.0.1"), "{e}");

    let a = auth();
    let e = err(
        &radbridge(
            &["pacs", "retrieve", "--server", &web, a[0], a[1], a[2], a[3], "--study", "1.2.826.0.1.999", "--output", d],
            home.path(),
        ),
        "no such study",
    );
    assert!(e.contains("study 1.2.826.0.1.999 not found"), "{e}");
    let e = err(
        &radbridge(
            &["pacs", "retrieve", "--server", &web, a[0], a[1], a[2], a[3], "--study", STUDY, "--series", "1.2.3.4", "--output", d],
            home.path(),
        ),
        "no such series",
    );
    assert!(e.contains(&format!("series 1.2.3.4 not found in study {STUDY}")), "{e}");
    let e = err(
        &radbridge(&["pacs", "retrieve", "--server", &web, a[0], a[1], a[2], a[3], "--study", "../../etc", "--output", d], home.path()),
        "not a UID",
    );
    assert!(e.contains("not a DICOM UID"), "{e}");
    let e = err(&radbridge(&["pacs", "search", "--server", "https://bob:pw@pacs.example/dicom-web"], home.path()), "credentials in URL");
    assert!(e.contains("not in the URL") && !e.contains(":pw@"), "{e}");

    // A server whose WADO-RS answer is not a valid multipart body.
    let fake = fake_wado(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nthis is not DICOM and never ends");
    let e =
        err(&radbridge(&["pacs", "retrieve", "--server", &fake, "--study", "1.2.3", "--output", d], home.path()), "malformed multipart");
    assert!(e.contains("dropped") || e.contains("malformed multipart"), "{e}");
    assert!(files_under(&dest).iter().all(|f| f.extension().is_some_and(|x| x == "dcm")), "no temporary left");
    let fake = fake_wado(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nnot a part-10 file\r\n--XYZ--\r\n");
    let e = err(&radbridge(&["pacs", "retrieve", "--server", &fake, "--study", "1.2.3", "--output", d], home.path()), "part not DICOM");
    assert!(e.contains("malformed multipart") && e.contains("not a DICOM Part-10 file"), "{e}");
    fn bad_json(_: &str) -> (String, Vec<u8>) {
        ("HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json".into(), b"{not json".to_vec())
    }
    let fake = format!("http://127.0.0.1:{}/dicom-web", fake_http(bad_json));
    let e = err(&radbridge(&["pacs", "search", "--server", &fake], home.path()), "bad JSON");
    assert!(e.contains("malformed DICOM JSON"), "{e}");
    assert!(files_under(&dest).is_empty(), "nothing written under a final name: {:?}", files_under(&dest));
}

#[test]
fn named_servers_keep_secrets_out_of_settings() {
    let pacs = Orthanc::holding(&j2k_series()[..1]);
    let home = tempfile::tempdir().unwrap();
    ok(
        &radbridge(
            &["pacs", "server", "add", "main", "--url", &pacs.web(), "--user", USER, "--password-env", "RB_PACS_PASSWORD"],
            home.path(),
        ),
        "server add",
    );
    let settings = std::fs::read_to_string(home.path().join("pacs-servers.json")).unwrap();
    assert!(settings.contains("main") && !settings.contains(PASSWORD), "{settings}");
    let list = ok(&radbridge(&["pacs", "server", "list", "--json"], home.path()), "list");
    assert!(!list.contains(PASSWORD));
    let out = ok(&radbridge(&["pacs", "search", "--server", "main", "--json"], home.path()), "search by name");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["study_uid"], STUDY);
    let echo = ok(&radbridge(&["pacs", "echo", "--server", "main"], home.path()), "echo");
    assert!(echo.contains("main"));
    let audit = audit_actions(&home.path().join("radbridge.sqlite3"));
    assert!(audit.iter().any(|(a, d)| a == "pacs_query" && d.contains("\"server\":\"main\"")), "{audit:?}");
    assert!(audit.iter().all(|(_, d)| !d.contains(PASSWORD)));
    let e = err(&radbridge(&["pacs", "search", "--server", "nosuch"], home.path()), "unknown name");
    assert!(e.contains("no server named"), "{e}");
    ok(&radbridge(&["pacs", "server", "remove", "main"], home.path()), "remove");
    assert!(!std::fs::read_to_string(home.path().join("pacs-secrets.json")).unwrap().contains(PASSWORD));
}

#[test]
fn dimse_find_move_store_and_a_refused_move_through_the_cli() {
    let pacs = Orthanc::holding(j2k_series());
    let home = tempfile::tempdir().unwrap();
    let peer = pacs.dimse();
    let port = pacs.scp.to_string();
    ok(&radbridge(&["pacs", "echo", "--server", &peer], home.path()), "C-ECHO");

    let out = ok(
        &radbridge(&["pacs", "search", "--server", &peer, "--patient-name", "Test*", "--modality", "CT", "--json"], home.path()),
        "C-FIND",
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{out}");
    assert_eq!((found[0]["study_uid"].as_str(), found[0]["patient_id"].as_str()), (Some(STUDY), Some("RBPACS01")));
    assert_eq!((found[0]["series"][0]["series_uid"].as_str(), found[0]["series"][0]["instances"].as_u64()), (Some(SERIES), Some(20)));

    // C-MOVE to our own Storage SCP: the same bytes as uploaded (pixel data untouched).
    let dest = home.path().join("moved");
    let d = dest.to_str().unwrap();
    let out = ok(
        &radbridge(
            &["pacs", "retrieve", "--server", &peer, "--aet", "RADBRIDGE", "--port", &port, "--study", STUDY, "--output", d, "--json"],
            home.path(),
        ),
        "C-MOVE",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(o["series"][0]["instances"].as_u64(), Some(20), "{out}");
    for f in j2k_series() {
        let mine = dest.join(SERIES).join(f.file_name().unwrap());
        assert_eq!(pixel_bytes(&mine), pixel_bytes(f), "{}", mine.display());
    }
    let insp: Value = serde_json::from_str(&ok(&radbridge(&["inspect", d, "--json"], home.path()), "inspect")).unwrap();
    assert_eq!(insp["volume"]["dimensions"], serde_json::json!([512, 512, 20]));
    // A second run rewrites nothing.
    let out = ok(
        &radbridge(
            &["pacs", "retrieve", "--server", &peer, "--port", &port, "--study", STUDY, "--series", SERIES, "--output", d, "--json"],
            home.path(),
        ),
        "C-MOVE again",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((o["series"][0]["fetched"].as_u64(), o["series"][0]["already_present"].as_u64()), (Some(0), Some(20)), "{out}");
    // A resume asks only for what is missing (image-level C-FIND, then C-MOVE of those UIDs).
    let got = files_under(&dest.join(SERIES));
    for f in &got[3..8] {
        std::fs::remove_file(f).unwrap();
    }
    let out = ok(
        &radbridge(&["pacs", "retrieve", "--server", &peer, "--port", &port, "--study", STUDY, "--output", d, "--json"], home.path()),
        "C-MOVE resume",
    );
    let o: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((o["series"][0]["fetched"].as_u64(), o["series"][0]["already_present"].as_u64()), (Some(5), Some(15)), "{out}");
    assert_eq!(files_under(&dest.join(SERIES)), got);
    // Only those five crossed the network (the bytes the SCP received, against the series').
    let five: u64 = got[3..8].iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let received = o["bytes"].as_u64().unwrap();
    assert!(received <= five + 5 * 1024 && received + 5 * 1024 >= five, "received {received} bytes for 5 instances of {five}");

    // A peer that does not know our AE refuses the move: one named error, nothing written.
    let refused = home.path().join("refused");
    let e = err(
        &radbridge(
            &[
                "pacs",
                "retrieve",
                "--server",
                &peer,
                "--aet",
                "STRANGER",
                "--port",
                &port,
                "--study",
                STUDY,
                "--output",
                refused.to_str().unwrap(),
            ],
            home.path(),
        ),
        "move to an unknown AE",
    );
    assert!(e.contains(&format!("pacs {peer}:")) && e.to_lowercase().contains("c-move"), "{e}");
    assert!(files_under(&refused).is_empty());
    let e = err(
        &radbridge(
            &["pacs", "retrieve", "--server", &peer, "--port", &port, "--study", "1.2.826.0.1.999", "--output", refused.to_str().unwrap()],
            home.path(),
        ),
        "no such study",
    );
    assert!(e.contains("study 1.2.826.0.1.999 not found"), "{e}");

    // C-STORE: accepted, and Orthanc has it.
    let before = pacs.instances();
    let out = ok(
        &radbridge(&["pacs", "send", "--server", &peer, data("pydicom/CT_small.dcm").to_str().unwrap(), "--json"], home.path()),
        "C-STORE",
    );
    let sent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sent[0]["accepted"], true, "{out}");
    assert_eq!(pacs.instances(), before + 1);
    let audit = audit_actions(&home.path().join("radbridge.sqlite3"));
    assert!(audit.iter().any(|(a, d)| a == "pacs_send" && d.contains("\"protocol\":\"dimse\"")), "{audit:?}");
}

#[test]
fn a_batch_manifest_may_name_studies_in_a_pacs() {
    let pacs = Orthanc::holding(j2k_series());
    let home = tempfile::tempdir().unwrap();
    ok(
        &radbridge(
            &["pacs", "server", "add", "main", "--url", &pacs.web(), "--user", USER, "--password-env", "RB_PACS_PASSWORD"],
            home.path(),
        ),
        "server add",
    );
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo");
    let local_dir = j2k_series()[0].parent().unwrap();
    let m = home.path().join("manifest.csv");
    std::fs::write(
        &m,
        format!("id,path\nremote,pacs://main/{STUDY}/{SERIES}\nmissing,pacs://main/1.2.826.0.1.999\nlocal,{}\n", local_dir.display()),
    )
    .unwrap();
    let out = home.path().join("out");
    let o = radbridge(
        &[
            "batch",
            "--labels",
            "ct-rate",
            "--model",
            demo.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(3), "one study fails: {}", String::from_utf8_lossy(&o.stderr));
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let rows: Vec<&str> = scores.lines().collect();
    assert_eq!(rows.len(), 3, "{scores}");
    let (remote, local) = (rows[1].split_once(',').unwrap(), rows[2].split_once(',').unwrap());
    assert_eq!((remote.0, local.0), ("remote", "local"));
    assert_eq!(remote.1, local.1, "the study from the PACS scores as the same files read locally");
    assert_eq!(files_under(&out.join("pacs").join(STUDY).join(SERIES)).len(), 20);
    let failures = std::fs::read_to_string(out.join("failures.csv")).unwrap();
    assert!(failures.contains("missing") && failures.contains("study 1.2.826.0.1.999 not found"), "{failures}");
    // A manifest with a malformed pacs path is refused before anything runs.
    std::fs::write(&m, "id,path\nx,pacs://main/../../etc\n").unwrap();
    let o = radbridge(
        &["batch", "--model", demo.to_str().unwrap(), "--manifest", m.to_str().unwrap(), "--output", out.to_str().unwrap()],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected pacs://<SERVER>/<STUDY_UID>"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `openssl` in `dir`: a test CA, and a server certificate for 127.0.0.1 signed by it. Returns
/// (the CA's PEM, the server's certificate + key PEM as Orthanc takes it).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Radbridge Test CA",
    ]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "srv.ext",
    ]);
    let both = [std::fs::read(dir.join("srv.pem")).unwrap(), std::fs::read(dir.join("srv.key")).unwrap()].concat();
    std::fs::write(dir.join("orthanc.pem"), both).unwrap();
    (dir.join("ca.pem"), dir.join("orthanc.pem"))
}

/// A TLS endpoint (tests/reference/tls_proxy.py: Python's ssl module) in front of `target`;
/// returns its port. Killed when the returned child is dropped by the caller.
fn tls_proxy(pem: &Path, target: u16) -> (u16, Child) {
    use std::io::BufRead;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/tls_proxy.py");
    let mut child = Command::new(radbridge_tests::test_python())
        .arg(script)
        .arg(pem)
        .arg(target.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the TLS proxy");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (line.trim().parse().unwrap_or_else(|_| panic!("TLS proxy port: {line:?}")), child)
}

#[test]
fn dicomweb_over_https_trusts_only_the_given_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, server_pem) = test_ca(certs.path());
    let pacs = Orthanc::holding(&j2k_series()[..3]);
    let (port, mut proxy) = tls_proxy(&server_pem, pacs.http);
    let https = format!("https://127.0.0.1:{port}/dicom-web");
    let home = tempfile::tempdir().unwrap();
    let a = auth();
    // The platform's trust store does not know the test CA: refused, by name.
    let e = err(&radbridge(&["pacs", "search", "--server", &https, a[0], a[1], a[2], a[3]], home.path()), "unknown CA");
    assert!(e.contains(&format!("cannot reach {https}")) && e.to_lowercase().contains("certificate"), "{e}");
    // With the hospital's CA: search and a byte-identical retrieve.
    let ca_s = ca.to_str().unwrap();
    let out = ok(
        &radbridge(&["pacs", "search", "--server", &https, a[0], a[1], a[2], a[3], "--ca-file", ca_s, "--json"], home.path()),
        "https search",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v[0]["study_uid"].as_str(), v[0]["series"][0]["instances"].as_u64()), (Some(STUDY), Some(3)));
    let dest = home.path().join("tls");
    ok(
        &radbridge(
            &[
                "pacs",
                "retrieve",
                "--server",
                &https,
                a[0],
                a[1],
                a[2],
                a[3],
                "--ca-file",
                ca_s,
                "--study",
                STUDY,
                "--output",
                dest.to_str().unwrap(),
            ],
            home.path(),
        ),
        "https retrieve",
    );
    for f in j2k_series().iter().take(3) {
        assert_eq!(std::fs::read(dest.join(SERIES).join(f.file_name().unwrap())).unwrap(), std::fs::read(f).unwrap());
    }
    // A file that is not PEM is one named error.
    let e = err(
        &radbridge(&["pacs", "search", "--server", &https, "--ca-file", data("pydicom/CT_small.dcm").to_str().unwrap()], home.path()),
        "not PEM",
    );
    assert!(e.contains("CT_small.dcm") && e.contains("certificate"), "{e}");
    let _ = proxy.kill();
    let _ = proxy.wait();
}
