//! The confinement rules a cache file's metadata must pass before pkgseed reads it, shared by the indexer (before
//! a file is described or hashed) and the block store (on the opened handle, at every block read): a regular file,
//! no hard link pkgseed does not account for (a hard link has no target to check: it may be a private file from
//! outside the cache root), and not an enormous file that is mostly holes. See docs/reliability.md (Confinement).

use std::fs::Metadata;
use std::path::PathBuf;

/// Files at least this long are checked for holes; a smaller one costs at most this much hashing.
pub const SPARSE_CHECK_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// Why a cache file is refused. The message is what the daemon logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconfined {
    #[error("not a regular file but {0}")]
    NotRegular(&'static str),
    #[error(
        "hard-linked: {links} links where pkgseed accounts for {accounted} (a hard link may lead outside the \
         cache root)"
    )]
    HardLinked { links: u64, accounted: u64 },
    #[error(
        "sparse: {allocated_bytes} of {len_bytes} bytes allocated on disk (mostly holes; a package archive is \
         written in full)"
    )]
    Sparse {
        len_bytes: u64,
        allocated_bytes: u64,
    },
}

/// Checks a cache file's metadata (read without following a symlink, or from the opened handle):
/// - it is a regular file;
/// - its link count is at most the links pkgseed accounts for: its own name, plus pkgseed's own hard link to it
///   when `own_link` (asked only when the file has more than one link) names a path of the same file (pkgseed's
///   store entry for the artifact);
/// - when it is at least [`SPARSE_CHECK_MIN_BYTES`] long, at least half of it is allocated on disk.
pub fn check_confined(
    metadata: &Metadata,
    own_link: impl FnOnce() -> Option<PathBuf>,
) -> Result<(), Unconfined> {
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(Unconfined::NotRegular(kind_of(&file_type)));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let links = metadata.nlink();
        if links > 1 {
            let ours = own_link()
                .and_then(|path| std::fs::symlink_metadata(path).ok())
                .is_some_and(|link| link.dev() == metadata.dev() && link.ino() == metadata.ino());
            let accounted = 1 + u64::from(ours);
            if links > accounted {
                return Err(Unconfined::HardLinked { links, accounted });
            }
        }
        let len_bytes = metadata.len();
        // `st_blocks` counts 512-byte units whatever the filesystem's block size.
        let allocated_bytes = metadata.blocks().saturating_mul(512);
        if len_bytes >= SPARSE_CHECK_MIN_BYTES && allocated_bytes < len_bytes / 2 {
            return Err(Unconfined::Sparse {
                len_bytes,
                allocated_bytes,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = own_link;
    Ok(())
}

fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_symlink() {
        "a symlink (never followed)"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "an unknown kind of file"
    }
}
