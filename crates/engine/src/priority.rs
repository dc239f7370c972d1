//! Background priority for scans. A full scan (the first one walks and hashes every artifact of a 100,000-file
//! cache) runs on one dedicated thread whose CPU and IO priority are lowered once, at its start: on Linux nice 19
//! (`setpriority` on the thread id: Linux nice values are per thread) and IO priority best-effort level 7, the
//! lowest that still makes progress under steady IO (the idle class can starve forever on a busy disk; IO
//! priorities only take effect under the BFQ scheduler); on macOS the thread's background policy
//! (`PRIO_DARWIN_BG`, CPU and IO). Other OSes keep the normal priority (logged once). Serving blocks, and paths
//! indexed between scans, stay on tokio's normal-priority blocking pool: a priority cannot be raised back without
//! privileges, so only this thread is ever lowered.

use std::panic::AssertUnwindSafe;

/// The nice value of the scan thread (the lowest CPU priority).
#[cfg(target_os = "linux")]
const SCAN_NICE: libc::c_int = 19;
/// `IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7)`: best-effort class (2) in bits 13.., level 7 (lowest) below.
#[cfg(target_os = "linux")]
const SCAN_IOPRIO: libc::c_int = (2 << 13) | 7;
/// `IOPRIO_WHO_PROCESS`: with a thread id, one thread.
#[cfg(target_os = "linux")]
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

type Job = Box<dyn FnOnce() + Send>;

/// One low-priority thread that runs scan work in order.
pub(crate) struct LowPriorityWorker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl LowPriorityWorker {
    pub(crate) fn start() -> std::io::Result<LowPriorityWorker> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pkgseed-scan".into())
            .spawn(move || {
                match lower_current_thread_priority() {
                    Ok(()) => tracing::debug!("scan thread runs at background priority"),
                    Err(reason) => {
                        tracing::info!(%reason, "scan thread keeps the normal priority")
                    }
                }
                for job in queue {
                    // A panicking job drops its reply sender (the caller sees it); the thread carries on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        Ok(LowPriorityWorker { jobs })
    }

    /// Runs `work` on the low-priority thread; `None` when it panicked or the thread is gone.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }
}

/// Runs `work` on `worker` when given (scan work), else on tokio's blocking pool; `None` when it panicked.
pub(crate) async fn run_blocking<T: Send + 'static>(
    worker: Option<&LowPriorityWorker>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match worker {
        Some(worker) => worker.run(work).await,
        None => tokio::task::spawn_blocking(work).await.ok(),
    }
}

/// Lowers the CPU and IO priority of the calling thread only.
#[cfg(target_os = "linux")]
pub(crate) fn lower_current_thread_priority() -> Result<(), String> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: plain syscalls on our own thread id; failures are reported through errno.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SCAN_NICE) } != 0 {
        return Err(format!("setpriority: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, SCAN_IOPRIO) } != 0 {
        return Err(format!("ioprio_set: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Lowers the CPU and IO priority of the calling thread only.
#[cfg(target_os = "macos")]
pub(crate) fn lower_current_thread_priority() -> Result<(), String> {
    // SAFETY: `who` 0 with PRIO_DARWIN_THREAD is the calling thread; failures are reported through errno.
    if unsafe { libc::setpriority(libc::PRIO_DARWIN_THREAD, 0, libc::PRIO_DARWIN_BG) } != 0 {
        return Err(format!("setpriority: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Lowers the CPU and IO priority of the calling thread only.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn lower_current_thread_priority() -> Result<(), String> {
    Err("no background priority on this OS yet".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// `(nice, ioprio)` of the calling thread: nice from `/proc/thread-self/stat` (field 19), ioprio from
    /// `ioprio_get`.
    fn current_thread_priority() -> (i64, libc::c_long) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which may contain spaces) start at field 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = after.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        // SAFETY: plain syscalls on our own thread.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid) };
        assert!(
            ioprio >= 0,
            "ioprio_get: {}",
            std::io::Error::last_os_error()
        );
        (nice, ioprio)
    }

    #[test]
    fn scan_thread_runs_at_lowest_cpu_and_io_priority_callers_keep_theirs() {
        let caller_before = current_thread_priority();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let worker = LowPriorityWorker::start().unwrap();
        let (nice, ioprio) = runtime
            .block_on(run_blocking(Some(&worker), current_thread_priority))
            .unwrap();
        assert_eq!(nice, SCAN_NICE as i64);
        assert_eq!(ioprio, SCAN_IOPRIO as libc::c_long);
        assert_eq!(
            current_thread_priority(),
            caller_before,
            "only the scan thread is lowered"
        );
        // The blocking pool (serving blocks, paths between scans) keeps the normal priority.
        let pool = runtime
            .block_on(run_blocking(None, current_thread_priority))
            .unwrap();
        assert_eq!(pool.0, caller_before.0);
        // A panicking job is reported as None and the thread keeps working.
        let panicked = runtime.block_on(worker.run(|| -> u8 { panic!("boom") }));
        assert_eq!(panicked, None);
        assert_eq!(runtime.block_on(worker.run(|| 7)), Some(7));
    }
}
