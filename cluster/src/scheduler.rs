//! A Ballista scheduler that plans only views.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::ConfigProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_core::utils::default_config_producer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;
use tongban_connectors::functions;

use crate::ClusterError;
use crate::codec::{Datasets, ViewLogicalCodec, ViewPhysicalCodec};
use crate::rules::{Bounded, ViewsStayWhole};

/// Serves a scheduler on `listener` until the process ends.
///
/// The scheduler decodes the plans it is sent with [`ViewLogicalCodec`] over `datasets`, so
/// it reads only views; it plans them in a session with the gateway's function list and the
/// rules of [`crate::rules`], reading files through `stores`. No operator of a query works for
/// longer than `time_limit`, the gateways' query time limit.
pub async fn serve(
    listener: TcpListener,
    datasets: Datasets,
    stores: Arc<dyn ObjectStoreRegistry>,
    time_limit: Duration,
) -> Result<(), ClusterError> {
    let address = listener.local_addr()?;
    let config_producer: ConfigProducer = Arc::new(default_config_producer);
    let config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        external_host: address.ip().to_string(),
        bind_port: address.port(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        override_logical_codec: Some(Arc::new(ViewLogicalCodec::new(datasets))),
        override_physical_codec: Some(Arc::new(ViewPhysicalCodec::default())),
        override_session_builder: Some(Arc::new(move |config| {
            session(config, Arc::clone(&stores), time_limit)
        })),
        override_config_producer: Some(config_producer),
        // Shuffle files of finished jobs are removed from the executors promptly: they hold
        // masked, in-scope values, but nothing needs them once the answer is fetched.
        finished_job_data_clean_up_interval_seconds: 30,
        finished_job_state_clean_up_interval_seconds: 300,
        ..SchedulerConfig::default()
    };
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config).await?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config).await?;
    tracing::info!(%address, "Ballista scheduler listening");
    start_grpc_service_with_listener(listener, scheduler).await?;
    Ok(())
}

/// The scheduler's session for one query: the gateway's functions, DataFusion's optimizer
/// with Ballista's rules and this crate's last, nothing spilled to disk.
fn session(
    config: SessionConfig,
    stores: Arc<dyn ObjectStoreRegistry>,
    time_limit: Duration,
) -> datafusion::common::Result<datafusion::execution::SessionState> {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(stores)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build()?;
    // Ballista's adaptive planner plans with a physical optimizer of its own, which would leave
    // out this crate's rules; the static planner uses the session's.
    let mut config = config
        .upgrade_for_ballista()
        .set_bool(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, false);
    config.options_mut().execution.enable_recursive_ctes = false;
    config.options_mut().catalog.information_schema = false;
    Ok(SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(Arc::new(runtime))
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_physical_optimizer_rule(Arc::new(ViewsStayWhole))
        .with_physical_optimizer_rule(Arc::new(Bounded { limit: time_limit }))
        .with_expr_planners(functions::expr_planners())
        .with_scalar_functions(functions::scalar_functions())
        .with_aggregate_functions(functions::aggregate_functions())
        .with_window_functions(functions::window_functions())
        .build())
}
