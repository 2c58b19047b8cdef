//! The functions a query over views may call, listed here rather than taken from DataFusion's
//! defaults: the defaults follow DataFusion's build features, which any crate in the build can
//! turn on (Ballista asks for all of them), and a new feature must not widen the SQL surface
//! unnoticed. The gateway's sandbox and a cluster's scheduler use the same lists.

use std::sync::Arc;

use datafusion::functions;
use datafusion::logical_expr::planner::ExprPlanner;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};

/// Functions whose output size is set by an argument rather than by the data, so one call
/// could allocate gigabytes outside the memory pool's accounting. They are not offered.
pub const UNBOUNDED_FUNCTIONS: &[&str] = &["repeat", "lpad", "rpad"];

/// Scalar functions: DataFusion's core, date and time, mathematical, regular expression,
/// string and Unicode functions, without [`UNBOUNDED_FUNCTIONS`]. Not offered: digests and
/// encodings (`md5`, `sha256`, `encode`, …, which add nothing a masked value needs and make
/// masked values easier to join against outside lists) and arrays and maps (whose
/// constructors, such as `array_repeat`, size their output by an argument).
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    functions::core::functions()
        .into_iter()
        .chain(functions::datetime::functions())
        .chain(functions::math::functions())
        .chain(functions::regex::functions())
        .chain(functions::string::functions())
        .chain(functions::unicode::functions())
        .filter(|f| !UNBOUNDED_FUNCTIONS.contains(&f.name()))
        .collect()
}

/// Aggregate functions: DataFusion's.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    datafusion::functions_aggregate::all_default_aggregate_functions()
}

/// Window functions: DataFusion's.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    datafusion::functions_window::all_default_window_functions()
}

/// The planners that turn SQL syntax into the functions above (`position(a IN b)`,
/// `extract(…)`, aggregates' and windows' clauses), without the array and field-access syntax.
pub fn expr_planners() -> Vec<Arc<dyn ExprPlanner>> {
    vec![
        Arc::new(functions::core::planner::CoreFunctionPlanner::default()),
        Arc::new(functions::datetime::planner::DatetimeFunctionPlanner),
        Arc::new(functions::unicode::planner::UnicodeFunctionPlanner),
        Arc::new(datafusion::functions_aggregate::planner::AggregateFunctionPlanner),
        Arc::new(datafusion::functions_window::planner::WindowFunctionPlanner),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_encodings_arrays_and_unbounded_padding_are_not_offered() {
        let names: Vec<String> = scalar_functions().iter().map(|f| f.name().to_owned()).collect();
        for offered in ["upper", "substr", "regexp_like", "date_trunc", "abs", "coalesce", "strpos"] {
            assert!(names.iter().any(|n| n == offered), "{offered} is offered");
        }
        for denied in
            ["md5", "sha256", "digest", "encode", "decode", "make_array", "array_repeat", "repeat", "lpad"]
        {
            assert!(!names.iter().any(|n| n == denied), "{denied} is not offered");
        }
    }
}
