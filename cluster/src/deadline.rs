//! A bound on how long an operator of a cluster's task may work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// Its input's batches, until its input has worked for longer than the query time limit,
/// after which it fails; it also spends the task's scheduling budget on every batch, so the
/// task yields regularly.
///
/// A cancelled job's tasks are aborted by the executor, but some of Ballista's operators (its
/// sort shuffle writer) run their input in a task of their own that an abort does not reach,
/// and would work on for nobody until the input ends. Past the time limit the gateway has
/// already answered the call, so nothing is lost by failing: the scheduler's rule puts this
/// above every operator, and the first one polled after the limit ends the work.
#[derive(Debug)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    limit: Duration,
}

impl DeadlineExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, limit: Duration) -> Self {
        DeadlineExec { input, limit }
    }

    /// How long its input may work.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadlineExec: limit={} ms", self.limit.as_millis())
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(DeadlineExec::new(input, self.limit))),
            _ => Err(DataFusionError::Internal("a deadline has one input".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let (started, limit) = (Instant::now(), self.limit);
        let bounded = input.map(move |batch| {
            if started.elapsed() > limit {
                Err(DataFusionError::Execution(format!(
                    "the query worked past its time limit of {} ms",
                    limit.as_millis()
                )))
            } else {
                batch
            }
        });
        Ok(make_cooperative(Box::pin(RecordBatchStreamAdapter::new(schema, bounded))))
    }
}
