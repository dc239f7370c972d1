//! Where pkgseed keeps its config and data: the platform's dirs from `directories`, overridable with
//! `PKGSEED_CONFIG_DIR` and `PKGSEED_DATA_DIR` (tests, portable installs).

use std::path::PathBuf;

use crate::EngineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDirs {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl EngineDirs {
    /// The dirs from the environment overrides, else the platform defaults.
    pub fn from_env() -> Result<EngineDirs, EngineError> {
        let project = directories::ProjectDirs::from("", "", "pkgseed");
        let pick = |var: &str, default: Option<PathBuf>| -> Result<PathBuf, EngineError> {
            match std::env::var_os(var) {
                Some(value) if !value.is_empty() => Ok(PathBuf::from(value)),
                _ => default.ok_or_else(|| {
                    EngineError::config(format!("no home directory found; set {var}"))
                }),
            }
        };
        Ok(EngineDirs {
            config_dir: pick(
                "PKGSEED_CONFIG_DIR",
                project.as_ref().map(|p| p.config_dir().to_path_buf()),
            )?,
            data_dir: pick(
                "PKGSEED_DATA_DIR",
                project.as_ref().map(|p| p.data_dir().to_path_buf()),
            )?,
        })
    }

    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.redb")
    }

    /// The control socket the CLI talks to; only the user can open it (0600 in a 0700 dir).
    pub fn control_socket_path(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}
