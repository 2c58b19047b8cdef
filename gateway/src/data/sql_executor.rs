//! Where SQL queries run: a runtime of their own, on threads the operating system schedules
//! after the data plane's, a bounded number of queries at a time.
//!
//! A query is planned and run by DataFusion in the thread that polls it. On the runtime that
//! serves HTTP, costly queries held both worker threads of a 2-processor machine: cached
//! verifications fell to 2% of their rate while four clients ran self-joins (the load bench's
//! `sql` part). Planning cannot yield at all, so the query's time limit could not cover it.
//! Here every query is parsed, planned, run and encoded on the SQL runtime; the caller's task
//! only waits for it, under the time limit, and the threads it waits on run at a lower
//! priority (a higher nice value), so a verification or look-up is scheduled first whenever
//! both want a processor. Queries still use every processor the data plane leaves idle.
//!
//! At most [`DataConfig::sql_concurrency`] queries run at once; each has its own memory pool
//! of `sql_memory_mib`, so that bound is also the bound on SQL's memory. The queries of one
//! department hold at most `sql_slots_per_department` of those slots (half by default), so a
//! department running costly queries cannot keep the others out. A call that finds its
//! department's share or every slot taken waits for one for `sql_queue_ms`, and is then
//! refused with 503 `sql_busy`.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::DataConfig;
use crate::error::ApiError;
use crate::metrics::SqlMetrics;
use prometheus_client::metrics::gauge::Gauge;

/// Stack for the SQL runtime's threads. DataFusion and its parser build, copy, compare and
/// drop a query's trees recursively; the sandbox's bound on a query's terms
/// (`sql::MAX_QUERY_TERMS`) was set with this much stack, on which a debug build answered
/// chains eight times as long. Reserved, and touched only as deep as a query goes.
const SQL_THREAD_STACK: usize = 16 * 1024 * 1024;

/// Why the SQL runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum SqlExecutorError {
    #[error("data.sql_nice is {0}; nice values for SQL threads run from 0 to 19")]
    Nice(u8),
    #[error("starting the SQL runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("{0}")]
    Engine(String),
}

/// The SQL runtime and its slots.
#[derive(Debug)]
pub struct SqlExecutor {
    /// Taken only when dropped: a runtime cannot be dropped inside another's task, so it is
    /// shut down in the background instead.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
    /// Each department's share of the slots, made on its first query.
    shares: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    share: usize,
    queue: Duration,
    time_limit: Duration,
    metrics: SqlMetrics,
    /// The Ballista scheduler's URL when queries run on a cluster (`data.sql.engine`).
    cluster: Option<String>,
}

impl SqlExecutor {
    pub fn new(config: &DataConfig) -> Result<Self, SqlExecutorError> {
        let cluster = config.sql.scheduler_url().map_err(SqlExecutorError::Engine)?;
        let nice = config.sql_nice;
        let priority = priority_for_nice(nice).ok_or(SqlExecutorError::Nice(nice))?;
        let threads = match config.sql_threads {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tongban-sql")
            .thread_stack_size(SQL_THREAD_STACK)
            // Blocking threads (file reads) start here too, and run at the same priority.
            .on_thread_start(move || lower_priority(priority))
            .enable_all()
            .build()?;
        Ok(SqlExecutor {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            slots: Arc::new(Semaphore::new(config.sql_concurrency.get())),
            shares: std::sync::Mutex::default(),
            share: match config.sql_slots_per_department {
                0 => (config.sql_concurrency.get() / 2).max(1),
                n => n.min(config.sql_concurrency.get()),
            },
            queue: Duration::from_millis(config.sql_queue_ms),
            time_limit: Duration::from_millis(config.sql_timeout_ms),
            metrics: SqlMetrics::default(),
            cluster,
        })
    }

    /// The Ballista scheduler's URL when queries run on a cluster; `None` on the local engine.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Runs `query` on the SQL runtime once a slot is free, and waits for it for at most the
    /// query time limit. A query past its limit, or whose caller went away, is aborted at its
    /// next yield; one still planning (which never yields) keeps its slot until planning
    /// ends, so such queries can hold at most every slot, never the data plane's threads.
    pub async fn run<T, Q>(&self, department: &str, query: Q) -> Result<T, ApiError>
    where
        Q: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        let waiting = Counted::new(&self.metrics.waiting);
        let share = {
            let mut shares = self.shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                shares.entry(department.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.share))),
            )
        };
        // The department's share first, then a slot: a department at its share waits without
        // holding a slot another department could use.
        let permits = tokio::time::timeout(self.queue, async {
            let share = share.acquire_owned().await?;
            let slot = Arc::clone(&self.slots).acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((share, slot))
        })
        .await;
        let (share, permit) = match permits {
            Ok(Ok(permits)) => permits,
            // The semaphores are never closed; a closed one would refuse like a full one.
            Ok(Err(_)) | Err(_) => return Err(busy(self.queue)),
        };
        drop(waiting);
        let slot = Slot { _share: share, _permit: permit, _running: Counted::new(&self.metrics.running) };
        let task = self.handle.spawn(async move {
            let answer = query.await;
            drop(slot);
            answer
        });
        let _abort = AbortOnDrop(task.abort_handle());
        match tokio::time::timeout(self.time_limit, task).await {
            Err(_) => Err(ApiError::unprocessable(
                "query_timeout",
                "Query took too long",
                format!("queries may run for {} ms; narrow or aggregate it", self.time_limit.as_millis()),
            )),
            Ok(Err(failed)) if failed.is_panic() => Err(ApiError::internal(&"a SQL query panicked")),
            Ok(Err(failed)) => Err(ApiError::internal(&failed)),
            Ok(Ok(answer)) => answer,
        }
    }

    /// Runs the gateway's own scans (questions over the exchange log, quality measurements of
    /// whole datasets) on the SQL runtime, off the threads that serve calls. They take no slot
    /// and have no time limit: they are bounded by what the gateway asks, not by a caller.
    /// Dropped when their caller stops waiting.
    pub async fn offload<T, W>(&self, work: W) -> Result<T, ApiError>
    where
        W: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.handle.spawn(work);
        let _abort = AbortOnDrop(task.abort_handle());
        task.await.map_err(|failed| {
            if failed.is_panic() {
                ApiError::internal(&"a scan panicked")
            } else {
                ApiError::internal(&failed)
            }
        })
    }

    /// Slots free now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    pub fn metrics(&self) -> &SqlMetrics {
        &self.metrics
    }
}

impl Drop for SqlExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A slot held by a running query, given back when the query ends or is dropped.
struct Slot {
    _share: OwnedSemaphorePermit,
    _permit: OwnedSemaphorePermit,
    _running: Counted,
}

/// One on a gauge for as long as it lives, however the holder ends.
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Aborts the query's task when its caller stops waiting, for whatever reason: the time
/// limit, or the client hanging up. Aborting a finished task does nothing.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn busy(waited: Duration) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sql_busy",
        "Too many queries",
        format!(
            "every SQL slot stayed taken for {} ms; try again shortly, or use verification or look-up",
            waited.as_millis()
        ),
    );
    error.retry_after = Some(1);
    error
}

/// The `thread_priority` value that gives a normal-policy thread the nice value `nice` on
/// Linux. The crate maps its values 0..=99 onto nice 19..=-20 in `f32` and truncates; this
/// searches that mapping, as the crate computes it, and the tests check the result against
/// the kernel's. `None` past 19.
fn priority_for_nice(nice: u8) -> Option<thread_priority::ThreadPriorityValue> {
    let nice_of = |value: u8| {
        let ratio = 1f32 - (f32::from(value) / 99f32);
        (39f32 * ratio) as i8 - 20
    };
    let value = (0..=99u8).find(|&value| i16::from(nice_of(value)) == i16::from(nice))?;
    thread_priority::ThreadPriorityValue::try_from(value).ok()
}

fn lower_priority(priority: thread_priority::ThreadPriorityValue) {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    if let Err(e) = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(priority),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    ) {
        tracing::warn!(error = ?e, "SQL threads run at the data plane's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, as the kernel reports it.
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
        // Fields after the command name, which is in brackets and may hold spaces; nice is
        // the 19th field, the 17th after the name.
        let after_name = &stat[stat.rfind(')').expect("command name") + 2..];
        after_name.split(' ').nth(16).expect("nice field").parse().expect("a number")
    }

    #[test]
    fn every_nice_value_from_0_to_19_is_the_one_a_thread_gets() {
        for nice in 0..=19u8 {
            let priority = priority_for_nice(nice).expect("in range");
            let got = std::thread::spawn(move || {
                lower_priority(priority);
                own_nice()
            })
            .join()
            .expect("thread");
            assert_eq!(got, i64::from(nice), "asked for nice {nice}");
        }
        assert!(priority_for_nice(20).is_none());
    }

    fn config(concurrency: usize, queue_ms: u64, timeout_ms: u64) -> DataConfig {
        DataConfig {
            sql_concurrency: NonZeroUsize::new(concurrency).expect("nonzero"),
            sql_queue_ms: queue_ms,
            sql_timeout_ms: timeout_ms,
            sql_threads: 1,
            ..DataConfig::default()
        }
    }

    #[tokio::test]
    async fn queries_run_on_threads_of_their_own_at_the_configured_nice_value() {
        let executor = SqlExecutor::new(&config(2, 100, 5_000)).expect("executor");
        let (name, nice) = executor
            .run("d", async { Ok((std::thread::current().name().map(str::to_owned), own_nice())) })
            .await
            .expect("ran");
        assert_eq!(name.as_deref(), Some("tongban-sql"));
        assert_eq!(nice, i64::from(DataConfig::default().sql_nice));
        assert_eq!(own_nice(), 0, "the caller's thread keeps its priority");
    }

    /// Waits until `condition` holds, looking again after every millisecond, so that a test
    /// goes on as soon as the executor has done what it waits for rather than after a guess.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "waited ten seconds for {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A caller running a query that never finishes on its own, yielding as DataFusion's
    /// streams do; the receiver hears when the query has started on its slot.
    fn endless_query(
        executor: &Arc<SqlExecutor>,
    ) -> (tokio::task::JoinHandle<Result<(), ApiError>>, tokio::sync::oneshot::Receiver<()>) {
        let executor = Arc::clone(executor);
        let (started, running) = tokio::sync::oneshot::channel();
        let caller = tokio::spawn(async move {
            executor
                .run("d", async move {
                    let _ = started.send(());
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
        });
        (caller, running)
    }

    #[tokio::test]
    async fn a_full_executor_refuses_after_the_queue_wait_and_frees_its_slot_after_the_time_limit() {
        let executor = Arc::new(SqlExecutor::new(&config(1, 200, 1_000)).expect("executor"));
        let (endless, running) = endless_query(&executor);
        running.await.expect("the endless query started");
        assert_eq!(executor.free_slots(), 0);
        assert_eq!(executor.metrics().running.get(), 1);
        let started = std::time::Instant::now();
        let waiting = {
            let executor = Arc::clone(&executor);
            tokio::spawn(async move { executor.run("d", async { Ok(1) }).await })
        };
        until("the second query to queue", || executor.metrics().waiting.get() == 1).await;
        let refused = waiting.await.expect("joined").expect_err("no free slot");
        assert_eq!((refused.status, refused.code), (StatusCode::SERVICE_UNAVAILABLE, "sql_busy"));
        assert_eq!(refused.retry_after, Some(1));
        assert!(started.elapsed() >= Duration::from_millis(200), "it waited for the queue time");
        assert_eq!(executor.metrics().waiting.get(), 0);

        let timed_out = endless.await.expect("joined").expect_err("past its limit");
        assert_eq!(timed_out.code, "query_timeout");
        // The aborted query gives its slot back, and the next query runs.
        until("the aborted query's slot to come back", || executor.free_slots() == 1).await;
        assert_eq!(executor.metrics().running.get(), 0);
        assert_eq!(executor.run("d", async { Ok(7) }).await.expect("ran"), 7);
    }

    #[tokio::test]
    async fn a_query_that_never_yields_is_answered_on_time_and_holds_its_slot_until_it_ends() {
        let executor = SqlExecutor::new(&config(1, 100, 300)).expect("executor");
        let started = std::time::Instant::now();
        let (ended, planning_ended) = tokio::sync::oneshot::channel();
        // Planning runs to its end without yielding; a blocking sleep stands for it.
        let refused = executor
            .run("d", async move {
                std::thread::sleep(Duration::from_millis(1_500));
                let _ = ended.send(());
                Ok(())
            })
            .await
            .expect_err("past its limit");
        assert_eq!(refused.code, "query_timeout");
        assert!(started.elapsed() < Duration::from_millis(1_000), "answered after {:?}", started.elapsed());
        assert_eq!(executor.free_slots(), 0, "the planning query still holds its slot");
        planning_ended.await.expect("planning ran to its end");
        until("the slot to come back once planning ended", || executor.free_slots() == 1).await;
    }

    /// One department's queries hold at most its share of the slots; another department's
    /// query runs beside them at once, while a further query of the first waits and is refused.
    #[tokio::test]
    async fn one_department_cannot_hold_every_slot() {
        let executor = Arc::new(SqlExecutor::new(&config(4, 200, 5_000)).expect("executor"));
        let costly = |department: &'static str| {
            let executor = Arc::clone(&executor);
            tokio::spawn(async move {
                executor
                    .run(department, async {
                        tokio::time::sleep(Duration::from_millis(1_500)).await;
                        Ok(())
                    })
                    .await
            })
        };
        let hogs: Vec<_> = (0..6).map(|_| costly("hog")).collect();
        until("the hog to hold its share and queue the rest", || {
            executor.free_slots() == 2 && executor.metrics().waiting.get() == 4
        })
        .await;
        let started = std::time::Instant::now();
        assert_eq!(executor.run("other", async { Ok(7) }).await.expect("another department runs"), 7);
        assert!(started.elapsed() < Duration::from_millis(150), "at once: {:?}", started.elapsed());
        let mut refused = 0;
        for hog in hogs {
            if let Err(error) = hog.await.expect("joined") {
                assert_eq!(error.code, "sql_busy");
                refused += 1;
            }
        }
        assert_eq!(refused, 4, "the hog's queries beyond its share waited, then were refused");
    }

    #[tokio::test]
    async fn a_query_whose_caller_goes_away_is_aborted() {
        let executor = Arc::new(SqlExecutor::new(&config(1, 100, 60_000)).expect("executor"));
        let (caller, running) = endless_query(&executor);
        running.await.expect("the endless query started");
        assert_eq!(executor.free_slots(), 0);
        caller.abort();
        until("the slot to come back well before the 60 s limit", || executor.free_slots() == 1).await;
    }

    #[tokio::test]
    async fn a_panicking_query_answers_internal_and_frees_its_slot() {
        let executor = SqlExecutor::new(&config(1, 100, 5_000)).expect("executor");
        let failed = executor
            .run("d", async {
                if executor_panics() {
                    panic!("planner bug");
                }
                Ok(())
            })
            .await
            .expect_err("panicked");
        assert_eq!((failed.status, failed.code), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert_eq!(executor.free_slots(), 1);
    }

    #[tokio::test]
    async fn the_gateways_own_scans_run_on_the_sql_threads_without_a_slot() {
        let executor = SqlExecutor::new(&config(1, 100, 5_000)).expect("executor");
        let (name, free) = {
            let slots = Arc::clone(&executor.slots);
            executor
                .offload(async move {
                    (std::thread::current().name().map(str::to_owned), slots.available_permits())
                })
                .await
                .expect("ran")
        };
        assert_eq!((name.as_deref(), free), (Some("tongban-sql"), 1));
    }

    /// Keeps the panic out of the compiler's sight, so the query's type stays `Result`.
    fn executor_panics() -> bool {
        std::hint::black_box(true)
    }
}
