//! Reading a file (or a byte range of one) once for `dag_of_file`. An input of more than one chunk is hashed twice
//! (every leaf, and the whole input for the registry checksum), so the whole-input digests run on a helper thread
//! while this thread builds the DAG. Each calling thread keeps its helper and its read buffers between files (no
//! thread start or buffer allocation per file); the helper ends when the calling thread does.

use std::cell::RefCell;
use std::io::Read;
use std::sync::{mpsc, Arc};

use crate::builder::{BalancedBuilder, WholeFileDigests, WholeFileHasher};
use crate::{ExtraDigests, FileDag, Profile};

/// Read buffers handed between this thread and its helper; kept by both threads between files.
const HELPER_READ_BUFFERS: usize = 4;
/// Small enough that the buffers kept per thread stay small (1 MiB in all), large enough that a read and two
/// channel messages per buffer cost nothing next to hashing it.
const HELPER_READ_BUFFER_BYTES: usize = 256 * 1024;

/// One `read`, retried when interrupted.
pub(crate) fn read_some(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Whether an input of `len_bytes` is hashed with the helper: when it has more than one chunk (a one-chunk input's
/// raw leaf hash is its whole-file sha256, so it is hashed once anyway).
pub(crate) fn uses_helper(len_bytes: u64, profile: Profile) -> bool {
    len_bytes > profile.chunk_size_bytes()
}

enum ToHelper {
    Start(ExtraDigests),
    Hash(Arc<Vec<u8>>, usize),
    Finish,
}

enum FromHelper {
    Buffer(Arc<Vec<u8>>),
    Digests(WholeFileDigests),
}

/// The calling thread's whole-file digest thread and the read buffers not in flight.
struct DigestHelper {
    to_helper: mpsc::Sender<ToHelper>,
    from_helper: mpsc::Receiver<FromHelper>,
    idle_buffers: Vec<Arc<Vec<u8>>>,
}

thread_local! {
    static HELPER: RefCell<Option<DigestHelper>> = const { RefCell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// Helpers this thread started (tests check that one serves many inputs).
    pub(crate) static HELPERS_STARTED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn helper_stopped() -> std::io::Error {
    std::io::Error::other("the whole-file digest thread stopped")
}

impl DigestHelper {
    fn start() -> std::io::Result<DigestHelper> {
        #[cfg(test)]
        HELPERS_STARTED_HERE.with(|started| started.set(started.get() + 1));
        let (to_helper, inbox) = mpsc::channel::<ToHelper>();
        let (to_reader, from_helper) = mpsc::channel::<FromHelper>();
        // Started from the calling thread, it inherits its CPU and IO priority (the engine's scan thread is at the
        // lowest). It ends when the calling thread's end drops `to_helper`.
        std::thread::Builder::new()
            .name("pkgseed-digest".into())
            .spawn(move || {
                let mut hasher = None;
                for message in inbox {
                    let reply = match message {
                        ToHelper::Start(extra) => {
                            hasher = Some(WholeFileHasher::new(extra));
                            continue;
                        }
                        ToHelper::Hash(buffer, filled_bytes) => {
                            if let Some(hasher) = hasher.as_mut() {
                                hasher.update(&buffer[..filled_bytes]);
                            }
                            FromHelper::Buffer(buffer)
                        }
                        ToHelper::Finish => match hasher.take() {
                            Some(hasher) => FromHelper::Digests(hasher.finish()),
                            None => continue,
                        },
                    };
                    if to_reader.send(reply).is_err() {
                        return;
                    }
                }
            })?;
        let idle_buffers = (0..HELPER_READ_BUFFERS)
            .map(|_| Arc::new(vec![0u8; HELPER_READ_BUFFER_BYTES]))
            .collect();
        Ok(DigestHelper {
            to_helper,
            from_helper,
            idle_buffers,
        })
    }

    /// A buffer this thread may fill: an idle one, else the next one the helper is done with.
    fn next_buffer(&mut self) -> std::io::Result<Arc<Vec<u8>>> {
        if let Some(buffer) = self.idle_buffers.pop() {
            return Ok(buffer);
        }
        match self.from_helper.recv() {
            Ok(FromHelper::Buffer(buffer)) => Ok(buffer),
            _ => Err(helper_stopped()),
        }
    }

    /// Builds the DAG of `input` here while the helper computes the whole-input digests from the same buffers.
    fn dag(
        &mut self,
        input: &mut impl Read,
        profile: Profile,
        extra: ExtraDigests,
    ) -> std::io::Result<FileDag> {
        let mut builder = BalancedBuilder::new(
            profile,
            profile.chunk_size_bytes(),
            profile.max_links_per_node(),
            None,
        );
        self.to_helper
            .send(ToHelper::Start(extra))
            .map_err(|_| helper_stopped())?;
        let read_result = (|| -> std::io::Result<()> {
            loop {
                let mut buffer = self.next_buffer()?;
                // This thread dropped its own handle before the helper sent the buffer back, so it is unshared.
                let buffer_bytes =
                    Arc::get_mut(&mut buffer).expect("a returned buffer is unshared");
                let filled_bytes = match read_some(input, buffer_bytes) {
                    Ok(filled_bytes) => filled_bytes,
                    Err(err) => {
                        self.idle_buffers.push(buffer);
                        return Err(err);
                    }
                };
                if filled_bytes == 0 {
                    self.idle_buffers.push(buffer);
                    return Ok(());
                }
                self.to_helper
                    .send(ToHelper::Hash(Arc::clone(&buffer), filled_bytes))
                    .map_err(|_| helper_stopped())?;
                builder.update(&buffer[..filled_bytes]);
            }
        })();
        // Also after a read error: the helper ends this input and every buffer comes back before the next one.
        self.to_helper
            .send(ToHelper::Finish)
            .map_err(|_| helper_stopped())?;
        let digests = loop {
            match self.from_helper.recv() {
                Ok(FromHelper::Buffer(buffer)) => self.idle_buffers.push(buffer),
                Ok(FromHelper::Digests(digests)) => break digests,
                Err(_) => return Err(helper_stopped()),
            }
        };
        read_result.map(|()| builder.finish(Some(digests)))
    }
}

/// Ends the calling thread's digest helper and frees its read buffers (for a thread done with large inputs for a
/// while, such as the engine's scan thread after a scan); the next large input starts a new one.
pub fn stop_digest_helper() {
    HELPER.with(|slot| slot.borrow_mut().take());
}

/// Builds the DAG on this thread and the whole-input digests on this thread's helper, both from the same read
/// buffers. If the helper cannot be started (or stopped), the input is not lost: the error is returned, and the
/// next call starts a new helper.
pub(crate) fn dag_with_helper_thread(
    mut input: impl Read,
    profile: Profile,
    extra: ExtraDigests,
) -> std::io::Result<FileDag> {
    // Taken out while in use, so a panic inside leaves no helper half-way through an input.
    let mut helper = match HELPER.with(|slot| slot.borrow_mut().take()) {
        Some(helper) => helper,
        None => DigestHelper::start()?,
    };
    let result = helper.dag(&mut input, profile, extra);
    let helper_usable = helper.idle_buffers.len() == HELPER_READ_BUFFERS;
    if helper_usable {
        HELPER.with(|slot| *slot.borrow_mut() = Some(helper));
    }
    result
}
