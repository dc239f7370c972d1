//! Reading a file (or a byte range of one) once for `dag_of_file`; large inputs hash the whole input on a helper
//! thread while this thread builds the DAG, since the two sha256 passes (whole input, leaves) are otherwise the whole
//! cost.

use std::io::Read;
use std::sync::{mpsc, Arc};

use crate::builder::{BalancedBuilder, WholeFileHasher};
use crate::{ExtraDigests, FileDag, Profile, FILE_READ_BUFFER_BYTES};

/// Below this the single-threaded path is as fast (and the first-chunk hash is shared anyway).
pub(crate) const HELPER_THREAD_MIN_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Read buffers in flight between this thread and the hasher.
const READ_BUFFERS_IN_FLIGHT: usize = 4;

/// One `read`, retried when interrupted.
pub(crate) fn read_some(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Builds the DAG on this thread and the whole-file digests on a helper, both from the same read buffers.
pub(crate) fn dag_with_helper_thread(
    mut file: impl Read,
    profile: Profile,
    extra: ExtraDigests,
) -> std::io::Result<FileDag> {
    let mut builder = BalancedBuilder::new(
        profile,
        profile.chunk_size_bytes(),
        profile.max_links_per_node(),
        None,
    );
    std::thread::scope(|scope| {
        let (to_hasher, hasher_inbox) =
            mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(READ_BUFFERS_IN_FLIGHT);
        let (to_reader, reader_inbox) = mpsc::channel::<Arc<Vec<u8>>>();
        for _ in 0..READ_BUFFERS_IN_FLIGHT {
            to_reader
                .send(Arc::new(vec![0u8; FILE_READ_BUFFER_BYTES]))
                .expect("the reader inbox is open");
        }
        let hasher = scope.spawn(move || {
            let mut whole_file_hasher = WholeFileHasher::new(extra);
            for (buffer, filled_bytes) in hasher_inbox {
                whole_file_hasher.update(&buffer[..filled_bytes]);
                // The reader may already be gone (read error or end of file); then the buffer is just dropped.
                let _ = to_reader.send(buffer);
            }
            whole_file_hasher.finish()
        });

        let read_result = (|| -> std::io::Result<()> {
            loop {
                let mut buffer = reader_inbox
                    .recv()
                    .expect("the hasher returns every buffer it is sent");
                // This thread dropped its own handle before the hasher sent the buffer back, so it is unshared.
                let buffer_bytes =
                    Arc::get_mut(&mut buffer).expect("a returned buffer is unshared");
                let filled_bytes = read_some(&mut file, buffer_bytes)?;
                if filled_bytes == 0 {
                    return Ok(());
                }
                to_hasher
                    .send((Arc::clone(&buffer), filled_bytes))
                    .expect("the hasher runs until the channel closes");
                builder.update(&buffer[..filled_bytes]);
            }
        })();
        drop(to_hasher);
        let digests = hasher.join().expect("the whole-file hasher does not panic");
        read_result.map(|()| builder.finish(Some(digests)))
    })
}
