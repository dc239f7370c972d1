//! The pkgseed engine: UI-independent. It finds artifacts in package caches, keeps only public ones, indexes them
//! without copying (one read per file), and serves and announces them through the embedded node. Shells (the
//! `pkgseed` CLI, the desktop app) drive it through [`Engine`] and its event stream, or through the control socket.

mod config;
pub mod control;
mod dirs;
mod engine;
pub mod error;
mod fs_util;
mod indexer;
mod status;
mod store;
mod watcher;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{Config, EcosystemConfig, EcosystemsConfig, OriginsConfig, CONFIG_VERSION};
pub use dirs::EngineDirs;
pub use engine::{Engine, EngineOptions};
pub use error::EngineError;
pub use status::{ArtifactView, EcosystemCounts, EngineEvent, OriginStatus, ScanProgress, Status};

use pkgseed_sources::{CacheSource, CargoSource, OriginMarks};

/// The enabled cache sources, with the user's origin marks applied.
fn sources_from_config(config: &Config, cargo_home: Option<PathBuf>) -> Vec<Arc<dyn CacheSource>> {
    let marks = OriginMarks { public: config.origins.public.clone(), private: config.origins.private.clone() };
    let mut sources: Vec<Arc<dyn CacheSource>> = Vec::new();
    if config.ecosystems.cargo.enabled {
        if let Some(home) = cargo_home.or_else(pkgseed_sources::default_cargo_home) {
            sources.push(Arc::new(CargoSource::new(home, marks)));
        }
    }
    sources
}
