//! Small filesystem helpers: atomic writes, small JSON state files and private directories.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temp file in the same dir, fsync and rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a small JSON state file; a missing one gives the default, an unreadable one too, with a warning naming `what`.
pub(crate) fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    what: &str,
) -> T {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            tracing::warn!(path = %path.display(), %err, "unreadable {what}; starting from zero");
            T::default()
        }),
        Err(_) => T::default(),
    }
}

/// Writes a small JSON state file atomically.
pub(crate) fn write_json_atomically<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> std::io::Result<()> {
    let text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomically(path, &text)
}

/// Creates `dir` (and parents) readable by the user only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
