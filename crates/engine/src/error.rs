//! The engine's error type: a stable machine-readable `code` plus a human message, so shells (CLI, dashboard)
//! never match on message text.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct EngineError {
    /// One of the `CODE_*` constants.
    pub code: String,
    pub message: String,
}

pub const CODE_CONFIG: &str = "config";
pub const CODE_INDEX: &str = "index";
pub const CODE_NODE: &str = "node";
pub const CODE_IO: &str = "io";
pub const CODE_STOPPED: &str = "stopped";
pub const CODE_NOT_RUNNING: &str = "not_running";
pub const CODE_PROTOCOL: &str = "protocol";

impl EngineError {
    pub fn new(code: &str, message: impl Into<String>) -> EngineError {
        EngineError {
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn config(message: impl Into<String>) -> EngineError {
        EngineError::new(CODE_CONFIG, message)
    }
    pub fn io(message: impl Into<String>) -> EngineError {
        EngineError::new(CODE_IO, message)
    }
}

impl From<pkgseed_index::IndexError> for EngineError {
    fn from(err: pkgseed_index::IndexError) -> Self {
        EngineError::new(CODE_INDEX, err.to_string())
    }
}

impl From<pkgseed_node::NodeError> for EngineError {
    fn from(err: pkgseed_node::NodeError) -> Self {
        EngineError::new(CODE_NODE, err.to_string())
    }
}
