//! A Ballista executor that runs the scheduler's tasks with the gateway's functions, masks
//! and bounds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use tongban_connectors::functions;

use crate::ClusterError;
use crate::codec::{ViewLogicalCodec, ViewPhysicalCodec};

/// Where an executor listens and what it may use.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host and gRPC port.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// The address the executor binds and tells the scheduler and other executors.
    pub host: String,
    /// The port of its Arrow Flight service (shuffle and result fetches).
    pub flight_port: u16,
    /// The port of its gRPC service (tasks pushed by the scheduler).
    pub grpc_port: u16,
    /// Tasks run at once.
    pub task_slots: usize,
    /// Memory one task may hold, in bytes; nothing spills to disk.
    pub task_memory_bytes: u64,
    /// Where shuffle files are written.
    pub work_dir: PathBuf,
}

/// Runs an executor until the process is told to stop.
pub async fn serve(
    options: ExecutorOptions,
    stores: Arc<dyn ObjectStoreRegistry>,
) -> Result<(), ClusterError> {
    let task_slots = options.task_slots.max(1);
    // Each task gets a runtime with its own memory pool (Ballista divides `memory_pool_size`
    // among the task slots) and no disk to spill to: a task over its share fails, as a query
    // over its memory does on the gateway's own engine.
    let runtime: RuntimeProducer = Arc::new(move |_config| {
        Ok(Arc::new(
            RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::clone(&stores))
                .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
                .build()?,
        ))
    });
    let registry = BallistaFunctionRegistry {
        scalar_functions: functions::scalar_functions()
            .into_iter()
            .map(|f| (f.name().to_owned(), f))
            .collect(),
        aggregate_functions: functions::aggregate_functions()
            .into_iter()
            .map(|f| (f.name().to_owned(), f))
            .collect(),
        window_functions: functions::window_functions()
            .into_iter()
            .map(|f| (f.name().to_owned(), f))
            .collect(),
        higher_order_functions: HashMap::new(),
    };
    let config = ExecutorProcessConfig {
        bind_host: options.host.clone(),
        external_host: Some(options.host.clone()),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: task_slots,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(options.work_dir.display().to_string()),
        print_thread_info: false,
        // Shuffle files are removed once their job is done (the scheduler tells the executors
        // 30 s after), and anything left behind after an hour.
        job_data_ttl_seconds: 3600,
        job_data_clean_up_interval_seconds: 300,
        executor_heartbeat_interval_seconds: 5,
        memory_pool_size: Some(options.task_memory_bytes.saturating_mul(task_slots as u64)),
        override_runtime_producer: Some(runtime),
        override_function_registry: Some(Arc::new(registry)),
        override_logical_codec: Some(Arc::new(ViewLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(ViewPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(
        host = %options.host,
        flight_port = options.flight_port,
        scheduler = %format!("{}:{}", options.scheduler_host, options.scheduler_port),
        "Ballista executor starting"
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
