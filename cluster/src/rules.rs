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

/// Whether Ballista may cut a stage at `node`: it finds exchanges by type and replaces them
/// with shuffles (a round-robin repartition it removes instead).
fn is_exchange(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<RepartitionExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<SortPreservingMergeExec>()
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
            if node.children().is_empty() || is_exchange(&node) || node.is::<DeadlineExec>() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::memory::MemorySourceConfig;

    /// A data source of two empty partitions.
    fn scan() -> Arc<dyn ExecutionPlan> {
        MemorySourceConfig::try_new_exec(&[vec![], vec![]], Arc::new(Schema::empty()), None).expect("source")
    }

    #[test]
    fn a_view_with_an_exchange_below_its_boundary_is_refused_and_one_without_is_kept() {
        let config = ConfigOptions::default();
        let whole: Arc<dyn ExecutionPlan> = Arc::new(ViewBoundaryExec::new(Arc::new(
            RepartitionExec::try_new(scan(), Partitioning::RoundRobinBatch(4)).expect("repartition"),
        )));
        assert!(ViewsStayWhole.optimize(Arc::clone(&whole), &config).is_ok());
        // A view over a data source whose rows are gathered from several partitions: the
        // gathering is a stage boundary, below the masks.
        let cut: Arc<dyn ExecutionPlan> =
            Arc::new(ViewBoundaryExec::new(Arc::new(CoalescePartitionsExec::new(scan()))));
        let refused = ViewsStayWhole.optimize(cut, &config).expect_err("a cut view");
        assert!(refused.to_string().contains("CoalescePartitionsExec"), "{refused}");
        // Above the boundary, exchanges are the query's own.
        let above: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(whole));
        assert!(ViewsStayWhole.optimize(above, &config).is_ok());
    }

    #[test]
    fn every_operator_but_exchanges_and_leaves_gets_a_deadline() {
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(ViewBoundaryExec::new(Arc::new(CoalescePartitionsExec::new(scan()))));
        let bounded = Bounded { limit: Duration::from_secs(3) }
            .optimize(plan, &ConfigOptions::default())
            .expect("rule");
        let shown = datafusion::physical_plan::displayable(bounded.as_ref()).indent(true).to_string();
        let names: Vec<&str> = shown.lines().map(|l| l.trim().split(':').next().unwrap_or("")).collect();
        assert_eq!(
            names,
            ["DeadlineExec", "ViewBoundaryExec", "CoalescePartitionsExec", "DataSourceExec"],
            "{shown}"
        );
    }
}
