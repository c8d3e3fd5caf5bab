//! `radbridge pacs …`: search, retrieve from and send to a PACS. Contract:
//!
//! ```text
//! radbridge pacs search   --server <URL|NAME> [auth] [--patient-id ID] [--patient-name NAME]
//!                         [--study-date YYYYMMDD[-YYYYMMDD]] [--modality CT] [--accession A]
//!                         [--study UID] [--json]
//! radbridge pacs retrieve --server <URL|NAME> [auth] --study <UID> [--series <UID>] --output <DIR>
//! radbridge pacs send     --server <URL|NAME> [auth] <FILE.dcm>...
//! radbridge pacs echo     --server <URL|NAME> [auth]
//! radbridge pacs server add <NAME> --url <URL> [auth] | list [--json] | remove <NAME>
//! auth: --user U --password-env VAR | --token-env VAR;  DIMSE: --aet AET (ours), --port P (our SCP);
//! HTTPS: --ca-file FILE (trust that PEM's CAs instead of the system's)
//! ```
//! `<URL>` is a DICOMweb root or `dimse://AET@host:port`. Every search, retrieve and send is
//! written to the audit log (no credentials); a retrieved study joins the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use radbridge_pacs::servers::{AuthKind, Registry, ServerEntry};
use radbridge_pacs::{Auth, Server, StudyQuery};
use radbridge_store::AuditAction;
use serde_json::json;

#[derive(Args)]
pub struct PacsArgs {
    /// Feedback database for the audit log and the library (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3)
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    what: PacsCommand,
}

/// Which server, and how to reach it.
#[derive(Args, Clone, Default)]
pub struct ServerArgs {
    /// A DICOMweb root (http(s)://host:port/dicom-web), dimse://AET@host:port, or a named server
    #[arg(long, value_name = "URL|NAME")]
    server: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Credentials (read from the environment) and our DIMSE and TLS settings: the same flags for
/// a one-off `--server URL` and for `server add`.
#[derive(Args, Clone, Default)]
pub struct ConnectArgs {
    /// User name for HTTP basic authentication
    #[arg(long, value_name = "U")]
    user: Option<String>,
    /// Environment variable holding the password (never on the command line)
    #[arg(long, value_name = "VAR", requires = "user", conflicts_with = "token_env")]
    password_env: Option<String>,
    /// Environment variable holding a bearer token
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// Our calling AE title (DIMSE)
    #[arg(long, value_name = "AET")]
    aet: Option<String>,
    /// The port of our Storage SCP that receives C-MOVE (DIMSE)
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Trust the CA certificates of this PEM file for HTTPS instead of the system's
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// How the flags authenticate, with the secret read from its environment variable.
    fn credentials(&self) -> Result<(AuthKind, Option<String>)> {
        Ok(match (&self.password_env, &self.token_env) {
            (Some(var), _) => (AuthKind::Basic, Some(secret_from_env(var)?)),
            (None, Some(var)) => (AuthKind::Bearer, Some(secret_from_env(var)?)),
            (None, None) if self.user.is_some() => {
                bail!("--user needs --password-env VAR (the password is read from the environment, never from the command line)")
            }
            (None, None) => (AuthKind::None, None),
        })
    }

    /// `--aet`, checked.
    fn aet(&self) -> Result<Option<String>> {
        match &self.aet {
            Some(aet) if aet.is_empty() || aet.len() > 16 => bail!("--aet {aet:?}: an AE title is 1 to 16 characters"),
            other => Ok(other.clone()),
        }
    }
}

#[derive(Subcommand)]
enum PacsCommand {
    /// Find studies (QIDO-RS or C-FIND), each with its series
    Search {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_name = "ID")]
        patient_id: Option<String>,
        /// Patient name; `*` wildcards as DICOM matching allows (e.g. `DOE*`)
        #[arg(long, value_name = "NAME")]
        patient_name: Option<String>,
        /// YYYYMMDD or a range YYYYMMDD-YYYYMMDD
        #[arg(long, value_name = "DATE")]
        study_date: Option<String>,
        #[arg(long, value_name = "MODALITY")]
        modality: Option<String>,
        #[arg(long, value_name = "A")]
        accession: Option<String>,
        #[arg(long, value_name = "UID")]
        study: Option<String>,
        /// JSON: [{study_uid, patient_id, patient_name, study_date, accession, description, modalities, series: [...]}]
        #[arg(long)]
        json: bool,
    },
    /// Retrieve a study or one series (WADO-RS or C-MOVE) as .dcm files, one folder per series;
    /// resumable: a second run fetches only what is missing
    Retrieve {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_name = "UID")]
        study: String,
        #[arg(long, value_name = "UID")]
        series: Option<String>,
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
    /// Store DICOM files (a findings SR, typically) by STOW-RS or C-STORE
    Send {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(required = true, value_name = "FILE.dcm")]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check that the server answers and accepts our credentials (C-ECHO or a QIDO-RS query)
    Echo {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Named servers (settings; secrets kept apart in an owner-only file)
    Server {
        #[command(subcommand)]
        what: ServerCommand,
    },
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Add or replace a named server
    Add {
        name: String,
        /// DICOMweb root or dimse://AET@host:port
        #[arg(long, value_name = "URL")]
        url: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// The named servers (no secrets)
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
    },
}

fn registry() -> Result<Registry> {
    Ok(Registry::new(&radbridge_store::default_dir()?))
}

fn secret_from_env(var: &str) -> Result<String> {
    let v = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    if v.is_empty() {
        bail!("environment variable {var} is empty");
    }
    Ok(v)
}

/// The server of `--server`, with the auth and AE flags applied.
pub fn resolve(a: &ServerArgs) -> Result<Server> {
    let mut server = if a.server.contains("://") { Server::from_address(&a.server)? } else { registry()?.get(&a.server)? };
    let c = &a.connect;
    match c.credentials()? {
        (AuthKind::Basic, Some(password)) => server.auth = Auth::Basic { user: c.user.clone().unwrap_or_default(), password },
        (AuthKind::Bearer, Some(token)) => server.auth = Auth::Bearer { token },
        _ => {} // none given: the named server's own
    }
    if let Some(aet) = c.aet()? {
        server.calling_aet = aet;
    }
    if let Some(p) = c.port {
        server.scp_port = p;
    }
    if let Some(f) = &c.ca_file {
        server.ca_file = Some(f.clone());
    }
    Ok(server)
}

/// Write an audit entry (never credentials: only the server's name and address).
fn audit(db: Option<&Path>, action: AuditAction, server: &Server, detail: serde_json::Value) -> Result<()> {
    audit_to(&mut super::common::open_store(db)?, action, server, detail)
}

/// [`audit`] into a store already open.
fn audit_to(store: &mut radbridge_store::Store, action: AuditAction, server: &Server, mut detail: serde_json::Value) -> Result<()> {
    if let serde_json::Value::Object(d) = &mut detail {
        d.insert("server".into(), json!(server.name));
        d.insert("address".into(), json!(server.address()));
        d.insert("protocol".into(), json!(server.kind()));
    }
    store.audit(radbridge_store::audit::os_user().as_deref(), action, &detail)?;
    Ok(())
}

fn outcome<T>(r: &std::result::Result<T, radbridge_pacs::PacsError>) -> serde_json::Value {
    match r {
        Ok(_) => json!("ok"),
        Err(e) => json!(e.kind.to_string()),
    }
}

pub fn run(a: &PacsArgs) -> Result<()> {
    let db = a.db.as_deref();
    match &a.what {
        PacsCommand::Search { server, patient_id, patient_name, study_date, modality, accession, study, json } => {
            let server = resolve(server)?;
            let query = StudyQuery {
                patient_id: patient_id.clone(),
                patient_name: patient_name.clone(),
                study_date: study_date.clone(),
                modality: modality.clone(),
                accession: accession.clone(),
                study_uid: study.clone(),
            };
            if let Some(d) = &query.study_date {
                check_date(d)?;
            }
            let found = radbridge_pacs::search(&server, &query);
            let n = found.as_ref().map(|f| f.len()).unwrap_or(0);
            audit(db, AuditAction::PacsQuery, &server, json!({"query": query, "studies": n, "outcome": outcome(&found)}))?;
            let found = found?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                for s in &found {
                    println!(
                        "{}  {}  {}  {}  {}  {}",
                        s.study_uid,
                        s.patient_id,
                        s.patient_name,
                        s.study_date,
                        s.modalities.join("/"),
                        s.description
                    );
                    for se in &s.series {
                        println!(
                            "    {}  {}  #{}  {} instance(s)  {}",
                            se.series_uid,
                            se.modality,
                            se.number.map(|n| n.to_string()).unwrap_or_default(),
                            se.instances.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                            se.description
                        );
                    }
                }
                eprintln!("{} study(ies)", found.len());
            }
            Ok(())
        }
        PacsCommand::Retrieve { server, study, series, output, json } => {
            let server = resolve(server)?;
            retrieve(db, &server, study, series.as_deref(), output, *json)
        }
        PacsCommand::Send { server, files, json } => {
            let server = resolve(server)?;
            let sent = radbridge_pacs::send::send(&server, files);
            let detail = match &sent {
                Ok(v) => {
                    json!({"files": v.iter().map(|o| json!({"sop_instance_uid": o.sop_instance_uid, "accepted": o.accepted, "detail": o.detail})).collect::<Vec<_>>(), "outcome": "ok"})
                }
                Err(e) => json!({"files": files.len(), "outcome": e.kind.to_string()}),
            };
            audit(db, AuditAction::PacsSend, &server, detail)?;
            let sent = sent?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&sent)?);
            } else {
                for o in &sent {
                    println!(
                        "{}  {}  {}  {}",
                        if o.accepted { "accepted" } else { "refused " },
                        o.sop_instance_uid,
                        o.path.display(),
                        o.detail
                    );
                }
            }
            let refused = sent.iter().filter(|o| !o.accepted).count();
            eprintln!("{} accepted, {} refused by {}", sent.len() - refused, refused, server.name);
            if refused > 0 {
                bail!("pacs {}: {refused} of {} file(s) refused", server.name, sent.len());
            }
            Ok(())
        }
        PacsCommand::Echo { server } => {
            let server = resolve(server)?;
            radbridge_pacs::echo(&server)?;
            println!("{} ({}) answers", server.name, server.kind());
            Ok(())
        }
        PacsCommand::Server { what } => server_command(what),
    }
}

fn check_date(d: &str) -> Result<()> {
    let ok = |s: &str| s.is_empty() || (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()));
    let good = match d.split_once('-') {
        Some((a, b)) => ok(a) && ok(b) && !(a.is_empty() && b.is_empty()),
        None => !d.is_empty() && ok(d),
    };
    if !good {
        bail!("--study-date {d:?}: expected YYYYMMDD or YYYYMMDD-YYYYMMDD");
    }
    Ok(())
}

fn retrieve(db: Option<&Path>, server: &Server, study: &str, series: Option<&str>, output: &Path, as_json: bool) -> Result<()> {
    let cancel = radbridge_volume::CancelToken::default();
    super::common::cancel_on_interrupt(cancel.clone(), Some("interrupted: stopping after the current instance (run again to resume)"));
    let req = radbridge_pacs::RetrieveRequest {
        study_uid: study.to_string(),
        series_uid: series.map(str::to_string),
        output: output.to_path_buf(),
    };
    let tty = std::io::stderr().is_terminal();
    let pb = indicatif::ProgressBar::new(0);
    if tty {
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} instances {binary_bytes} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_series = String::new();
    let mut progress = |p: &radbridge_pacs::Progress| {
        if p.series_uid != last_series {
            last_series = p.series_uid.clone();
            let tail: String = p.series_uid.chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
            pb.set_message(format!("series …{tail}"));
            if !tty {
                eprintln!("series {}: {} instance(s)", p.series_uid, p.instances_total.map(|n| n.to_string()).unwrap_or("?".into()));
            }
        }
        if let Some(t) = p.instances_total {
            pb.set_length(t);
        }
        pb.set_position(p.instances_done);
    };
    let started = std::time::Instant::now();
    // The store opens (and checks itself) while the instances arrive.
    let db_path = db.map(Path::to_path_buf);
    let opening = std::thread::spawn(move || super::common::open_store(db_path.as_deref()));
    let result = radbridge_pacs::retrieve::retrieve(server, &req, &mut progress, &cancel);
    let store = opening.join().map_err(|_| anyhow::anyhow!("opening the feedback store stopped unexpectedly"))?;
    pb.finish_and_clear();
    let outcome_json = match &result {
        Ok(o) => json!({"study_uid": study, "series_uid": series, "output": output, "series": o.series.len(),
                        "instances": o.series.iter().map(|s| s.instances).sum::<u64>(),
                        "fetched": o.series.iter().map(|s| s.fetched).sum::<u64>(), "outcome": "ok"}),
        Err(e) => json!({"study_uid": study, "series_uid": series, "output": output, "outcome": e.kind.to_string()}),
    };
    let mut store = store?;
    let o = match result {
        Ok(o) => o,
        Err(e) => {
            audit_to(&mut store, AuditAction::PacsRetrieve, server, outcome_json)?;
            return Err(e.into());
        }
    };
    // The library records the study (with its own pacs_retrieve audit entry).
    let first = o.series.first().and_then(|s| first_instance(&s.folder));
    let info = first.as_deref().map(study_info).unwrap_or_default();
    let rec = radbridge_store::PacsRetrieval {
        server: server.name.clone(),
        address: server.address(),
        study_uid: study.to_string(),
        series_uids: o.series.iter().map(|s| s.series_uid.clone()).collect(),
        path: std::fs::canonicalize(output).unwrap_or_else(|_| output.to_path_buf()).display().to_string(),
        instances: o.series.iter().map(|s| s.instances).sum(),
        modality: info.0,
        study_date: info.1,
        description: info.2,
    };
    let study_id = store.record_pacs_retrieval(&rec, radbridge_store::audit::os_user().as_deref())?;
    let secs = started.elapsed().as_secs_f64();
    if as_json {
        let mut v = serde_json::to_value(&o)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("library_study_id".into(), json!(study_id));
            m.insert("seconds".into(), json!(secs));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &o.series {
            println!(
                "{}  {} instance(s) ({} fetched, {} already here)  {}",
                s.series_uid,
                s.instances,
                s.fetched,
                s.already_present,
                s.folder.display()
            );
        }
        eprintln!("{:.1} MB in {secs:.1} s; library study {study_id}", o.bytes as f64 / 1e6);
    }
    Ok(())
}

fn first_instance(folder: &Path) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v.into_iter().next()
}

/// Modality, study date and description of a retrieved instance (header only).
fn study_info(path: &Path) -> (Option<String>, Option<String>, Option<String>) {
    use dicom_dictionary_std::tags;
    let Ok(obj) = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path) else {
        return (None, None, None);
    };
    let get = |t| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    (get(tags::MODALITY), get(tags::STUDY_DATE), get(tags::STUDY_DESCRIPTION))
}

fn server_command(what: &ServerCommand) -> Result<()> {
    let reg = registry()?;
    match what {
        ServerCommand::Add { name, url, connect } => {
            let (auth, secret) = connect.credentials()?;
            let entry = ServerEntry {
                name: name.clone(),
                kind: String::new(),
                address: url.clone(),
                auth,
                user: connect.user.clone(),
                calling_aet: connect.aet()?,
                scp_port: connect.port,
                ca_file: connect.ca_file.as_ref().map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()).display().to_string()),
            };
            let e = reg.put(entry, secret.as_deref())?;
            println!("{} ({}) {}", e.name, e.kind, e.address);
        }
        ServerCommand::List { json } => {
            let list = reg.list()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for e in &list {
                    println!("{}  {}  {}  auth={:?}", e.name, e.kind, e.address, e.auth);
                }
            }
        }
        ServerCommand::Remove { name } => {
            if !reg.remove(name)? {
                bail!("no server named {name:?}");
            }
        }
    }
    Ok(())
}
