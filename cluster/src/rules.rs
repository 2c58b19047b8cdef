//! The scheduler's last physical optimizer rules: views stay whole within one stage, and every
//! operator yields and stops at the query time limit.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use tongban_connectors::ViewBoundaryExec;

use crate::deadline::DeadlineExec;

/// Refuses a plan in which a view's scan, scope and masks would not run in one task.
///
/// Ballista cuts a plan into stages at exchanges, and a stage writes its output to the
/// executor's disk for the next one to fetch. Cut below a view's masks, that output would be
/// raw rows, out-of-scope ones included, on disk and on the wire between executors. A view's
/// plan holds no exchange that Ballista cuts at (round-robin repartitions, which the optimizer
/// may add for parallelism, Ballista removes rather than cuts), so this never refuses a plan
/// today; it is here so that a change in either planner cannot make that untrue unnoticed.
#[derive(Debug, Default)]
pub(crate) struct ViewsStayWhole;

impl ViewsStayWhole {
    /// Whether `node` may sit between a view's boundary and its dataset's scan.
    fn allowed_inside_a_view(node: &Arc<dyn ExecutionPlan>) -> bool {
        node.is::<DataSourceExec>()
            || node.is::<FilterExec>()
            || node.is::<ProjectionExec>()
            || node.is::<CooperativeExec>()
            || node.is::<DeadlineExec>()
            || node
                .downcast_ref::<RepartitionExec>()
                .is_some_and(|r| matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)))
    }
}

impl PhysicalOptimizerRule for ViewsStayWhole {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut refused = None;
        plan.apply(|node| {
            if node.is::<ViewBoundaryExec>() {
                for inside in node.children() {
                    inside.apply(|below| {
                        if !Self::allowed_inside_a_view(below) {
                            refused = Some(below.name().to_owned());
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })?;
                }
            }
            Ok(if refused.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        match refused {
            Some(name) => Err(DataFusionError::Plan(format!(
                "a view's plan holds {name}, which the cluster could run apart from the view's masks"
            ))),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "tongban_views_stay_whole"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Puts a [`DeadlineExec`] above every operator but exchanges: each spends the task's
/// scheduling budget on every batch it emits, as the gateway's own engine does (`data/sql.rs`,
/// `yielding`), so an aborted task stops at its next batch, and each stops its input once it has
/// worked past the query time limit, so that work Ballista runs apart from the task stops too.
/// Exchanges are left bare, because Ballista recognises them by type where it cuts stages and
/// replaces them with shuffles.
#[derive(Debug)]
pub(crate) struct Bounded {
    pub(crate) limit: Duration,
}

impl PhysicalOptimizerRule for Bounded {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let exchange = node.is::<RepartitionExec>()
                || node.is::<CoalescePartitionsExec>()
                || node.is::<SortPreservingMergeExec>();
            if node.children().is_empty() || exchange || node.is::<DeadlineExec>() {
                Ok(Transformed::no(node))
            } else {
                Ok(Transformed::yes(Arc::new(DeadlineExec::new(node, self.limit)) as Arc<dyn ExecutionPlan>))
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "tongban_bounded"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
