//! `radbridge-measure OUT CMD [ARGS...]`: run CMD (stdio inherited), then write its CPU time
//! (user + system seconds), peak resident memory (KiB) and exit status to OUT, and exit with
//! its status. CMD is killed after 60 s (a hang).
//!
//! Why a separate process: Linux starts a child's `ru_maxrss` at its parent's high-water mark
//! when it is spawned by vfork + exec, so measured straight from the test binary (hundreds of
//! MB after the model tests) the figure would be the test's, not the CLI's. This process is a
//! few MB, so what `wait4` reports here is the CLI's own peak (or this process's size, if larger).

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: radbridge-measure OUT CMD [ARGS...]");
        std::process::exit(2);
    }
    let child = match std::process::Command::new(&args[1]).args(&args[2..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("radbridge-measure: cannot start {}: {e}", args[1].to_string_lossy());
            std::process::exit(2);
        }
    };
    let pid = child.id() as libc::pid_t;
    std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: signalling our own child; this process exits as soon as it is reaped, so the
        // pid cannot have been reused while this thread runs.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        eprintln!("radbridge-measure: wait4 failed");
        std::process::exit(2);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    let line = format!("{:.6} {} {}\n", tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss, code);
    if let Err(e) = std::fs::write(&args[0], line) {
        eprintln!("radbridge-measure: cannot write {}: {e}", args[0].to_string_lossy());
        std::process::exit(2);
    }
    std::process::exit(code);
}
