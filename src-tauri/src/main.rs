//! The pkgseed desktop app: a thin shell over the in-process engine. It wires the engine, the control socket (so
//! the `pkgseed` CLI can drive the app as it drives the daemon), the tray, the dashboard window and the plugins
//! (single instance, start on login). Every command the dashboard may call lives in [`commands`].

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod autostart;
mod commands;
mod tray;

use pkgseed_engine::{control, Engine, EngineError, EngineOptions};
use tauri::{Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};

/// The argument the login item starts the app with: seed from the tray without opening the dashboard.
pub(crate) const MINIMIZED_ARG: &str = "--minimized";
/// The dashboard window's label; the capability in `capabilities/dashboard.json` names it.
pub(crate) const DASHBOARD: &str = "dashboard";

/// The engine, or why it could not start (the tray then shows the error state and the dashboard the message).
pub(crate) struct EngineSlot(pub Result<Engine, EngineError>);

impl EngineSlot {
    pub(crate) fn engine(&self) -> Result<&Engine, EngineError> {
        self.0.as_ref().map_err(Clone::clone)
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    skip_gtk_gl_probe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pkgseed=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let app = tauri::Builder::default()
        // First, so a second launch exits before starting anything: it focuses the first one's dashboard instead.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            open_dashboard(app)
        }))
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .args([MINIMIZED_ARG])
                .build(),
        )
        .invoke_handler(tauri::generate_handler![
            commands::get_status,
            commands::get_config,
            commands::save_config,
            commands::set_paused,
            commands::get_autostart,
            commands::set_autostart,
            commands::list_ecosystems,
            commands::rescan,
        ])
        .setup(|app| {
            let slot = tauri::async_runtime::block_on(start_engine());
            if let Err(err) = &slot {
                tracing::error!(code = %err.code, "the engine did not start: {}", err.message);
            }
            app.manage(EngineSlot(slot));
            autostart::repair(app.handle());
            tray::create(app.handle())?;
            if !std::env::args().any(|arg| arg == MINIMIZED_ARG) {
                open_dashboard(app.handle());
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .expect("cannot build the pkgseed app");

    app.run(|app, event| match event {
        // The last window closed: keep seeding from the tray. Only Quit (an explicit exit code) ends the app.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Ok(engine) = app.state::<EngineSlot>().engine() {
                tauri::async_runtime::block_on(engine.clone().shutdown());
            }
        }
        _ => {}
    });
}

/// GTK 3 probes the X display's GLX visuals when it opens the display (`gtk_init`), and that probe loads the whole
/// Mesa driver, LLVM included: about 50 MB resident in a tray app that never draws with GL (docs/benchmarks.md,
/// "Desktop memory"). `GDK_GL=disable` skips the probe; the dashboard still renders, with WebKit's hardware
/// acceleration off (a small page). Runs before any thread exists, as `set_var` requires; a `GDK_GL` the user set
/// (even empty) is kept.
#[cfg(target_os = "linux")]
fn skip_gtk_gl_probe() {
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
}

/// Starts the engine and serves the control socket for it.
async fn start_engine() -> Result<Engine, EngineError> {
    let engine = Engine::start(EngineOptions::from_env()?).await?;
    let socket = engine.dirs().control_socket_path();
    match control::serve(engine.clone(), &socket).await {
        Ok(_task) => Ok(engine),
        Err(err) => {
            engine.shutdown().await;
            Err(err)
        }
    }
}

/// Shows and focuses the dashboard, creating it if it was closed (closing destroys it to keep idle memory low).
pub(crate) fn open_dashboard<R: tauri::Runtime>(app: &tauri::AppHandle<R>) {
    if let Some(window) = app.get_webview_window(DASHBOARD) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let built = WebviewWindowBuilder::new(app, DASHBOARD, WebviewUrl::App("index.html".into()))
        .title("pkgseed")
        .inner_size(1000.0, 760.0)
        .min_inner_size(640.0, 480.0)
        .build();
    if let Err(err) = built {
        tracing::error!("cannot open the dashboard: {err}");
    }
}
