fn main() {
    // Only our own commands get permissions (`allow-<command>`); the capability grants exactly those.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "get_status",
            "get_config",
            "save_config",
            "set_paused",
            "get_autostart",
            "set_autostart",
            "list_ecosystems",
            "rescan",
        ]),
    ))
    .expect("tauri build script failed");
}
