//! The node's Ed25519 identity: kept in the OS keyring, or in a 0600 file when no keyring operation succeeds.
//!
//! The secret is the protobuf encoding of the libp2p keypair, base64 (standard alphabet). It is never logged.
//! `PKGSEED_KEYRING=off` skips the keyring entirely (headless CI without a session bus).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use rust_ipfs::Keypair;

use crate::{IdentityStorage, NodeError};

const SERVICE: &str = "pkgseed";
const USER: &str = "node-identity";
/// The name of the fallback file inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";
/// Environment switch: `PKGSEED_KEYRING=off` forces the file fallback.
pub const KEYRING_ENV: &str = "PKGSEED_KEYRING";
/// A keyring that prompts (a locked collection) must not hang start-up.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

fn encode(keypair: &Keypair) -> Result<String, NodeError> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| NodeError::Identity(format!("cannot encode keypair: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn decode(text: &str) -> Result<Keypair, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "stored identity is not valid base64".to_string())?;
    let keypair = Keypair::from_protobuf_encoding(&bytes)
        .map_err(|_| "stored identity is not a valid keypair encoding".to_string())?;
    if keypair.key_type() != connexa::prelude::identity::KeyType::Ed25519 {
        return Err("stored identity is not an Ed25519 key".into());
    }
    Ok(keypair)
}

fn keyring_disabled() -> bool {
    std::env::var(KEYRING_ENV)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "off" | "0" | "false" | "no"
            )
        })
        .unwrap_or(false)
}

/// Outcome of the keyring attempt.
enum KeyringOutcome {
    Loaded(Box<Keypair>),
    Failed(String),
}

/// Every keyring step (open, read, write, read back) counts: a locked collection accepts the entry and fails on
/// the first write, so success means "the key was read back from the keyring".
fn keyring_load_or_store(file_key: Option<Keypair>) -> KeyringOutcome {
    let entry = match keyring::Entry::new(SERVICE, USER) {
        Ok(e) => e,
        Err(e) => return KeyringOutcome::Failed(format!("keyring unavailable: {e}")),
    };
    match entry.get_password() {
        Ok(secret) => match decode(&secret) {
            Ok(kp) => KeyringOutcome::Loaded(Box::new(kp)),
            Err(why) => KeyringOutcome::Failed(format!("keyring entry unusable: {why}")),
        },
        Err(keyring::Error::NoEntry) => {
            // First use (or migrating an identity that lived in the fallback file).
            let keypair = file_key.unwrap_or_else(Keypair::generate_ed25519);
            let secret = match encode(&keypair) {
                Ok(s) => s,
                Err(e) => return KeyringOutcome::Failed(e.to_string()),
            };
            if let Err(e) = entry.set_password(&secret) {
                return KeyringOutcome::Failed(format!("keyring write failed: {e}"));
            }
            match entry.get_password() {
                Ok(back) if back == secret => KeyringOutcome::Loaded(Box::new(keypair)),
                Ok(_) => KeyringOutcome::Failed(
                    "keyring returned a different secret after writing".into(),
                ),
                Err(e) => KeyringOutcome::Failed(format!("keyring read-back failed: {e}")),
            }
        }
        Err(e) => KeyringOutcome::Failed(format!("keyring read failed: {e}")),
    }
}

pub(crate) async fn load_or_create(
    data_dir: &Path,
) -> Result<(Keypair, IdentityStorage), NodeError> {
    let path = data_dir.join(IDENTITY_FILE);
    if keyring_disabled() {
        let keypair = load_or_create_file(&path)?;
        let warning = format!(
            "{KEYRING_ENV}=off: the node identity is kept in {} (mode 0600) instead of the OS keyring",
            path.display()
        );
        tracing::warn!("{warning}");
        return Ok((keypair, IdentityStorage::File { path, warning }));
    }

    // An identity already in the fallback file is migrated into the keyring (same peer id) if the keyring works.
    let file_key = match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text).ok(),
        Err(_) => None,
    };
    let migrating = file_key.is_some();
    let attempt = tokio::task::spawn_blocking(move || keyring_load_or_store(file_key));
    let outcome = match tokio::time::timeout(KEYRING_TIMEOUT, attempt).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => KeyringOutcome::Failed(format!("keyring task failed: {e}")),
        Err(_) => {
            KeyringOutcome::Failed(format!("keyring did not answer within {KEYRING_TIMEOUT:?}"))
        }
    };
    match outcome {
        KeyringOutcome::Loaded(keypair) => {
            if migrating {
                // The keyring now holds the key (verified by reading it back): do not keep a second copy.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), "identity moved to the keyring; could not remove the file: {e}");
                }
            }
            Ok((*keypair, IdentityStorage::Keyring))
        }
        KeyringOutcome::Failed(why) => {
            let keypair = load_or_create_file(&path)?;
            let warning = format!(
                "{why}; the node identity is kept in {} (mode 0600) instead of the OS keyring",
                path.display()
            );
            tracing::warn!("{warning}");
            Ok((keypair, IdentityStorage::File { path, warning }))
        }
    }
}

/// Reads the identity file, or creates it atomically with mode 0600 (temp file + no-clobber link).
pub(crate) fn load_or_create_file(path: &Path) -> Result<Keypair, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            tighten_mode(path);
            return decode(&text)
                .map_err(|why| NodeError::Identity(format!("{}: {why}", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(NodeError::Identity(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::Identity(format!("cannot create {}: {e}", dir.display())))?;
    let keypair = Keypair::generate_ed25519();
    let secret = encode(&keypair)?;
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut file = open_private(&tmp)?;
        file.write_all(secret.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        // hard_link fails if the target exists: a concurrent creator wins and we read its key.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => std::fs::rename(&tmp, path),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map_err(|e| NodeError::Identity(format!("cannot write {}: {e}", path.display())))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::Identity(format!("cannot read {}: {e}", path.display())))?;
    decode(&text).map_err(|why| NodeError::Identity(format!("{}: {why}", path.display())))
}

fn temp_path(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(".{IDENTITY_FILE}.tmp-{}-{nanos}", std::process::id());
    path.with_file_name(name)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn tighten_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "identity file was readable by others; setting mode 0600");
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[cfg(not(unix))]
fn tighten_mode(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_encoding() {
        let kp = Keypair::generate_ed25519();
        let back = decode(&encode(&kp).unwrap()).unwrap();
        assert_eq!(kp.public().to_peer_id(), back.public().to_peer_id());
        assert!(decode("not base64!").is_err());
    }
}
