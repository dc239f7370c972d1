//! The desktop row of `pkgseed bench`: the resident memory of the tray app (`pkgseed-desktop --minimized`, dashboard
//! closed) under Xvfb, in its own `dbus-run-session`, with a temp HOME and a loopback-only config — the way
//! tests/desktop/lib.mjs launches it. RSS is read from /proc after the engine finished its first scan and the app
//! settled; child processes (a web view's helpers, if any) are added in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::Row;
use crate::bench_daemon;

/// Where the bench looks for the app when `--desktop-bin` is not given.
pub const DESKTOP_BIN_ENV: &str = "PKGSEED_DESKTOP_BIN";
const GOAL_RSS_MB: f64 = 120.0;

pub struct DesktopBenchOptions {
    /// `--desktop-bin`, else `$PKGSEED_DESKTOP_BIN`, else `pkgseed-desktop` next to this binary.
    pub bin: Option<PathBuf>,
    /// How long the app runs after its first scan before RSS is read.
    pub settle_seconds: u64,
}

const LABEL: &str = "desktop tray app, dashboard closed: RSS MB (app / with children)";

pub fn row(options: &DesktopBenchOptions, work_dir: &Path) -> Row {
    let bin = options
        .bin
        .clone()
        .or_else(|| std::env::var_os(DESKTOP_BIN_ENV).map(PathBuf::from))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("pkgseed-desktop")))
        });
    let Some(bin) = bin.filter(|b| b.is_file()) else {
        return Row::skipped(
            LABEL.into(),
            &format!("no pkgseed-desktop binary (pass --desktop-bin or set {DESKTOP_BIN_ENV})"),
        );
    };
    for tool in ["Xvfb", "dbus-run-session"] {
        if find_in_path(tool).is_none() {
            return Row::skipped(LABEL.into(), &format!("{tool} not found"));
        }
    }
    match measure(&bin, options.settle_seconds, work_dir) {
        Ok((app, tree)) => Row::new(
            LABEL.into(),
            format!("{:.1} / {:.1}", app as f64 / 1e6, tree as f64 / 1e6),
            format!("goal <= {GOAL_RSS_MB:.0}; Xvfb, no tray host, as built"),
            format!("{:.2}x of goal", tree as f64 / 1e6 / GOAL_RSS_MB),
        ),
        Err(err) => Row::skipped(LABEL.into(), &format!("failed: {err:#}")),
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Kills its process group (SIGTERM, then SIGKILL after 10 s) when dropped.
struct GroupGuard(Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let pgid = self.0.id() as libc::pid_t;
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn spawn_in_group(cmd: &mut Command) -> Result<GroupGuard> {
    use std::os::unix::process::CommandExt;
    Ok(GroupGuard(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?,
    ))
}

/// (RSS of the app process, RSS of the app and its descendants), bytes.
fn measure(bin: &Path, settle_seconds: u64, work_dir: &Path) -> Result<(u64, u64)> {
    let mut display = 99;
    while Path::new(&format!("/tmp/.X11-unix/X{display}")).exists()
        || Path::new(&format!("/tmp/.X{display}-lock")).exists()
    {
        display += 1;
    }
    let _xvfb = spawn_in_group(Command::new("Xvfb").args([
        &format!(":{display}"),
        "-screen",
        "0",
        "1280x800x24",
        "-nolisten",
        "tcp",
    ]))?;
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("Xvfb :{display} did not come up in 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let home = work_dir.join("home");
    let config_dir = home.join(".config/pkgseed");
    let data_dir = home.join(".local/share/pkgseed");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(
        config_dir.join("config.toml"),
        "network = \"local\"\n[ecosystems.apt]\nenabled = false\n[ecosystems.rubygems]\nenabled = false\n",
    )?;
    let mut cmd = Command::new("dbus-run-session");
    cmd.arg("--")
        .arg(bin)
        .arg("--minimized")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("DISPLAY", format!(":{display}"))
        .env("LANG", "C.UTF-8")
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("PKGSEED_CONFIG_DIR", &config_dir)
        .env("PKGSEED_DATA_DIR", &data_dir)
        .env("PKGSEED_KEYRING", "off")
        .env("RUST_LOG", "warn")
        .env("NO_AT_BRIDGE", "1");
    let session = spawn_in_group(&mut cmd)?;
    bench_daemon::wait_for(&data_dir, Duration::from_secs(120), |s| {
        s["first_scan_done"] == true
    })
    .context("the app's engine did not finish its first scan")?;
    std::thread::sleep(Duration::from_secs(settle_seconds));
    let app = descendants(session.0.id())
        .into_iter()
        .find(|&pid| command_name(pid).is_some_and(|c| c.starts_with("pkgseed-deskto")))
        .context("no pkgseed-desktop process under dbus-run-session")?;
    let app_rss = bench_daemon::current_rss_bytes(app)?;
    let tree_rss = app_rss
        + descendants(app)
            .into_iter()
            .filter_map(|pid| bench_daemon::current_rss_bytes(pid).ok())
            .sum::<u64>();
    Ok((app_rss, tree_rss))
}

fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process below `root` (not `root` itself).
fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_pid(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}
