//! The tray icon and its menu. The icon shows the state (seeding, paused, indexing, error); the menu has a status
//! line, Pause seeding, Open dashboard, Start on login and Quit. A task refreshes both once a second, and at once
//! after a change made from the menu or the dashboard, so the two never disagree for long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pkgseed_engine::Status;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};
use tokio::sync::Notify;

use crate::EngineSlot;

const TRAY_ID: &str = "pkgseed";
/// How often the tray re-reads the engine: often enough for a live upload rate, cheap enough to leave running.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrayState {
    Seeding,
    Paused,
    Indexing,
    Error,
}

impl TrayState {
    fn of(status: &Status) -> TrayState {
        if status.paused {
            TrayState::Paused
        } else if !status.first_scan_done {
            TrayState::Indexing
        } else {
            TrayState::Seeding
        }
    }

    fn icon(self) -> Image<'static> {
        let bytes: &[u8] = match self {
            TrayState::Seeding => include_bytes!("../../icons/tray-seeding.png"),
            TrayState::Paused => include_bytes!("../../icons/tray-paused.png"),
            TrayState::Indexing => include_bytes!("../../icons/tray-indexing.png"),
            TrayState::Error => include_bytes!("../../icons/tray-error.png"),
        };
        Image::from_bytes(bytes).expect("the tray icons are valid PNGs")
    }
}

/// The menu items the refresh task updates, and the bell that wakes it.
struct TrayItems {
    status: MenuItem<Wry>,
    pause: CheckMenuItem<Wry>,
    autostart: CheckMenuItem<Wry>,
    wake: Arc<Notify>,
}

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Starting…", false, None::<&str>)?;
    let pause = CheckMenuItem::with_id(app, "pause", "Pause seeding", true, false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open dashboard", true, None::<&str>)?;
    let autostart = CheckMenuItem::with_id(
        app,
        "autostart",
        "Start on login",
        true,
        false,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &status, &separator, &pause, &open, &autostart, &separator, &quit,
        ],
    )?;

    let engine_ok = app.state::<EngineSlot>().engine().is_ok();
    let first = if engine_ok {
        TrayState::Indexing
    } else {
        TrayState::Error
    };
    // The icon PNG the tray writes for the panel goes in our own cache dir, not a shared /tmp/tray-icon.
    let icon_dir = app.path().app_cache_dir()?.join("tray");
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(first.icon())
        .temp_dir_path(icon_dir)
        .tooltip("pkgseed")
        .menu(&menu)
        .on_menu_event(on_menu_event)
        .build(app)?;

    let wake = Arc::new(Notify::new());
    app.manage(TrayItems {
        status,
        pause,
        autostart,
        wake: wake.clone(),
    });
    tauri::async_runtime::spawn(refresh_loop(app.clone(), wake, first));
    Ok(())
}

/// Wakes the refresh task now (after a change from the dashboard).
pub fn refresh_soon(app: &AppHandle) {
    if let Some(items) = app.try_state::<TrayItems>() {
        items.wake.notify_one();
    }
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    match event.id().as_ref() {
        "pause" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Ok(engine) = app.state::<EngineSlot>().engine() {
                    let paused = engine.status().await.paused;
                    if let Err(err) = engine.set_paused(!paused) {
                        tracing::error!("cannot change the pause state: {err}");
                    }
                }
                refresh_soon(&app);
            });
        }
        "open" => crate::open_dashboard(app),
        "autostart" => {
            let enabled = crate::autostart::is_enabled(app).unwrap_or(false);
            if let Err(err) = crate::autostart::set_enabled(app, !enabled) {
                tracing::error!("{err}");
            }
            refresh_soon(app);
        }
        "quit" => app.exit(0),
        _ => {}
    }
}

async fn refresh_loop(app: AppHandle, wake: Arc<Notify>, mut shown: TrayState) {
    let mut last: Option<(Instant, u64)> = None;
    let mut upload_bytes_per_sec = 0.0;
    loop {
        let (state, text) = match app.state::<EngineSlot>().engine() {
            Ok(engine) => {
                let status = engine.status().await;
                let now = Instant::now();
                if let Some((then, bytes)) = last {
                    let secs = now.duration_since(then).as_secs_f64();
                    if secs > 0.2 {
                        upload_bytes_per_sec =
                            status.bytes_served.saturating_sub(bytes) as f64 / secs;
                        last = Some((now, status.bytes_served));
                    }
                } else {
                    last = Some((now, status.bytes_served));
                }
                (
                    TrayState::of(&status),
                    status_line(&status, upload_bytes_per_sec),
                )
            }
            Err(err) => (TrayState::Error, format!("Error: {}", err.message)),
        };
        if let Some(tray) = app.tray_by_id(TRAY_ID) {
            if state != shown && tray.set_icon(Some(state.icon())).is_ok() {
                shown = state;
            }
            let _ = tray.set_tooltip(Some(&text));
        }
        let items = app.state::<TrayItems>();
        let _ = items.status.set_text(&text);
        let _ = items.pause.set_checked(state == TrayState::Paused);
        let _ = items
            .autostart
            .set_checked(crate::autostart::is_enabled(&app).unwrap_or(false));
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            _ = wake.notified() => {}
        }
    }
}

/// "Seeding 12,345 packages · ↑ 1.2 MB/s", "Paused · 12,345 packages", "Indexing 120 of 4,000 files".
fn status_line(status: &Status, upload_bytes_per_sec: f64) -> String {
    let packages: u64 = status.ecosystems.values().map(|c| c.artifacts).sum();
    match TrayState::of(status) {
        TrayState::Paused => format!("Paused · {} packages", thousands(packages)),
        TrayState::Indexing => format!(
            "Indexing {} of {} files",
            thousands(status.scan.files_done),
            thousands(status.scan.files_total)
        ),
        _ => format!(
            "Seeding {} packages · ↑ {}",
            thousands(packages),
            rate(upload_bytes_per_sec)
        ),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 4] = ["B/s", "kB/s", "MB/s", "GB/s"];
    let mut value = bytes_per_sec;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn rates_use_decimal_units() {
        assert_eq!(rate(0.0), "0 B/s");
        assert_eq!(rate(1_200_000.0), "1.2 MB/s");
        assert_eq!(rate(999.0), "999 B/s");
    }
}
