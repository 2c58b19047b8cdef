//! The monthly report (汇总表) over HTTP, as JSON, CSV or XLSX.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tongban_policy::org::UserRole;

use crate::error::{ApiError, ApiQuery};
use crate::report::{Month, MonthlyReport, ReportError};
use crate::state::AppState;
use tongban_platform::Caller;

/// The forms the report is written in.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReportFormat {
    #[default]
    Json,
    /// One table as CSV (UTF-8 with a byte-order mark).
    Csv,
    /// The whole report as an Excel workbook, a sheet per table.
    Xlsx,
}

/// The report's tables.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReportTable {
    #[default]
    ServiceItems,
    Departments,
    Resources,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    /// The month, `YYYY-MM` (Beijing time).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$")]
    month: String,
    /// json (default), csv or xlsx.
    format: Option<ReportFormat>,
    /// For CSV, the table: service_items (default), departments or resources.
    table: Option<ReportTable>,
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::InvalidMonth(_) => {
                ApiError::unprocessable("invalid_month", "Invalid month", e.to_string())
            }
            ReportError::Store(e) => e.into(),
            ReportError::Log(e) => ApiError::internal(&e),
        }
    }
}

/// The monthly report (跨省通办数据共享月度汇总表) per service item, per department and per
/// resource: calls, refusals by reason, p95 latency, objections, ratings and overdue demands
/// (operators and platform administrators; a data office's reviewers get what their
/// province's departments took part in).
#[utoipa::path(get, path = "/reports/monthly", tag = "exchange log", security(("bearer" = [])),
    params(ReportQuery),
    responses((status = 200, description = "The report", content(
        (MonthlyReport = "application/json"),
        (String = "text/csv"),
        (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn monthly(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    // Those who oversee the platform read all of it; a data office's reviewers read what
    // their province's departments took part in.
    let user =
        caller.require(&[UserRole::Operator, UserRole::PlatformAdmin, UserRole::DataOfficeReviewer])?;
    let province = if caller.oversees() {
        None
    } else if caller.department().has_role(tongban_policy::org::DepartmentRole::DataOffice)
        && user.roles.contains(&UserRole::DataOfficeReviewer)
    {
        Some(caller.department().province().to_owned())
    } else {
        return Err(ApiError::forbidden("reviewers belong to a data office"));
    };
    let month = Month::parse(&query.month)?;
    let platform = state.platform().clone();
    let report: MonthlyReport = super::exchanges::ask(&state, move |dir| async move {
        crate::report::build(&platform, &dir, month, province.as_deref()).await.map_err(|e| match e {
            ReportError::Log(e) => e,
            other => tongban_exchange::query::QueryError::Encode(other.to_string()),
        })
    })
    .await?;
    let name = format!("tongban-report-{}", report.month);
    Ok(match query.format.unwrap_or_default() {
        ReportFormat::Json => axum::Json(report).into_response(),
        ReportFormat::Csv => {
            let table = query.table.unwrap_or_default() as usize;
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}-{table}.csv\"")),
                ],
                report.csv(table),
            )
                .into_response()
        }
        ReportFormat::Xlsx => {
            let bytes = report.xlsx().map_err(|e| ApiError::internal(&e))?;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned(),
                    ),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.xlsx\"")),
                ],
                bytes,
            )
                .into_response()
        }
    })
}
