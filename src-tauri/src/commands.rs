//! The commands the dashboard may call (and nothing else: see `capabilities/dashboard.json`). Each forwards to the
//! engine or the autostart plugin; errors reach the page as the engine's `{code, message}`.

use pkgseed_engine::{Config, EngineError, Status};
use tauri::{AppHandle, State};

use crate::EngineSlot;

#[tauri::command]
pub async fn get_status(slot: State<'_, EngineSlot>) -> Result<Status, EngineError> {
    Ok(slot.engine()?.status().await)
}

#[tauri::command]
pub fn get_config(slot: State<'_, EngineSlot>) -> Result<Config, EngineError> {
    Ok(slot.engine()?.config())
}

/// Validates, saves and applies the settings; returns what is now in force.
#[tauri::command]
pub fn save_config(slot: State<'_, EngineSlot>, config: Config) -> Result<Config, EngineError> {
    let engine = slot.engine()?;
    engine.update_config(config)?;
    Ok(engine.config())
}

#[tauri::command]
pub fn set_paused(
    app: AppHandle,
    slot: State<'_, EngineSlot>,
    paused: bool,
) -> Result<(), EngineError> {
    slot.engine()?.set_paused(paused)?;
    crate::tray::refresh_soon(&app);
    Ok(())
}

#[tauri::command]
pub fn get_autostart(app: AppHandle) -> Result<bool, EngineError> {
    crate::autostart::is_enabled(&app)
}

#[tauri::command]
pub fn set_autostart(app: AppHandle, enabled: bool) -> Result<bool, EngineError> {
    crate::autostart::set_enabled(&app, enabled)?;
    crate::tray::refresh_soon(&app);
    Ok(enabled)
}

#[tauri::command]
pub fn list_ecosystems() -> Vec<&'static str> {
    pkgseed_sources::ECOSYSTEMS.to_vec()
}

#[tauri::command]
pub fn rescan(slot: State<'_, EngineSlot>) -> Result<(), EngineError> {
    slot.engine()?.rescan();
    Ok(())
}
