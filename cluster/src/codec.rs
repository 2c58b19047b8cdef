//! How views, masks and view boundaries cross the wire between the gateway, the scheduler and
//! the executors.
//!
//! A view travels as its definition (dataset, columns with their masks, row scope) and is
//! rebuilt by the scheduler over the scheduler's own opening of the dataset; nothing else is
//! accepted as a table, so a plan sent to the scheduler can read only views. Once the scheduler
//! has planned a view's scan, the masks travel as the names of their functions and the view's
//! boundary as a node of its own, and each executor rebuilds both from this crate's code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;
use tongban_connectors::view::{mask_function_name, mask_rule_named, mask_udf};
use tongban_connectors::{GrantedView, ViewBoundaryExec, ViewColumn, ViewScope};

use crate::deadline::DeadlineExec;

/// The datasets a scheduler plans over, by name.
pub type Datasets = Arc<BTreeMap<String, Arc<dyn TableProvider>>>;

/// A view as it crosses the wire.
#[derive(Clone, PartialEq, Message)]
struct ViewMessage {
    /// The dataset the view is over.
    #[prost(string, tag = "1")]
    dataset: String,
    #[prost(message, repeated, tag = "2")]
    columns: Vec<ColumnMessage>,
    #[prost(message, optional, tag = "3")]
    scope: Option<ScopeMessage>,
}

#[derive(Clone, PartialEq, Message)]
struct ColumnMessage {
    #[prost(string, tag = "1")]
    name: String,
    /// The name of the function that masks it (`tongban_mask_none` for none).
    #[prost(string, tag = "2")]
    mask: String,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeMessage {
    #[prost(string, tag = "1")]
    column: String,
    #[prost(string, tag = "2")]
    prefix: String,
}

/// A physical node as it crosses the wire: a view boundary, or one of Ballista's own nodes
/// (shuffles), encoded by Ballista's codec.
#[derive(Clone, PartialEq, Message)]
struct PhysicalMessage {
    #[prost(oneof = "PhysicalKind", tags = "1, 2, 3")]
    kind: Option<PhysicalKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum PhysicalKind {
    /// A view's boundary; its one input is the view's scan, masks and scope.
    #[prost(message, tag = "1")]
    ViewBoundary(ViewBoundaryMessage),
    #[prost(bytes, tag = "2")]
    Ballista(Vec<u8>),
    /// A bound on its one input's work time, in milliseconds.
    #[prost(uint64, tag = "3")]
    Deadline(u64),
}

#[derive(Clone, PartialEq, Message)]
struct ViewBoundaryMessage {}

fn refused(what: String) -> DataFusionError {
    DataFusionError::Plan(what)
}

/// The logical codec: tables are views and nothing else.
///
/// The gateway encodes each view of a caller's sandbox under its dataset's name, which is the
/// name the sandbox registers it under. The scheduler decodes a view by rebuilding it over its
/// own opening of that dataset, and refuses a plan naming any other kind of table, a dataset
/// it does not hold, or a view whose columns differ from what the gateway planned with.
#[derive(Debug, Default)]
pub struct ViewLogicalCodec {
    datasets: Datasets,
    ballista: BallistaLogicalExtensionCodec,
}

impl ViewLogicalCodec {
    /// A codec that decodes views over `datasets` (the scheduler's); the gateway's codec only
    /// encodes and holds none.
    pub fn new(datasets: Datasets) -> Self {
        ViewLogicalCodec { datasets, ballista: BallistaLogicalExtensionCodec::default() }
    }
}

impl LogicalExtensionCodec for ViewLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let message =
            ViewMessage::decode(buf).map_err(|e| refused(format!("table {table_ref} is not a view: {e}")))?;
        let dataset = self
            .datasets
            .get(&message.dataset)
            .ok_or_else(|| refused(format!("this cluster holds no dataset {}", message.dataset)))?;
        let mut columns = Vec::with_capacity(message.columns.len());
        for column in message.columns {
            let mask = mask_rule_named(&column.mask)
                .ok_or_else(|| refused(format!("no mask is named {}", column.mask)))?;
            columns.push(ViewColumn { name: column.name, mask });
        }
        let scope = message.scope.map(|s| ViewScope { column: s.column, prefix: s.prefix });
        let view = GrantedView::try_new(Arc::clone(dataset), &columns, scope.as_ref())
            .map_err(|e| refused(format!("view of {}: {e}", message.dataset)))?;
        // The gateway planned with its own opening of the dataset: a cluster whose copy has
        // other columns or types would answer something other than what was planned.
        if view.schema().fields() != schema.fields() {
            return Err(refused(format!(
                "the cluster's dataset {} does not have the columns the gateway planned with",
                message.dataset
            )));
        }
        Ok(Arc::new(view))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let view = node.downcast_ref::<GrantedView>().ok_or_else(|| {
            refused(format!("table {table_ref} is not a view; only views run on the cluster"))
        })?;
        let message = ViewMessage {
            dataset: table_ref.table().to_owned(),
            columns: view
                .columns()
                .into_iter()
                .map(|c| ColumnMessage { name: c.name, mask: mask_function_name(c.mask).to_owned() })
                .collect(),
            scope: view.scope().map(|s| ScopeMessage { column: s.column, prefix: s.prefix }),
        };
        message.encode(buf).map_err(|e| DataFusionError::Internal(e.to_string()))
    }
}

/// The physical codec: view boundaries and masks, and Ballista's own nodes.
#[derive(Debug, Default)]
pub struct ViewPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for ViewPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let message = PhysicalMessage::decode(buf)
            .map_err(|e| DataFusionError::Internal(format!("physical node: {e}")))?;
        match message.kind {
            Some(PhysicalKind::ViewBoundary(_)) => match inputs {
                [input] => Ok(Arc::new(ViewBoundaryExec::new(Arc::clone(input)))),
                _ => Err(DataFusionError::Internal("a view boundary has one input".into())),
            },
            Some(PhysicalKind::Deadline(millis)) => match inputs {
                [input] => Ok(Arc::new(DeadlineExec::new(Arc::clone(input), Duration::from_millis(millis)))),
                _ => Err(DataFusionError::Internal("a deadline has one input".into())),
            },
            Some(PhysicalKind::Ballista(inner)) => self.ballista.try_decode(&inner, inputs, ctx, converter),
            None => Err(DataFusionError::Internal("an empty physical node".into())),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let kind = if node.downcast_ref::<ViewBoundaryExec>().is_some() {
            PhysicalKind::ViewBoundary(ViewBoundaryMessage {})
        } else if let Some(deadline) = node.downcast_ref::<DeadlineExec>() {
            PhysicalKind::Deadline(u64::try_from(deadline.limit().as_millis()).unwrap_or(u64::MAX))
        } else {
            let mut inner = Vec::new();
            self.ballista.try_encode(node, &mut inner, converter)?;
            PhysicalKind::Ballista(inner)
        };
        PhysicalMessage { kind: Some(kind) }.encode(buf).map_err(|e| DataFusionError::Internal(e.to_string()))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match mask_rule_named(name) {
            Some(rule) => Ok(Arc::new(mask_udf(rule))),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        // A mask travels by its name alone, but with a non-empty definition, so that the
        // executor asks this codec for it rather than its function registry, which does not
        // hold it.
        if mask_rule_named(node.name()).is_some() {
            buf.extend_from_slice(node.name().as_bytes());
            return Ok(());
        }
        self.ballista.try_encode_udf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };
    use tongban_policy::catalog::MaskRule;

    fn people() -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id_number", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("division_code", DataType::Utf8, true),
            Field::new("ethnicity", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![
                    "41150219420221001X",
                    "411502199001011234",
                    "440106198505050011",
                ])),
                Arc::new(StringArray::from(vec![Some("张晨泽"), Some("李四"), Some("王五")])),
                Arc::new(StringArray::from(vec![Some("411502"), Some("411502"), Some("440106")])),
                Arc::new(StringArray::from(vec![Some("汉"), Some("回"), Some("汉")])),
            ],
        )
        .expect("batch");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))
    }

    fn view() -> GrantedView {
        GrantedView::try_new(
            people(),
            &[
                ViewColumn { name: "id_number".into(), mask: MaskRule::IdNumber },
                ViewColumn { name: "name".into(), mask: MaskRule::Name },
                ViewColumn { name: "division_code".into(), mask: MaskRule::None },
            ],
            Some(&ViewScope { column: "division_code".into(), prefix: "4115".into() }),
        )
        .expect("view")
    }

    fn datasets() -> Datasets {
        Arc::new(BTreeMap::from([("household".to_owned(), people())]))
    }

    async fn answer(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> String {
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await.expect("run");
        pretty_format_batches(&batches).expect("format").to_string()
    }

    /// A query over a view, sent as a logical plan the way the gateway sends it to the
    /// scheduler, planned there over the scheduler's own dataset, sent on as a physical plan
    /// the way the scheduler sends tasks to executors, and run there: the answer is the one
    /// the gateway's own engine gives, masked and in scope.
    #[tokio::test]
    async fn a_view_crosses_both_wires_with_its_masks_scope_and_boundary() {
        let gateway = SessionContext::new();
        gateway.register_table("household", Arc::new(view())).expect("register");
        let query = "SELECT id_number, name FROM household WHERE name LIKE '张%' ORDER BY id_number";
        let frame = gateway.sql(query).await.expect("plan");
        let local = answer(&gateway, frame.clone().create_physical_plan().await.expect("physical")).await;
        assert!(local.contains("411502********001X") && local.contains("张**"), "{local}");

        let logical = frame.into_optimized_plan().expect("optimized");
        let sent = logical_plan_to_bytes_with_extension_codec(&logical, &ViewLogicalCodec::default())
            .expect("encode");
        let scheduler = SessionContext::new();
        let received = logical_plan_from_bytes_with_extension_codec(
            &sent,
            &scheduler.task_ctx(),
            &ViewLogicalCodec::new(datasets()),
        )
        .expect("decode");
        let planned = scheduler.state().create_physical_plan(&received).await.expect("physical");
        assert!(
            datafusion::physical_plan::displayable(planned.as_ref())
                .indent(true)
                .to_string()
                .contains("ViewBoundaryExec"),
            "the scheduler's plan keeps the view's boundary"
        );
        let task = physical_plan_to_bytes_with_extension_codec(planned, &ViewPhysicalCodec::default())
            .expect("encode");
        let executor = SessionContext::new();
        let running = physical_plan_from_bytes_with_extension_codec(
            &task,
            &executor.task_ctx(),
            &ViewPhysicalCodec::default(),
        )
        .expect("decode");
        assert_eq!(answer(&executor, running).await, local);
    }

    #[test]
    fn only_views_over_held_datasets_with_the_planned_columns_are_accepted() {
        let codec = ViewLogicalCodec::new(datasets());
        let table = TableReference::bare("household");
        let mut buf = Vec::new();
        let refused = codec.try_encode_table_provider(&table, people(), &mut buf).expect_err("a raw table");
        assert!(refused.to_string().contains("not a view"), "{refused}");

        codec.try_encode_table_provider(&table, Arc::new(view()), &mut buf).expect("a view");
        let ctx = SessionContext::new().task_ctx();
        let decoded = codec.try_decode_table_provider(&buf, &table, view().schema(), &ctx).expect("decoded");
        let decoded = decoded.downcast_ref::<GrantedView>().expect("a view");
        assert_eq!((decoded.columns(), decoded.scope()), (view().columns(), view().scope()));

        let elsewhere = ViewLogicalCodec::new(Arc::new(BTreeMap::new()));
        let refused =
            elsewhere.try_decode_table_provider(&buf, &table, view().schema(), &ctx).expect_err("no dataset");
        assert!(refused.to_string().contains("no dataset household"), "{refused}");
        let other_schema = Arc::new(Schema::new(vec![Field::new("id_number", DataType::Utf8, false)]));
        let refused =
            codec.try_decode_table_provider(&buf, &table, other_schema, &ctx).expect_err("other columns");
        assert!(refused.to_string().contains("does not have the columns"), "{refused}");
        let refused =
            codec.try_decode_table_provider(b"\xff\xff", &table, view().schema(), &ctx).expect_err("junk");
        assert!(refused.to_string().contains("not a view"), "{refused}");
    }

    #[test]
    fn masks_travel_by_name_and_other_functions_are_left_to_the_registry() {
        let codec = ViewPhysicalCodec::default();
        let mut buf = Vec::new();
        codec.try_encode_udf(&mask_udf(MaskRule::Phone), &mut buf).expect("encode");
        assert!(!buf.is_empty(), "a mask has a definition, so the executor asks the codec for it");
        let decoded = codec.try_decode_udf("tongban_mask_phone", &buf).expect("decode");
        assert_eq!(decoded.name(), "tongban_mask_phone");
        let upper = datafusion::functions::string::upper();
        let mut buf = Vec::new();
        codec.try_encode_udf(&upper, &mut buf).expect("encode");
        assert!(buf.is_empty(), "a registry function travels by name alone");
    }
}
