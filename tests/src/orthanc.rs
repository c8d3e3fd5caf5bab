//! A real Orthanc for the PACS tests (Debian's `orthanc` + `orthanc-dicomweb`, as in
//! ../shared/spec/pacs.md): started on free loopback ports with a temporary storage folder and
//! basic authentication, knowing our Storage SCP as AE RADBRIDGE on `scp`; killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const USER: &str = "radbridge";
pub const PASSWORD: &str = "orthanc-test-secret";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Orthanc {
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub dicom: u16,
    /// Our Storage SCP port, registered in Orthanc as AE RADBRIDGE (for C-MOVE).
    pub scp: u16,
    child: Child,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Orthanc {
    pub fn start() -> Orthanc {
        Self::start_with(serde_json::json!({}))
    }

    /// Started with these configuration members added (e.g. a transfer syntax turned off).
    pub fn start_with(extra: Value) -> Orthanc {
        let dir = tempfile::Builder::new().prefix("radbridge-orthanc").tempdir().unwrap();
        let (http, dicom, scp) = (free_port(), free_port(), free_port());
        let mut cfg = serde_json::json!({
            "Name": "TestPACS", "StorageDirectory": dir.path().join("db"), "IndexDirectory": dir.path().join("db"),
            "HttpPort": http, "DicomPort": dicom, "DicomAet": "TESTPACS", "RemoteAccessAllowed": false,
            "AuthenticationEnabled": true, "RegisteredUsers": {USER: PASSWORD},
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "WadoRoot": "/wado", "Ssl": false},
            "DicomAlwaysAllowFind": true, "DicomAlwaysAllowMove": true, "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowEcho": true, "DicomCheckCalledAet": false,
            "DicomModalities": {"radbridge": ["RADBRIDGE", "127.0.0.1", scp]},
        });
        if let (Value::Object(c), Value::Object(x)) = (&mut cfg, extra) {
            c.extend(x);
        }
        let cfg_path = dir.path().join("orthanc.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("Orthanc")
            .arg(&cfg_path)
            .env("LC_ALL", "C.UTF-8")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Orthanc (Debian packages orthanc and orthanc-dicomweb; `make setup-test` installs them)");
        let o = Orthanc { dir, http, dicom, scp, child };
        let t0 = Instant::now();
        while o.rest("/system").is_none() {
            assert!(t0.elapsed() < Duration::from_secs(60), "Orthanc did not start: {}", o.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        o
    }

    /// Started, holding `files`.
    pub fn holding(files: &[PathBuf]) -> Orthanc {
        let o = Orthanc::start();
        for f in files {
            o.upload(f);
        }
        o
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    pub fn web(&self) -> String {
        format!("http://127.0.0.1:{}/dicom-web", self.http)
    }

    pub fn dimse(&self) -> String {
        format!("dimse://TESTPACS@127.0.0.1:{}", self.dicom)
    }

    /// A DIMSE peer for the pacs crate's own calls, calling as `calling`.
    pub fn peer(&self, calling: &str) -> radbridge_pacs::dimse::DimsePeer {
        radbridge_pacs::dimse::DimsePeer {
            called_aet: "TESTPACS".into(),
            host: "127.0.0.1".into(),
            port: self.dicom,
            calling_aet: calling.into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// GET on the REST API as text (None until it answers).
    pub fn get(&self, path: &str) -> Option<String> {
        let o = Command::new("curl")
            .args(["-sf", "-u", &format!("{USER}:{PASSWORD}"), &format!("http://127.0.0.1:{}{path}", self.http)])
            .output()
            .ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
    }

    /// GET on the REST API as JSON.
    pub fn rest(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&self.get(path)?).ok()
    }

    /// POST `body` (JSON) to the REST API; its answer.
    pub fn post_json(&self, path: &str, body: &str) -> String {
        let o = Command::new("curl")
            .args(["-sf", "-u", &format!("{USER}:{PASSWORD}"), "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body])
            .arg(format!("http://127.0.0.1:{}{path}", self.http))
            .output()
            .unwrap();
        assert!(o.status.success(), "POST {path}: {o:?}");
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn upload(&self, file: &Path) {
        let o = Command::new("curl")
            .args(["-sf", "-u", &format!("{USER}:{PASSWORD}"), "-X", "POST", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!("http://127.0.0.1:{}/instances", self.http))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("upload {}: {:?}", file.display(), o));
        assert!(v["Status"] == "Success" || v["Status"] == "AlreadyStored", "upload {}: {v}", file.display());
    }

    pub fn instances(&self) -> usize {
        self.rest("/instances").and_then(|v| v.as_array().map(Vec::len)).unwrap_or(0)
    }
}
