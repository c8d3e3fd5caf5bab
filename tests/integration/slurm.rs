//! A real single-node Slurm cluster (Debian's slurm-wlm and munge, started here on loopback as
//! in ../shared/spec/scale-out.md) runs `deploy/slurm/submit.sh`: a 3-task job array of
//! `radbridge batch` over a small synthetic cohort, then the merge as a dependent job. The
//! merged files must equal a single-process run's.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radbridge_tests::{bin, data};

use super::batch::{fixture, manifest, radbridge, scores};

/// The daemons, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("munged.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn start(dir: &Path) -> Cluster {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.join("munge.key");
    sh(Command::new("mungekey").arg("--create").arg(format!("--keyfile={}", key.display())));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let sock = dir.join("munge.sock");
    sh(Command::new("munged")
        .arg(format!("--key-file={}", key.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
        .arg(format!("--log-file={}", dir.join("munged.log").display()))
        .arg(format!("--seed-file={}", dir.join("munge.seed").display())));
    let d = dir.display();
    let conf = dir.join("slurm.conf");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    std::fs::write(
        &conf,
        format!(
            "ClusterName=test\nSlurmctldHost=localhost(127.0.0.1)\nSlurmUser=root\nAuthType=auth/munge\n\
             AuthInfo=socket={}\nCredType=cred/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/slurmctld.log\n\
             SlurmdLogFile={d}/slurmd.log\nSlurmctldPort={}\nSlurmdPort={}\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             SelectType=select/cons_tres\nReturnToService=2\nNodeName=n1 NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000\n\
             PartitionName=debug Nodes=n1 Default=YES State=UP\n",
            sock.display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let mut cluster = Cluster { dir: dir.to_path_buf(), conf: conf.clone(), children: vec![] };
    for args in [vec!["-D", "-i"], vec!["-D", "-N", "n1"]] {
        let prog = if args.len() == 2 { "slurmctld" } else { "slurmd" };
        let child = Command::new(prog)
            .args(&args)
            .env("SLURM_CONF", &conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{prog}.out"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        cluster.children.push(child);
    }
    let t = Instant::now();
    loop {
        let o = Command::new("sinfo").args(["-h", "-o", "%t"]).env("SLURM_CONF", &conf).output().unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Slurm did not come up: {}",
            std::fs::read_to_string(dir.join("slurmctld.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster
}

#[test]
fn slurm_job_array_and_merge_equal_a_single_process_run() {
    // slurmd runs jobs as their submitter and needs root for that (as in CI's container).
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a single-node Slurm needs root here");
        return;
    }
    for tool in ["slurmctld", "slurmd", "munged", "sbatch"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).status().unwrap().success(),
            "{tool} is missing: run `make setup-test` (Debian slurm-wlm and munge)"
        );
    }
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let bad = data("corrupt/nifti/dim_negative.nii");
    let mut rows: Vec<(String, PathBuf)> = f.cases.iter().enumerate().map(|(i, p)| (format!("c{i}"), p.clone())).collect();
    rows.insert(2, ("bad".into(), bad));
    let rows_ref: Vec<(&str, &Path)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_path())).collect();
    let m = manifest(tmp.path(), &rows_ref);
    let single = tmp.path().join("single");
    let o = radbridge(&["batch"], &[("--model", &f.brgsa), ("--manifest", &m), ("--output", &single)]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));

    let cluster = start(&tmp.path().join("slurm"));
    let out = tmp.path().join("cluster-out");
    let submit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm/submit.sh");
    let said = sh(Command::new(&submit)
        // The test node has 2 CPUs; the script asks for 4 per task by default.
        .args(["3", "--cpus-per-task=1", "--chdir"])
        .arg(&cluster.dir)
        .env("SLURM_CONF", &cluster.conf)
        .env("MODEL", &f.brgsa)
        .env("MANIFEST", &m)
        .env("OUT", &out)
        .env("THREADS", "1")
        .env("RADBRIDGE", bin())
        .env("RADBRIDGE_CACHE_DIR", f.dir.join("cache")));
    assert!(said.contains("3 tasks"), "{said}");
    let t = Instant::now();
    loop {
        let q = sh(Command::new("squeue").args(["-h", "-o", "%i %T"]).env("SLURM_CONF", &cluster.conf));
        if q.trim().is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "jobs still queued: {q}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs: Vec<String> = std::fs::read_dir(&cluster.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("radbridge-"))
        .map(|e| format!("{}: {}", e.file_name().to_string_lossy(), std::fs::read_to_string(e.path()).unwrap_or_default()))
        .collect();
    assert_eq!(logs.len(), 4, "three array tasks and the merge wrote logs: {logs:?}");
    for i in 0..3 {
        assert!(out.join(format!("parts/shard-{i}-of-3.json")).is_file(), "task {i} ran as shard {i}: {logs:?}");
    }
    assert!(out.join("run.json").is_file(), "the merge job ran: {logs:?}");
    let (a, b) = (scores(&single.join("scores.csv")), scores(&out.join("scores.csv")));
    assert_eq!(a.0, b.0, "same studies, same order");
    assert_eq!(a.1, b.1);
    for (x, y) in a.2.iter().flatten().zip(b.2.iter().flatten()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    assert_eq!(std::fs::read_to_string(single.join("failures.csv")).unwrap(), std::fs::read_to_string(out.join("failures.csv")).unwrap());
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["shards"].as_array().unwrap().len(), 3);
    assert_eq!(run["counts"]["failed"], 1);
    drop(cluster);
}
