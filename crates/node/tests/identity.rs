//! Identity fallback: with `PKGSEED_KEYRING=off` the key lives in a 0600 file and the peer id is stable.
//! (Its own test binary: it sets an environment variable for the whole process.)

use pkgseed_node::{load_or_create_identity, IdentityStorage, IDENTITY_FILE, KEYRING_ENV};

#[tokio::test]
async fn file_fallback_is_private_and_stable() {
    std::env::set_var(KEYRING_ENV, "off");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data"); // does not exist yet

    let (first, storage) = load_or_create_identity(&data_dir)
        .await
        .expect("first load");
    let path = match storage {
        IdentityStorage::File { path, warning } => {
            assert!(!warning.is_empty());
            path
        }
        other => panic!("expected the file fallback, got {other:?}"),
    };
    assert_eq!(path, data_dir.join(IDENTITY_FILE));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "identity file mode is {mode:o}");
    }
    // No temp files left behind.
    let names: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(IDENTITY_FILE)]);

    let (second, _) = load_or_create_identity(&data_dir)
        .await
        .expect("second load");
    assert_eq!(
        first.public().to_peer_id(),
        second.public().to_peer_id(),
        "peer id changed across loads"
    );

    // The file holds the key, not just any file: removing it yields a new identity.
    std::fs::remove_file(&path).unwrap();
    let (third, _) = load_or_create_identity(&data_dir)
        .await
        .expect("third load");
    assert_ne!(first.public().to_peer_id(), third.public().to_peer_id());
}

#[tokio::test]
async fn corrupt_identity_file_is_an_error_not_a_new_identity() {
    std::env::set_var(KEYRING_ENV, "off");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(IDENTITY_FILE), "garbage").unwrap();
    assert!(load_or_create_identity(dir.path()).await.is_err());
}
