//! Start on login, through tauri-plugin-autostart. On Linux the plugin (auto-launch 0.6) writes the login item's
//! `Exec=` line unquoted, so an install path with a space breaks it; we rewrite that line quoted as the Desktop Entry
//! spec asks, after every enable and once at start (repairing a file an older build wrote).

use pkgseed_engine::EngineError;
use tauri::{AppHandle, Runtime};
use tauri_plugin_autostart::ManagerExt;

/// The error code for a login item the OS refused.
const CODE_AUTOSTART: &str = "autostart";

fn error(err: impl std::fmt::Display) -> EngineError {
    EngineError::new(CODE_AUTOSTART, format!("start on login: {err}"))
}

pub fn is_enabled<R: Runtime>(app: &AppHandle<R>) -> Result<bool, EngineError> {
    app.autolaunch().is_enabled().map_err(error)
}

pub fn set_enabled<R: Runtime>(app: &AppHandle<R>, enabled: bool) -> Result<(), EngineError> {
    if enabled {
        app.autolaunch().enable().map_err(error)?;
        repair(app);
    } else {
        app.autolaunch().disable().map_err(error)?;
    }
    Ok(())
}

/// Quotes the login item's `Exec=` line, if there is a login item.
pub fn repair<R: Runtime>(app: &AppHandle<R>) {
    #[cfg(target_os = "linux")]
    if let Err(err) = linux::quote_exec_line(app) {
        tracing::warn!("cannot repair the login item: {err}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = app;
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::PathBuf;

    use tauri::{AppHandle, Runtime};

    /// Where auto-launch writes the file: `$HOME/.config/autostart/<app name>.desktop`.
    fn desktop_file<R: Runtime>(app: &AppHandle<R>) -> Option<PathBuf> {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(
            PathBuf::from(home)
                .join(".config/autostart")
                .join(format!("{}.desktop", app.package_info().name)),
        )
    }

    pub fn quote_exec_line<R: Runtime>(app: &AppHandle<R>) -> std::io::Result<()> {
        let Some(path) = desktop_file(app) else {
            return Ok(());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        // The same program the plugin registered: the AppImage when running from one, else this executable.
        let program = match std::env::var_os("APPIMAGE") {
            Some(appimage) => PathBuf::from(appimage),
            None => std::env::current_exe()?,
        };
        let exec = format!(
            "Exec={} {}",
            super::quote_exec_arg(&program.to_string_lossy()),
            crate::MINIMIZED_ARG
        );
        let fixed = super::replace_exec_line(&text, &exec);
        if fixed != text {
            std::fs::write(&path, fixed)?;
        }
        Ok(())
    }
}

/// Replaces the `Exec=` line of a desktop entry (appending one if it has none).
fn replace_exec_line(text: &str, exec: &str) -> String {
    let mut found = false;
    let mut lines: Vec<&str> = text
        .lines()
        .map(|line| {
            if line.starts_with("Exec=") {
                found = true;
                exec
            } else {
                line
            }
        })
        .collect();
    if !found {
        lines.push(exec);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Quotes one argument of an `Exec=` line: inside double quotes, `"`, `` ` ``, `$` and `\` take a backslash; then
/// the value itself is a desktop-entry string, where every `\` is written `\\`; `%` (field codes) is written `%%`.
fn quote_exec_arg(arg: &str) -> String {
    let mut quoted = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' | '`' | '$' => {
                quoted.push_str("\\\\");
                quoted.push(c);
            }
            '\\' => quoted.push_str("\\\\\\\\"),
            '%' => quoted.push_str("%%"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_spaces_is_quoted() {
        assert_eq!(
            quote_exec_arg("/opt/my apps/pkgseed"),
            "\"/opt/my apps/pkgseed\""
        );
    }

    #[test]
    fn reserved_characters_are_escaped_twice() {
        // `$` → `\$` (Exec quoting) → `\\$` (desktop-entry string escaping).
        assert_eq!(quote_exec_arg("/a$b"), "\"/a\\\\$b\"");
        assert_eq!(quote_exec_arg("/a\\b"), "\"/a\\\\\\\\b\"");
        assert_eq!(quote_exec_arg("/100%"), "\"/100%%\"");
    }

    #[test]
    fn the_exec_line_is_replaced_and_others_kept() {
        let text = "[Desktop Entry]\nType=Application\nExec=/opt/my apps/pkgseed --minimized\nTerminal=false";
        let fixed = replace_exec_line(text, "Exec=\"/opt/my apps/pkgseed\" --minimized");
        assert_eq!(
            fixed,
            "[Desktop Entry]\nType=Application\nExec=\"/opt/my apps/pkgseed\" --minimized\nTerminal=false\n"
        );
    }
}
