//! The user's settings: one serde struct with its defaults in one place, read from `config.toml` in the config
//! dir (unknown keys tolerated), validated, and written atomically so a crash leaves the old or the new file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The version written by this build. Older files are migrated in [`Config::load`].
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub version: u32,
    /// `public` (join the public IPFS network) or `local` (loopback only; tests and benchmarks).
    pub network: String,
    /// Multiaddrs to listen on; empty means the network profile's defaults.
    pub listen_addrs: Vec<String>,
    /// The local trustless gateway's `IP:port`: loopback only (anything else is refused); `""` turns it off; port 0
    /// picks a free port (`pkgseed status` shows the bound address). Applies at the next start.
    pub gateway_listen_addr: String,
    /// The CID profile root CIDs are computed with: `unixfs-v1-2025` or `unixfs-v0-2015`.
    pub cid_profile: String,
    pub origins: OriginsConfig,
    /// Per ecosystem (`cargo`, `npm`, …); an ecosystem not listed is enabled.
    pub ecosystems: BTreeMap<String, EcosystemConfig>,
    /// Bandwidth, schedule, power and disk limits (the dashboard's limits form). Enforced by the node; see
    /// [`LimitsConfig`].
    pub limits: LimitsConfig,
}

/// The days a weekly schedule names, in order.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Minutes in a day: schedule times are minutes after local midnight, below this.
const MINUTES_PER_DAY: u32 = 24 * 60;

/// Limits on what pkgseed may use. Every number carries its unit in its name; 0 means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    pub upload_bytes_per_sec: u64,
    pub download_bytes_per_sec: u64,
    /// The alternative limits, in force while [`LimitsConfig::alt_schedule`] says so.
    pub alt_upload_bytes_per_sec: u64,
    pub alt_download_bytes_per_sec: u64,
    pub alt_schedule: AltSchedule,
    /// Pause seeding while on battery and the charge is at or below `pause_on_battery_below_percent`.
    pub pause_on_battery: bool,
    /// 100 pauses whenever the machine runs on battery.
    pub pause_on_battery_below_percent: u8,
    /// Pause seeding on a network the OS marks metered.
    pub pause_on_metered: bool,
    /// Upload allowed per calendar month; seeding pauses until the next month once it is reached.
    pub monthly_upload_bytes: u64,
    /// The most disk pkgseed's own index and store may use.
    pub disk_bytes: u64,
    /// Keep serving an artifact after its package manager deletes it, from a hard link in the data dir's store
    /// (costs disk only once the original is gone; evicted least recently served first under `disk_bytes`).
    pub keep_evicted_artifacts: bool,
}

/// When the alternative limits apply: on the listed days, from `start_minute_of_day` to `end_minute_of_day` (local
/// time; an end before the start runs past midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AltSchedule {
    pub enabled: bool,
    /// Some of [`WEEKDAYS`].
    pub days: Vec<String>,
    pub start_minute_of_day: u32,
    pub end_minute_of_day: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            upload_bytes_per_sec: 0,
            download_bytes_per_sec: 0,
            alt_upload_bytes_per_sec: 0,
            alt_download_bytes_per_sec: 0,
            alt_schedule: AltSchedule::default(),
            pause_on_battery: true,
            // Seed on battery while the charge is comfortable; a laptop at 30% should keep its power.
            pause_on_battery_below_percent: 30,
            pause_on_metered: true,
            monthly_upload_bytes: 0,
            disk_bytes: 0,
            keep_evicted_artifacts: false,
        }
    }
}

impl Default for AltSchedule {
    fn default() -> Self {
        // Working hours on weekdays: the typical time a user wants the network to themselves.
        AltSchedule {
            enabled: false,
            days: WEEKDAYS[..5].iter().map(|d| d.to_string()).collect(),
            start_minute_of_day: 9 * 60,
            end_minute_of_day: 17 * 60,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let pct = self.pause_on_battery_below_percent;
        if !(1..=100).contains(&pct) {
            return Err(format!(
                "limits.pause_on_battery_below_percent must be 1 to 100, not {pct}"
            ));
        }
        let schedule = &self.alt_schedule;
        for (key, minute) in [
            ("start_minute_of_day", schedule.start_minute_of_day),
            ("end_minute_of_day", schedule.end_minute_of_day),
        ] {
            if minute >= MINUTES_PER_DAY {
                return Err(format!("limits.alt_schedule.{key} must be below {MINUTES_PER_DAY} (minutes), not {minute}"));
            }
        }
        for (i, day) in schedule.days.iter().enumerate() {
            if !WEEKDAYS.contains(&day.as_str()) {
                return Err(format!(
                    "limits.alt_schedule.days: unknown day {day:?} (use {})",
                    WEEKDAYS.join(", ")
                ));
            }
            if schedule.days[..i].contains(day) {
                return Err(format!("limits.alt_schedule.days: {day:?} is listed twice"));
            }
        }
        if schedule.enabled {
            if schedule.days.is_empty() {
                return Err(
                    "limits.alt_schedule.days: an enabled schedule needs at least one day".into(),
                );
            }
            if schedule.start_minute_of_day == schedule.end_minute_of_day {
                return Err(
                    "limits.alt_schedule: start_minute_of_day and end_minute_of_day are equal"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Origins the user marked. An origin id is what `pkgseed status` lists (for cargo, the index dir name). `public`
/// may also hold scope wildcards, `<npm registry URL>@*`: every scope origin `<registry>@scope/` of that registry
/// is public, except a scope marked private and the scopes of a registry the user's npm config holds credentials
/// for (see docs/design.md, "Provenance").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginsConfig {
    pub public: Vec<String>,
    pub private: Vec<String>,
}

/// A mark the user gives one origin (or a scope wildcard): `auto` removes the mark and leaves the decision to
/// the source's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginMark {
    Public,
    Private,
    Auto,
}

impl OriginsConfig {
    /// Sets the mark of `origin`, replacing any mark it had.
    pub fn mark(&mut self, origin: &str, mark: OriginMark) {
        self.public.retain(|o| o != origin);
        self.private.retain(|o| o != origin);
        match mark {
            OriginMark::Public => self.public.push(origin.to_owned()),
            OriginMark::Private => self.private.push(origin.to_owned()),
            OriginMark::Auto => {}
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(both) = self.public.iter().find(|o| self.private.contains(o)) {
            return Err(format!("origin {both:?} is marked both public and private"));
        }
        for mark in &self.public {
            if let Some(Err(msg)) = pkgseed_sources::npm::scope_wildcard_registry(mark) {
                return Err(format!("origins.public: {msg}"));
            }
        }
        if let Some(mark) = self.private.iter().find(|m| m.contains('*')) {
            return Err(format!(
                "origins.private: {mark:?}: a scope wildcard (<registry>{}) only marks scopes public, and scopes \
                 nobody marked are never seeded already; mark one scope private as <registry>@scope/",
                pkgseed_sources::npm::SCOPE_WILDCARD
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EcosystemConfig {
    pub enabled: bool,
}

impl Default for EcosystemConfig {
    fn default() -> Self {
        EcosystemConfig { enabled: true }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            network: "public".into(),
            listen_addrs: Vec::new(),
            gateway_listen_addr: crate::gateway::DEFAULT_GATEWAY_LISTEN_ADDR.into(),
            cid_profile: pkgseed_unixfs::Profile::UnixfsV1_2025.name().into(),
            origins: OriginsConfig::default(),
            ecosystems: BTreeMap::new(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Config {
    pub fn file_path(config_dir: &Path) -> PathBuf {
        config_dir.join("config.toml")
    }

    /// Reads the config file; a missing file gives the defaults.
    pub fn load(config_dir: &Path) -> Result<Config, EngineError> {
        let path = Config::file_path(config_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => {
                return Err(EngineError::config(format!(
                    "cannot read {}: {err}",
                    path.display()
                )))
            }
        };
        Config::parse(&text)
            .map_err(|msg| EngineError::config(format!("{}: {msg}", path.display())))
    }

    /// Parses and validates config text. Public so the parser can be fuzzed.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|err| err.to_string())?;
        if config.version == 0 {
            // Files written before the version key existed have the same shape as version 1.
            config.version = CONFIG_VERSION;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.version > CONFIG_VERSION {
            return Err(format!(
                "config version {} is newer than this pkgseed understands ({CONFIG_VERSION})",
                self.version
            ));
        }
        if !matches!(self.network.as_str(), "public" | "local") {
            return Err(format!(
                "network must be \"public\" or \"local\", not {:?}",
                self.network
            ));
        }
        if pkgseed_unixfs::Profile::parse(&self.cid_profile).is_none() {
            return Err(format!(
                "cid_profile must be \"unixfs-v1-2025\" or \"unixfs-v0-2015\", not {:?}",
                self.cid_profile
            ));
        }
        for addr in &self.listen_addrs {
            addr.parse::<pkgseed_node::Multiaddr>()
                .map_err(|err| format!("listen_addrs: {addr:?} is not a multiaddr: {err}"))?;
        }
        crate::gateway::parse_gateway_listen_addr(&self.gateway_listen_addr)?;
        if let Some(unknown) = self
            .ecosystems
            .keys()
            .find(|k| !pkgseed_sources::ECOSYSTEMS.contains(&k.as_str()))
        {
            return Err(format!(
                "ecosystems: unknown ecosystem {unknown:?} (known: {})",
                pkgseed_sources::ECOSYSTEMS.join(", ")
            ));
        }
        self.origins.validate()?;
        self.limits.validate()
    }

    /// Writes the file atomically (temp file, fsync, rename): readers see the old or the new config, never a torn one.
    pub fn save(&self, config_dir: &Path) -> Result<(), EngineError> {
        self.validate().map_err(EngineError::config)?;
        let text =
            toml::to_string_pretty(self).map_err(|err| EngineError::config(err.to_string()))?;
        crate::fs_util::write_atomically(&Config::file_path(config_dir), text.as_bytes())
            .map_err(|err| EngineError::config(format!("cannot write config: {err}")))
    }

    pub fn ecosystem_enabled(&self, ecosystem: &str) -> bool {
        self.ecosystems.get(ecosystem).is_none_or(|e| e.enabled)
    }

    pub fn profile(&self) -> pkgseed_unixfs::Profile {
        pkgseed_unixfs::Profile::parse(&self.cid_profile)
            .unwrap_or(pkgseed_unixfs::Profile::UnixfsV1_2025)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_tolerated_and_missing_keys_default() {
        let config = Config::parse("future_key = 3\n[origins]\npublic = [\"a-1\"]\n").unwrap();
        assert_eq!(config.origins.public, vec!["a-1".to_string()]);
        assert_eq!(config.network, "public");
    }

    #[test]
    fn invalid_values_are_refused_with_the_key_named() {
        assert!(Config::parse("network = \"mars\"")
            .unwrap_err()
            .contains("network"));
        assert!(Config::parse("cid_profile = \"x\"")
            .unwrap_err()
            .contains("cid_profile"));
        assert!(Config::parse("listen_addrs = [\"nope\"]")
            .unwrap_err()
            .contains("listen_addrs"));
        let both = "[origins]\npublic = [\"o\"]\nprivate = [\"o\"]";
        assert!(Config::parse(both).unwrap_err().contains("both"));
        assert!(Config::parse("version = 99").unwrap_err().contains("newer"));
        assert!(Config::parse("gateway_listen_addr = \"0.0.0.0:7780\"")
            .unwrap_err()
            .contains("gateway_listen_addr"));
        assert_eq!(
            Config::parse("gateway_listen_addr = \"\"")
                .unwrap()
                .gateway_listen_addr,
            ""
        );
    }

    #[test]
    fn scope_wildcards_are_validated_and_marks_replace_each_other() {
        let config =
            Config::parse("[origins]\npublic = [\"http://127.0.0.1:4873/npm/@*\"]\n").unwrap();
        assert_eq!(config.origins.public, ["http://127.0.0.1:4873/npm/@*"]);
        for (text, key) in [
            (
                "[origins]\npublic = [\"http://127.0.0.1:4873/*\"]",
                "origins.public",
            ),
            ("[origins]\npublic = [\"*\"]", "origins.public"),
            ("[origins]\npublic = [\"not a url@*\"]", "origins.public"),
            (
                "[origins]\nprivate = [\"http://127.0.0.1:4873/@*\"]",
                "origins.private",
            ),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key) && err.contains("@*"), "{text}: {err}");
        }
        let mut origins = OriginsConfig::default();
        origins.mark("http://127.0.0.1:4873/@*", OriginMark::Public);
        origins.mark("http://127.0.0.1:4873/@corp/", OriginMark::Public);
        origins.mark("http://127.0.0.1:4873/@corp/", OriginMark::Private);
        assert_eq!(origins.public, ["http://127.0.0.1:4873/@*"]);
        assert_eq!(origins.private, ["http://127.0.0.1:4873/@corp/"]);
        origins.mark("http://127.0.0.1:4873/@*", OriginMark::Auto);
        assert!(origins.public.is_empty());
        assert!(origins.validate().is_ok());
        origins.mark("http://127.0.0.1:4873/@*", OriginMark::Private);
        assert!(origins.validate().is_err());
    }

    #[test]
    fn ecosystems_default_to_enabled_and_can_be_turned_off() {
        let config = Config::parse("[ecosystems.cargo]\nenabled = false\n").unwrap();
        assert!(!config.ecosystem_enabled("cargo"));
        assert!(Config::default().ecosystem_enabled("cargo"));
        assert!(Config::parse("[ecosystems.nosuch]\nenabled = true\n")
            .unwrap_err()
            .contains("nosuch"));
    }

    #[test]
    fn limits_default_to_unlimited_and_round_trip() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.limits.upload_bytes_per_sec, 0);
        assert_eq!(config.limits.disk_bytes, 0);
        let text = "[limits]\nupload_bytes_per_sec = 1048576\nmonthly_upload_bytes = 5\n\
                    [limits.alt_schedule]\nenabled = true\ndays = [\"sat\", \"sun\"]\n";
        let config = Config::parse(text).unwrap();
        assert_eq!(config.limits.upload_bytes_per_sec, 1_048_576);
        assert_eq!(config.limits.monthly_upload_bytes, 5);
        assert_eq!(
            config.limits.alt_schedule.days,
            vec!["sat".to_string(), "sun".to_string()]
        );
        // Keys not given keep their defaults.
        assert_eq!(config.limits.alt_schedule.start_minute_of_day, 9 * 60);
        let again = Config::parse(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn invalid_limits_are_refused_with_the_key_named() {
        let err = |text: &str| Config::parse(text).unwrap_err();
        assert!(err("[limits]\npause_on_battery_below_percent = 0")
            .contains("limits.pause_on_battery_below_percent"));
        assert!(err("[limits]\npause_on_battery_below_percent = 101")
            .contains("pause_on_battery_below_percent"));
        assert!(err("[limits.alt_schedule]\nstart_minute_of_day = 1440")
            .contains("limits.alt_schedule.start_minute"));
        assert!(
            err("[limits.alt_schedule]\nend_minute_of_day = 5000").contains("end_minute_of_day")
        );
        assert!(
            err("[limits.alt_schedule]\ndays = [\"monday\"]").contains("limits.alt_schedule.days")
        );
        assert!(err("[limits.alt_schedule]\ndays = [\"mon\", \"mon\"]").contains("twice"));
        assert!(
            err("[limits.alt_schedule]\nenabled = true\ndays = []").contains("at least one day")
        );
        let same = "[limits.alt_schedule]\nenabled = true\nstart_minute_of_day = 60\nend_minute_of_day = 60";
        assert!(err(same).contains("equal"));
        assert!(err("[limits]\nupload_bytes_per_sec = -1").contains("upload_bytes_per_sec"));
        // A schedule that is off may be incomplete: the user is still editing it.
        assert!(Config::parse("[limits.alt_schedule]\nenabled = false\ndays = []").is_ok());
    }

    #[test]
    fn save_then_load_gives_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.origins.private.push("x-0123456789abcdef".into());
        config.save(dir.path()).unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), config);
    }

    /// Two large configs (~100 KB each, so a torn write would show) a crash test alternates between.
    fn crash_test_configs() -> (Config, Config) {
        let mut a = Config::default();
        let mut b = Config {
            network: "local".into(),
            ..Config::default()
        };
        for i in 0..2000 {
            a.origins
                .public
                .push(format!("a-origin-{i:05}-0123456789abcdef0123456789"));
            b.origins
                .private
                .push(format!("b-origin-{i:05}-fedcba9876543210fedcba9876"));
        }
        (a, b)
    }

    /// Child mode of `config_survives_kill_9_during_writes`: saves the two configs in turn until killed.
    #[test]
    fn crash_writer_child() {
        let Some(dir) = std::env::var_os("PKGSEED_CONFIG_CRASH_DIR") else {
            return;
        };
        let (a, b) = crash_test_configs();
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("child-ready"), b"").unwrap();
        for i in 0u64.. {
            if i % 2 == 0 {
                a.save(&dir).unwrap()
            } else {
                b.save(&dir).unwrap()
            }
        }
    }

    /// kill -9 a process in the middle of config writes (the child re-runs this test binary in
    /// `crash_writer_child` mode), N times: the file always loads as the old or the new config, never torn. 3 kills by
    /// default, 20 with `PKGSEED_LONG_TESTS=1`.
    #[cfg(unix)]
    #[test]
    fn config_survives_kill_9_during_writes() {
        let long =
            std::env::var_os("PKGSEED_LONG_TESTS").is_some_and(|v| v != "0" && !v.is_empty());
        let kills = if long { 20 } else { 3 };
        let (a, b) = crash_test_configs();
        let exe = std::env::current_exe().unwrap();
        let mut seen_a = 0;
        let mut seen_b = 0;
        for round in 0..kills {
            let dir = tempfile::tempdir().unwrap();
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "config::tests::crash_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PKGSEED_CONFIG_CRASH_DIR", dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !dir.path().join("child-ready").exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the writer child never started"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // A different moment in the write cycle each round (a save of ~100 KB with fsync takes a few ms).
            std::thread::sleep(std::time::Duration::from_micros(
                20_000 + 7_919 * round as u64,
            ));
            child.kill().unwrap();
            child.wait().unwrap();
            match Config::load(dir.path()) {
                Ok(loaded) if loaded == a => seen_a += 1,
                Ok(loaded) if loaded == b => seen_b += 1,
                Ok(loaded) if loaded == Config::default() => {} // killed before the first rename
                Ok(_) => {
                    panic!("round {round}: the config loaded as neither the old nor the new one")
                }
                Err(err) => panic!("round {round}: torn config after kill -9: {err}"),
            }
        }
        eprintln!("config kill -9: {kills} kills, {seen_a} left config A, {seen_b} left config B");
    }
}
