//! The local control socket: the CLI (and anything else the user runs) talks to a running engine through a Unix
//! socket in the data dir, mode 0600 inside a 0700 dir, so only the same user can use it. There is no TCP control
//! API. One JSON request per line, one JSON response per line.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::{CODE_NOT_RUNNING, CODE_PROTOCOL};
use crate::{Engine, EngineError};

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    Ls,
    Pause,
    Resume,
    Scan,
    /// The settings in force (what the engine applied, not just what the file says).
    Config,
    /// Shows the limits (no fields given) or changes the given ones, live, through `Engine::update_config`. Replies
    /// with the limits config after the change.
    Limits(LimitsUpdate),
    /// Marks one origin, or every scope of an npm registry (`<registry>@*`), public or private, or removes its mark
    /// (`auto`); saved to the config and applied live. Replies with the origins config after the change.
    MarkOrigin {
        origin: String,
        mark: crate::OriginMark,
    },
}

/// Fields of `limits` to change; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsUpdate {
    pub upload_bytes_per_sec: Option<u64>,
    pub download_bytes_per_sec: Option<u64>,
    pub alt_upload_bytes_per_sec: Option<u64>,
    pub alt_download_bytes_per_sec: Option<u64>,
    pub monthly_upload_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub pause_on_battery: Option<bool>,
    pub pause_on_battery_below_percent: Option<u8>,
    pub pause_on_metered: Option<bool>,
    pub keep_evicted_artifacts: Option<bool>,
    pub alt_schedule: Option<crate::AltSchedule>,
}

impl LimitsUpdate {
    pub fn is_empty(&self) -> bool {
        *self == LimitsUpdate::default()
    }

    pub fn apply_to(&self, limits: &mut crate::LimitsConfig) {
        macro_rules! set {
            ($($field:ident),*) => {$( if let Some(v) = &self.$field { limits.$field = v.clone(); } )*};
        }
        set!(
            upload_bytes_per_sec,
            download_bytes_per_sec,
            alt_upload_bytes_per_sec,
            alt_download_bytes_per_sec,
            monthly_upload_bytes,
            disk_bytes,
            pause_on_battery,
            pause_on_battery_below_percent,
            pause_on_metered,
            keep_evicted_artifacts,
            alt_schedule
        );
    }
}

/// A response line: `{"ok": ...}` or `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlResponse {
    Ok(serde_json::Value),
    Error(EngineError),
}

/// The longest request line accepted; requests are tiny.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[cfg(unix)]
/// Serves the control socket until the task is dropped. Refuses to start if another engine answers on it.
pub async fn serve(
    engine: Engine,
    socket_path: &Path,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    use tokio::net::{UnixListener, UnixStream};

    if UnixStream::connect(socket_path).await.is_ok() {
        return Err(EngineError::new(
            crate::error::CODE_IO,
            format!(
                "another pkgseed is already running (socket {})",
                socket_path.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(socket_path);
    // Bind under a restrictive umask so the socket is never briefly open to others.
    let old_umask = set_umask(0o177);
    let bound = UnixListener::bind(socket_path);
    set_umask(old_umask);
    let listener = bound
        .map_err(|err| EngineError::io(format!("cannot bind {}: {err}", socket_path.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600)).map_err(
            |err| EngineError::io(format!("cannot restrict {}: {err}", socket_path.display())),
        )?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read.take(MAX_REQUEST_BYTES as u64)).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response = match serde_json::from_str::<ControlRequest>(&line) {
                        Ok(request) => handle(&engine, request).await,
                        Err(err) => {
                            ControlResponse::Error(EngineError::new(CODE_PROTOCOL, err.to_string()))
                        }
                    };
                    let mut text = serde_json::to_string(&response).unwrap_or_default();
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}

#[cfg(unix)]
fn set_umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(mask) }
}

async fn handle(engine: &Engine, request: ControlRequest) -> ControlResponse {
    let result: Result<serde_json::Value, EngineError> = match request {
        ControlRequest::Status => {
            Ok(serde_json::to_value(engine.status().await).unwrap_or_default())
        }
        ControlRequest::Ls => engine
            .artifacts()
            .map(|list| serde_json::to_value(list).unwrap_or_default()),
        ControlRequest::Pause => engine
            .set_paused(true)
            .map(|_| serde_json::json!({"paused": true})),
        ControlRequest::Resume => engine
            .set_paused(false)
            .map(|_| serde_json::json!({"paused": false})),
        ControlRequest::Config => Ok(serde_json::to_value(engine.config()).unwrap_or_default()),
        ControlRequest::Limits(update) => {
            let mut config = engine.config();
            update.apply_to(&mut config.limits);
            let applied = if update.is_empty() {
                Ok(())
            } else {
                engine.update_config(config)
            };
            applied.map(|_| serde_json::to_value(engine.config().limits).unwrap_or_default())
        }
        ControlRequest::MarkOrigin { origin, mark } => {
            let mut config = engine.config();
            config.origins.mark(&origin, mark);
            engine
                .update_config(config)
                .map(|_| serde_json::to_value(engine.config().origins).unwrap_or_default())
        }
        ControlRequest::Scan => {
            engine.rescan();
            Ok(serde_json::json!({"scan": "queued"}))
        }
    };
    match result {
        Ok(value) => ControlResponse::Ok(value),
        Err(err) => ControlResponse::Error(err),
    }
}

#[cfg(unix)]
/// Sends one request to the engine listening on `socket_path`.
pub async fn request(
    socket_path: &Path,
    request: &ControlRequest,
) -> Result<serde_json::Value, EngineError> {
    let stream = tokio::net::UnixStream::connect(socket_path)
        .await
        .map_err(|err| {
            EngineError::new(
                CODE_NOT_RUNNING,
                format!(
                    "no pkgseed daemon answers on {} ({err}); start one with `pkgseed daemon`",
                    socket_path.display()
                ),
            )
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)
        .map_err(|err| EngineError::new(CODE_PROTOCOL, err.to_string()))?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|err| EngineError::io(err.to_string()))?;
    let mut lines = BufReader::new(read).lines();
    let reply = lines
        .next_line()
        .await
        .map_err(|err| EngineError::io(err.to_string()))?
        .ok_or_else(|| EngineError::new(CODE_PROTOCOL, "the daemon closed the connection"))?;
    match serde_json::from_str::<ControlResponse>(&reply) {
        Ok(ControlResponse::Ok(value)) => Ok(value),
        Ok(ControlResponse::Error(err)) => Err(err),
        Err(err) => Err(EngineError::new(CODE_PROTOCOL, format!("bad reply: {err}"))),
    }
}

#[cfg(not(unix))]
pub async fn serve(
    _engine: Engine,
    _socket_path: &Path,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    Err(EngineError::new(
        CODE_NOT_RUNNING,
        "the control socket is not implemented on this OS yet",
    ))
}

#[cfg(not(unix))]
pub async fn request(
    _socket_path: &Path,
    _request: &ControlRequest,
) -> Result<serde_json::Value, EngineError> {
    Err(EngineError::new(
        CODE_NOT_RUNNING,
        "the control socket is not implemented on this OS yet",
    ))
}
