//! Thread-per-core serving: each accepted connection is handed to one of a
//! fixed set of worker threads, each running its own single-threaded tokio
//! runtime, and stays there. A request, its upstream connection and their
//! timers then live on one core: no work stealing, no wake-ups across threads
//! and no allocator contention between cores on the hot path (a shared
//! multi-threaded runtime cost about a third more CPU per proxied request).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the serving worker running the caller, or `None` outside the workers.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// How many serving workers there are, decided once (by config, from
/// `server.worker_threads`): [`Workers::start`] starts this many threads and
/// every `WorkerLocal` built from it has a value for each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerCount(NonZeroUsize);

impl WorkerCount {
    /// `configured` workers, or one per available CPU core when it is 0.
    pub fn resolve(configured: usize) -> Self {
        let cores = || std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Self(NonZeroUsize::new(configured).unwrap_or_else(cores))
    }

    pub fn get(self) -> usize {
        self.0.get()
    }
}

/// One `T` per serving worker, and one for every other thread: state such as
/// an upstream connection pool stays with the thread whose runtime drives it.
pub(crate) struct WorkerLocal<T> {
    workers: Box<[T]>,
    other: T,
}

impl<T> std::fmt::Debug for WorkerLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLocal").field("workers", &self.workers.len()).finish_non_exhaustive()
    }
}

impl<T> WorkerLocal<T> {
    /// A value for each of `count` workers and one for other threads, each made by `make`.
    pub(crate) fn new(count: WorkerCount, mut make: impl FnMut() -> T) -> Self {
        Self { workers: (0..count.get()).map(|_| make()).collect(), other: make() }
    }

    /// As [`WorkerLocal::new`], for a `make` that can fail: the first error is returned.
    pub(crate) fn try_new<E>(count: WorkerCount, mut make: impl FnMut() -> Result<T, E>) -> Result<Self, E> {
        let workers = (0..count.get()).map(|_| make()).collect::<Result<_, _>>()?;
        Ok(Self { workers, other: make()? })
    }

    /// The value of the serving worker running the caller, or the other threads' one.
    pub(crate) fn current(&self) -> &T {
        current().and_then(|index| self.workers.get(index)).unwrap_or(&self.other)
    }
}

/// How often each worker's timer anchor fires: well before the per-request
/// deadlines (by default 10 s to read a head, 30 s for an upstream response),
/// and the longest a worker holds a log line.
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_millis(250);

/// Keeps a timer due within [`TIMER_ANCHOR_PERIOD`] on the worker's runtime.
///
/// tokio's time driver wakes itself through its eventfd (a `write` and an
/// extra `epoll_wait` round) whenever a timer is registered that is due
/// sooner than every timer it was parked with, which with no timer pending is
/// every registration; hyper arms a header-read deadline for every keep-alive
/// request. With the anchor always due sooner, registering those deadlines
/// never wakes the driver: two system calls fewer per request, for four
/// wake-ups per second per worker.
///
/// Each tick also runs the worker's [`WorkerHooks::on_tick`].
async fn anchor_timers(on_tick: fn()) {
    let mut ticks = tokio::time::interval(TIMER_ANCHOR_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        on_tick();
    }
}

/// What every worker thread runs besides its tasks, so that the caller decides
/// (the server passes telemetry's held log lines) and this module knows none of it.
#[derive(Clone, Copy, Debug)]
pub struct WorkerHooks {
    /// Once on the new thread, before its runtime runs.
    pub on_start: fn(),
    /// At each timer-anchor tick, four times a second.
    pub on_tick: fn(),
    /// Once when the thread ends, after its runtime and tasks are dropped.
    pub on_stop: fn(),
}

impl WorkerHooks {
    /// Nothing besides the tasks.
    pub const NONE: Self = Self { on_start: || {}, on_tick: || {}, on_stop: || {} };
}

/// A running set of worker threads. Dropping it ends them (their tasks are
/// dropped) and waits for their threads, blocking the caller briefly, so what
/// the tasks held (the listening socket's copies, connections) is closed when
/// the drop returns; [`Workers::stop`] waits without blocking.
pub struct Workers {
    dispatch: Arc<Dispatch>,
    /// Set to `true` by [`Workers::stop`]: each worker then ends, whoever
    /// still holds a [`Dispatch`] (the accept loops running on the workers do).
    stopping: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Hands tasks to the workers; shared with tasks running on them (an accept
/// loop hands a connection on when its own worker has more than its share).
pub struct Dispatch {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    /// Tasks handed to each worker and not yet finished.
    load: Arc<[AtomicUsize]>,
    /// Where the search for the least loaded worker starts, so ties rotate.
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` worker threads named `{name}-{index}`, each running `hooks`.
    pub fn start(count: WorkerCount, name: &str, hooks: WorkerHooks) -> io::Result<Self> {
        let count = count.get();
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let (stopping, stop) = watch::channel(false);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
            let mut stop = stop.clone();
            let thread = std::thread::Builder::new().name(format!("{name}-{index}")).spawn(move || {
                CURRENT.with(|current| current.set(Some(index)));
                (hooks.on_start)();
                runtime.block_on(async move {
                    tokio::spawn(anchor_timers(hooks.on_tick));
                    loop {
                        tokio::select! {
                            job = jobs.recv() => match job {
                                Some(job) => drop(tokio::spawn(job)),
                                None => break,
                            },
                            _ = stop.wait_for(|stop| *stop) => break,
                        }
                    }
                });
                // Dropping the runtime drops any task still running.
                drop(runtime);
                (hooks.on_stop)();
            })?;
            queues.push(queue);
            threads.push(thread);
        }
        Ok(Self::assemble(queues, threads, stopping))
    }

    /// Workers fed through `queues` (one per worker), running on `threads`.
    fn assemble(
        queues: Vec<mpsc::UnboundedSender<Job>>,
        threads: Vec<JoinHandle<()>>,
        stopping: watch::Sender<bool>,
    ) -> Self {
        let load: Arc<[AtomicUsize]> = queues.iter().map(|_| AtomicUsize::new(0)).collect();
        Self { dispatch: Arc::new(Dispatch { queues, load, next: AtomicUsize::new(0) }), stopping, threads }
    }

    /// How many worker threads there are.
    pub fn count(&self) -> usize {
        self.dispatch.queues.len()
    }

    /// What hands tasks to the workers, for tasks running on them.
    pub fn dispatch(&self) -> &Arc<Dispatch> {
        &self.dispatch
    }

    /// Runs `task` on the worker with the fewest unfinished tasks. The future
    /// is first polled on that worker, so I/O objects it creates (for
    /// example `TcpStream::from_std`) belong to that worker's runtime.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.dispatch.spawn(task);
    }

    /// Runs the task `make(index)` on each worker `index`, uncounted in the
    /// workers' load (each has one alike): a loop that lives as long as they do.
    pub fn spawn_on_each<F>(&self, mut make: impl FnMut(usize) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        for (index, queue) in self.dispatch.queues.iter().enumerate() {
            if queue.send(Box::pin(make(index))).is_err() {
                tracing::error!(worker = index, "a serving worker has stopped before its loop started");
            }
        }
    }

    /// Ends every worker, dropping the tasks still running on them, and waits
    /// until their threads have ended.
    pub async fn stop(mut self) {
        self.stopping.send_replace(true);
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}

impl Dispatch {
    /// Runs `task` on the worker with the fewest unfinished tasks (see [`Workers::spawn`]).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let index = self.least_loaded();
        self.send(index, task);
    }

    /// The worker a task started by the calling worker should rather run on,
    /// if that worker has clearly more unfinished tasks than the least loaded
    /// one; `None`: run it here ([`Dispatch::spawn_here`]), on this worker's
    /// own runtime, with no wake-up of another thread.
    ///
    /// "Clearly": by more than 1 + an eighth of the least loaded's tasks, so
    /// that short connections coming and going on busy workers, whose counts
    /// differ by a few from moment to moment, stay where they were accepted,
    /// while a burst of long ones accepted by one worker is still spread.
    /// Outside the workers: the least loaded.
    pub fn elsewhere(&self) -> Option<usize> {
        let least = self.least_loaded();
        let Some(here) = current().filter(|&here| here < self.queues.len()) else { return Some(least) };
        let load = |index: usize| self.load.get(index).map_or(usize::MAX, |load| load.load(Ordering::Relaxed));
        let lowest = load(least);
        (load(here) > lowest.saturating_add(1 + lowest / 8)).then_some(least)
    }

    /// Runs `task` on the calling worker's runtime, counted in its load (on
    /// the caller's runtime, uncounted, outside the workers).
    pub fn spawn_here(&self, task: impl Future<Output = ()> + Send + 'static) {
        let done = current().map(|here| self.count_one(here));
        drop(tokio::spawn(async move {
            let _done = done;
            task.await;
        }));
    }

    /// Runs `task` on worker `index` (see [`Workers::spawn`]).
    pub fn spawn_on(&self, index: usize, task: impl Future<Output = ()> + Send + 'static) {
        self.send(index, task);
    }

    /// Counts one more unfinished task on worker `index` until the returned guard drops.
    fn count_one(&self, index: usize) -> Finished {
        if let Some(counter) = self.load.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Finished { load: Arc::clone(&self.load), index }
    }

    fn send(&self, index: usize, task: impl Future<Output = ()> + Send + 'static) {
        let Some(queue) = self.queues.get(index) else { return };
        // Counted down when the task ends, or when it is dropped unpolled.
        let done = self.count_one(index);
        let job = Box::pin(async move {
            let _done = done;
            task.await;
        });
        if queue.send(job).is_err() {
            // Its thread has ended, which only stopping should do: never choose it again.
            tracing::error!(worker = index, "a serving worker has stopped; its connection is dropped");
            if let Some(counter) = self.load.get(index) {
                counter.store(usize::MAX / 2, Ordering::Relaxed);
            }
        }
    }

    fn least_loaded(&self) -> usize {
        let count = self.queues.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        (0..count)
            .map(|offset| (start + offset) % count)
            .min_by_key(|&index| self.load.get(index).map_or(usize::MAX, |load| load.load(Ordering::Relaxed)))
            .unwrap_or(0)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Without `stop` (the serving future was dropped): the workers end at
        // once, having nothing that blocks.
        self.stopping.send_replace(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("dispatch", &self.dispatch).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let load: Vec<usize> = self.load.iter().map(|load| load.load(Ordering::Relaxed)).collect();
        f.debug_struct("Dispatch").field("load", &load).finish_non_exhaustive()
    }
}

/// Counts a task as finished when it ends or is dropped.
struct Finished {
    load: Arc<[AtomicUsize]>,
    index: usize,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(counter) = self.load.get(self.index) {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {

    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_workers_and_spread_over_all_of_them() {
        let workers = Workers::start(WorkerCount::resolve(3), "test-worker", WorkerHooks::NONE).unwrap();
        assert_eq!(workers.count(), 3);
        assert_eq!(current(), None, "the test thread is not a worker");
        // Tasks that stay open until released, so each new one goes to the least loaded worker.
        let (release, released) = tokio::sync::watch::channel(false);
        let (report, mut reports) = mpsc::unbounded_channel();
        for _ in 0..6 {
            let report = report.clone();
            let mut released = released.clone();
            workers.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                report.send((current(), name)).unwrap();
                let _ = released.wait_for(|released| *released).await;
            });
        }
        let mut per_worker = [0usize; 3];
        let mut names = HashSet::new();
        for _ in 0..6 {
            let (index, name) = reports.recv().await.unwrap();
            per_worker[index.expect("runs on a worker")] += 1;
            names.insert(name.unwrap());
        }
        assert_eq!(per_worker, [2, 2, 2], "open tasks are balanced");
        assert_eq!(
            names,
            HashSet::from(["test-worker-0".to_owned(), "test-worker-1".to_owned(), "test-worker-2".to_owned()])
        );
        release.send(true).unwrap();
        workers.stop().await;
    }

    #[tokio::test]
    async fn stopping_drops_unfinished_tasks_and_ends_the_threads() {
        let workers = Workers::start(WorkerCount::resolve(2), "test-stop", WorkerHooks::NONE).unwrap();
        let (started, mut has_started) = mpsc::unbounded_channel();
        let (dropped, mut was_dropped) = mpsc::unbounded_channel::<()>();
        struct SignalOnDrop(mpsc::UnboundedSender<()>);
        impl Drop for SignalOnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        workers.spawn(async move {
            let _guard = SignalOnDrop(dropped);
            started.send(()).unwrap();
            std::future::pending::<()>().await;
        });
        has_started.recv().await.unwrap();
        workers.stop().await;
        assert_eq!(was_dropped.recv().await, Some(()), "the pending task was dropped at stop");
    }

    #[tokio::test]
    async fn a_worker_whose_thread_has_ended_is_never_chosen_again() {
        let (dead, gone) = mpsc::unbounded_channel::<Job>();
        drop(gone);
        let (live, mut jobs) = mpsc::unbounded_channel::<Job>();
        let workers = Workers::assemble(vec![dead, live], Vec::new(), watch::channel(false).0);
        for _ in 0..6 {
            workers.spawn(async {});
        }
        let mut received = 0;
        while jobs.try_recv().is_ok() {
            received += 1;
        }
        // At most the first pick can land on the dead worker; every later one goes to the live one.
        assert!(received >= 5, "only {received} of 6 reached the live worker");
        let load = &workers.dispatch.load;
        assert!(load[0].load(Ordering::Relaxed) >= usize::MAX / 4, "the dead worker is marked");
        assert_eq!(load[1].load(Ordering::Relaxed), 0, "dropped jobs count themselves finished");
    }

    #[tokio::test]
    async fn each_worker_runs_its_hooks_at_start_at_each_tick_and_at_its_end() {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        static TICKED: AtomicUsize = AtomicUsize::new(0);
        static STOPPED: AtomicUsize = AtomicUsize::new(0);
        let hooks = WorkerHooks {
            on_start: || {
                STARTED.fetch_add(1, Ordering::Relaxed);
            },
            on_tick: || {
                TICKED.fetch_add(1, Ordering::Relaxed);
            },
            on_stop: || {
                STOPPED.fetch_add(1, Ordering::Relaxed);
            },
        };
        let workers = Workers::start(WorkerCount::resolve(2), "test-hooks", hooks).unwrap();
        let (ran, mut has_run) = mpsc::unbounded_channel();
        workers.spawn(async move {
            // Each worker's first tick is at once: a third one is a tick after a period.
            while TICKED.load(Ordering::Relaxed) < 3 {
                tokio::time::sleep(TIMER_ANCHOR_PERIOD / 2).await;
            }
            ran.send(()).unwrap();
        });
        has_run.recv().await.unwrap();
        assert_eq!(STARTED.load(Ordering::Relaxed), 2, "each worker started its hooks");
        assert_eq!(STOPPED.load(Ordering::Relaxed), 0);
        workers.stop().await;
        assert_eq!(STOPPED.load(Ordering::Relaxed), 2, "each worker ran its end hook");
    }

    #[test]
    fn zero_means_one_worker_per_core() {
        assert_eq!(WorkerCount::resolve(3).get(), 3);
        assert_eq!(WorkerCount::resolve(0).get(), std::thread::available_parallelism().unwrap().get());
    }

    #[tokio::test]
    async fn each_worker_has_its_own_value_and_other_threads_share_one() {
        let made = std::sync::atomic::AtomicUsize::new(0);
        let local = Arc::new(WorkerLocal::new(WorkerCount::resolve(2), || made.fetch_add(1, Ordering::Relaxed)));
        assert_eq!(*local.current(), 2, "outside the workers: the last one made");
        let workers = Workers::start(WorkerCount::resolve(2), "test-local", WorkerHooks::NONE).unwrap();
        let (report, mut reports) = mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        for _ in 0..2 {
            let (local, report, mut released) = (Arc::clone(&local), report.clone(), released.clone());
            workers.spawn(async move {
                report.send((current().unwrap(), *local.current())).unwrap();
                let _ = released.wait_for(|released| *released).await;
            });
        }
        let mut seen = [reports.recv().await.unwrap(), reports.recv().await.unwrap()];
        seen.sort_unstable();
        assert_eq!(seen, [(0, 0), (1, 1)], "worker i has value i");
        release.send(true).unwrap();
        workers.stop().await;
    }
}
