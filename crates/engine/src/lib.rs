//! The pkgseed engine: UI-independent. It finds artifacts in package caches, keeps only public ones, indexes them
//! without copying (one read per file), and serves and announces them through the embedded node. Shells (the
//! `pkgseed` CLI, the desktop app) drive it through [`Engine`] and its event stream, or through the control socket.

mod artifact_store;
mod config;
pub mod control;
mod dirs;
mod engine;
pub mod error;
mod found;
mod fs_util;
mod gateway;
mod indexer;
pub mod limits;
pub mod power;
mod priority;
mod status;
mod store;
pub mod traffic;
mod watcher;
mod write_batch;

use std::sync::Arc;

pub use config::{
    AltSchedule, Config, EcosystemConfig, LimitsConfig, OriginMark, OriginsConfig, CONFIG_VERSION,
    WEEKDAYS,
};
pub use dirs::EngineDirs;
pub use engine::{Engine, EngineOptions};
pub use error::EngineError;
pub use gateway::{parse_gateway_listen_addr, DEFAULT_GATEWAY_LISTEN_ADDR};
pub use status::{
    ArtifactView, CacheStatus, EcosystemCounts, EngineEvent, GatewayStatus, LimitsStatus,
    OriginStatus, ScanProgress, ServedArtifact, Status,
};
/// Artifacts per index transaction in a scan (the bench writes its index rows the same way).
pub use write_batch::BATCH_MAX_ARTIFACTS as INDEX_BATCH_MAX_ARTIFACTS;

use pkgseed_sources::{CacheSource, OriginMarks, SourceEnv};

/// The enabled cache sources, with the user's origin marks applied.
fn sources_from_config(config: &Config, env: &SourceEnv) -> Vec<Arc<dyn CacheSource>> {
    let marks = OriginMarks {
        public: config.origins.public.clone(),
        private: config.origins.private.clone(),
    };
    pkgseed_sources::detect_sources(env, &marks, &|ecosystem| {
        config.ecosystem_enabled(ecosystem)
    })
}
