//! The gateway's side: a sandbox session whose queries run on the cluster.

use std::sync::Arc;

use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::SessionConfigExt;
use ballista_core::planner::BallistaQueryPlanner;
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;

use crate::codec::{ViewLogicalCodec, ViewPhysicalCodec};

/// `sandbox` made to run its queries on the scheduler at `scheduler_url`
/// (`http://host:port`). Its catalog, functions and limits stay as they are: the views are
/// planned here as before, and the plan sent to the cluster names only views.
pub fn on_cluster(sandbox: SessionState, scheduler_url: &str) -> SessionState {
    let logical: Arc<dyn LogicalExtensionCodec> = Arc::new(ViewLogicalCodec::default());
    let config = sandbox
        .config()
        .clone()
        .upgrade_for_ballista()
        // The sandbox's catalog is kept as it is, not replaced by a new default one.
        .with_create_default_catalog_and_schema(false)
        .with_ballista_logical_extension_codec(Arc::clone(&logical))
        .with_ballista_physical_extension_codec(Arc::new(ViewPhysicalCodec::default()))
        // The client learns the job's id as soon as the scheduler accepts it (rather than with
        // the job's first status change, which for a long job comes only when it ends), so a
        // call that ends early can cancel it ([`JobGuard`]).
        .set_bool(ballista_core::config::BALLISTA_CLIENT_PULL, true);
    let planner = BallistaQueryPlanner::<LogicalPlanNode>::with_extension(
        scheduler_url.to_owned(),
        config.ballista_config(),
        logical,
    );
    let rules = ballista_core::optimizer::with_ballista_optimizer_rules(sandbox.optimizers());
    SessionStateBuilder::new_from_existing(sandbox)
        .with_config(config)
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(planner))
        .build()
}

/// Cancels the cluster's job for a query whose answer is no longer wanted (its time ran out
/// or its caller hung up) when dropped before [`JobGuard::finished`]: the scheduler then
/// stops the job's tasks on every executor, rather than letting them run on for nobody.
#[derive(Debug)]
pub struct JobGuard {
    scheduler_url: String,
    plan: Option<Arc<DistributedQueryExec<LogicalPlanNode>>>,
}

impl JobGuard {
    /// A guard over `plan`, the physical plan of a query on the cluster; a plan that is not a
    /// cluster's (one the planner ran locally) needs none.
    pub fn new(scheduler_url: &str, plan: &Arc<dyn ExecutionPlan>) -> JobGuard {
        let plan =
            plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>().map(|exec| Arc::new(exec.clone()));
        JobGuard { scheduler_url: scheduler_url.to_owned(), plan }
    }

    /// The query's answer is complete: nothing to cancel.
    pub fn finished(mut self) {
        self.plan = None;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let Some(job_id) = self.plan.take().and_then(|plan| plan.job_id()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let url = self.scheduler_url.clone();
        runtime.spawn(async move {
            let job_id = job_id.to_string();
            match SchedulerGrpcClient::connect(url).await {
                Ok(mut scheduler) => {
                    if let Err(error) = scheduler.cancel_job(CancelJobParams { job_id: job_id.clone() }).await
                    {
                        tracing::warn!(%job_id, %error, "the cluster did not cancel an abandoned query");
                    }
                }
                Err(error) => {
                    tracing::warn!(%job_id, %error, "the scheduler could not be reached to cancel a query")
                }
            }
        });
    }
}
