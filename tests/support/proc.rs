//! Running child processes with a bounded wait, and killing them for sure.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The outcome of [`run`].
#[derive(Debug)]
pub struct RunOutput {
    pub cmdline: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// A readable description: command, exit status, stdout and stderr.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit: {}{}\nelapsed: {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline,
            self.status.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
            if self.timed_out { " (TIMED OUT, killed)" } else { "" },
            self.elapsed,
            tail(&self.stdout, 8000),
            tail(&self.stderr, 8000),
        )
    }

    /// Panic with [`describe`](Self::describe) unless the command succeeded.
    #[track_caller]
    pub fn expect_success(self, what: &str) -> RunOutput {
        if !self.success() {
            panic!("{what} failed\n{}", self.describe());
        }
        self
    }
}

/// The last `max` bytes of `s` (on a char boundary), marked when cut.
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &s[start..])
}

pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` to completion with stdin closed, capturing stdout and stderr; kill its whole process group when
/// `timeout` passes.
pub fn run(cmd: &mut Command, timeout: Duration) -> RunOutput {
    let cmdline = cmdline(cmd);
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot start `{cmdline}`: {e}"),
    };
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(&mut child);
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    // A grandchild may hold the pipes open after the leader exited; give it a moment, then end the group.
    let grace = Instant::now() + Duration::from_secs(5);
    while !(t_out.is_finished() && t_err.is_finished()) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !(t_out.is_finished() && t_err.is_finished()) {
        kill_group_quiet(child.id());
    }
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    RunOutput {
        cmdline,
        status,
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// SIGKILL the process group led by `child` (spawned with `process_group(0)`), then the child itself.
pub fn kill_group(child: &mut Child) {
    kill_group_quiet(child.id());
    let _ = child.kill();
}

fn kill_group_quiet(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Send SIGTERM to one process by id.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
