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
    /// The CID profile root CIDs are computed with: `unixfs-v1-2025` or `unixfs-v0-2015`.
    pub cid_profile: String,
    pub origins: OriginsConfig,
    /// Per ecosystem (`cargo`, `npm`, …); an ecosystem not listed is enabled.
    pub ecosystems: BTreeMap<String, EcosystemConfig>,
}

/// Origins the user marked. An origin id is what `pkgseed status` lists (for cargo, the index dir name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginsConfig {
    pub public: Vec<String>,
    pub private: Vec<String>,
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
            cid_profile: pkgseed_unixfs::Profile::UnixfsV1_2025.name().into(),
            origins: OriginsConfig::default(),
            ecosystems: BTreeMap::new(),
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
            Err(err) => return Err(EngineError::config(format!("cannot read {}: {err}", path.display()))),
        };
        Config::parse(&text).map_err(|msg| EngineError::config(format!("{}: {msg}", path.display())))
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
            return Err(format!("network must be \"public\" or \"local\", not {:?}", self.network));
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
        if let Some(unknown) = self.ecosystems.keys().find(|k| !pkgseed_sources::ECOSYSTEMS.contains(&k.as_str())) {
            return Err(format!(
                "ecosystems: unknown ecosystem {unknown:?} (known: {})",
                pkgseed_sources::ECOSYSTEMS.join(", ")
            ));
        }
        if let Some(both) = self.origins.public.iter().find(|o| self.origins.private.contains(o)) {
            return Err(format!("origin {both:?} is marked both public and private"));
        }
        Ok(())
    }

    /// Writes the file atomically (temp file, fsync, rename): readers see the old or the new config, never a torn one.
    pub fn save(&self, config_dir: &Path) -> Result<(), EngineError> {
        self.validate().map_err(EngineError::config)?;
        let text = toml::to_string_pretty(self).map_err(|err| EngineError::config(err.to_string()))?;
        crate::fs_util::write_atomically(&Config::file_path(config_dir), text.as_bytes())
            .map_err(|err| EngineError::config(format!("cannot write config: {err}")))
    }

    pub fn ecosystem_enabled(&self, ecosystem: &str) -> bool {
        self.ecosystems.get(ecosystem).is_none_or(|e| e.enabled)
    }

    pub fn profile(&self) -> pkgseed_unixfs::Profile {
        pkgseed_unixfs::Profile::parse(&self.cid_profile).unwrap_or(pkgseed_unixfs::Profile::UnixfsV1_2025)
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
        assert!(Config::parse("network = \"mars\"").unwrap_err().contains("network"));
        assert!(Config::parse("cid_profile = \"x\"").unwrap_err().contains("cid_profile"));
        assert!(Config::parse("listen_addrs = [\"nope\"]").unwrap_err().contains("listen_addrs"));
        let both = "[origins]\npublic = [\"o\"]\nprivate = [\"o\"]";
        assert!(Config::parse(both).unwrap_err().contains("both"));
        assert!(Config::parse("version = 99").unwrap_err().contains("newer"));
    }

    #[test]
    fn ecosystems_default_to_enabled_and_can_be_turned_off() {
        let config = Config::parse("[ecosystems.cargo]\nenabled = false\n").unwrap();
        assert!(!config.ecosystem_enabled("cargo"));
        assert!(Config::default().ecosystem_enabled("cargo"));
        assert!(Config::parse("[ecosystems.nosuch]\nenabled = true\n").unwrap_err().contains("nosuch"));
    }

    #[test]
    fn save_then_load_gives_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.origins.private.push("x-0123456789abcdef".into());
        config.save(dir.path()).unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), config);
    }
}
