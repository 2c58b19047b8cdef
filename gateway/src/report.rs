//! The monthly report (《跨省通办数据共享月度汇总表》): per service item, per department and per
//! resource, the month's calls, refusals by reason, 95th-percentile latency, objections,
//! ratings and overdue demands, from the exchange log and the store. The API, the console and
//! `tongban report` all build it here and write it as JSON, CSV or XLSX.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use tongban_exchange::query::{self, Bucket, GroupBy, QueryError, Scope};
use tongban_platform::Platform;
use tongban_platform::store::{DemandFilter, PageRequest, StoreError};
use tongban_policy::feedback::{Objection, ObjectionState, Rating};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("month {0:?} is not a month of the form YYYY-MM")]
    InvalidMonth(String),
    #[error("reading the exchange log: {0}")]
    Log(#[from] QueryError),
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

/// A calendar month in Beijing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub first: NaiveDate,
    /// The first day of the next month.
    pub next: NaiveDate,
}

impl Month {
    /// Reads `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Month, ReportError> {
        let invalid = || ReportError::InvalidMonth(text.to_owned());
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let (year, month): (i32, u32) =
            (year.parse().map_err(|_| invalid())?, month.parse().map_err(|_| invalid())?);
        let first = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(invalid)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        }
        .ok_or_else(invalid)?;
        Ok(Month { first, next })
    }

    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.first.year(), self.first.month())
    }

    /// Midnight in Beijing at the start of `day`, as an instant.
    fn instant(day: NaiveDate) -> DateTime<Utc> {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        (midnight - chrono::Duration::hours(8)).and_utc()
    }
}

/// One row of the service-item or department table.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReportRow {
    /// The service item's code or the department's credit code.
    pub code: String,
    pub name: String,
    pub calls: u64,
    pub succeeded: u64,
    /// Refused calls (4xx, rate limits included).
    pub refused: u64,
    pub failed: u64,
    /// Refused and failed calls by reason: the policy's reason codes, else the problem code.
    pub refusals_by_reason: BTreeMap<String, u64>,
    pub p95_ms: Option<f64>,
    /// Objections filed in the month (for a department: filed by it or on its resources).
    pub objections: u64,
    /// Of those, still open at the end of the month or now, whichever is earlier.
    pub objections_open: u64,
    pub ratings: u64,
    pub mean_score: Option<f64>,
    /// Ratings of 2 or less.
    pub poor_ratings: u64,
    /// Demands whose review stage passed its deadline in the month.
    pub overdue_demands: u64,
}

/// One resource's quality indicators for the month.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ResourceRow {
    pub code: String,
    pub name: String,
    pub supplier: String,
    pub calls: u64,
    pub objections: u64,
    pub corrected: u64,
    pub confirmed_correct: u64,
    pub rejected: u64,
    pub open: u64,
    /// Open past their deadline at the end of the month (or now).
    pub overdue: u64,
    /// Mean working days from filing to the supplier's answer, over the answered ones.
    pub mean_resolution_days: Option<f64>,
    pub ratings: u64,
    pub mean_score: Option<f64>,
    pub poor_ratings: u64,
}

/// The monthly report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonthlyReport {
    /// `YYYY-MM`.
    pub month: String,
    /// The province (two-digit code) a data office's report is limited to; absent for the
    /// whole platform's.
    pub province: Option<String>,
    /// RFC 3339, Beijing time.
    pub generated_at: String,
    pub service_items: Vec<ReportRow>,
    pub departments: Vec<ReportRow>,
    pub resources: Vec<ResourceRow>,
}

fn number(row: &serde_json::Value, name: &str) -> u64 {
    row[name].as_u64().unwrap_or(0)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| (sum / f64::from(n) * 100.0).round() / 100.0)
}

/// Builds the report for `month` from the log `log_dir` (every replica's, when shipped) and the platform's store: of the
/// whole platform, or, with `province` (a two-digit code), of what a data office of that
/// province oversees: calls and feedback where either party is seated there, its
/// departments, and the resources its suppliers share.
pub async fn build(
    platform: &Platform,
    log_dir: &query::LogView,
    month: Month,
    province: Option<&str>,
) -> Result<MonthlyReport, ReportError> {
    let now = platform.now();
    // What was open "at the end of the month" is judged now for the current month.
    let judged_on = (month.next - chrono::Duration::days(1)).min(now.date());
    let scope = Scope {
        from: Some(Month::instant(month.first)),
        to: Some(Month::instant(month.next)),
        province: province.map(str::to_owned),
        ..Scope::default()
    };
    let calls_by_item = query::stats(log_dir, &scope, Bucket::All, GroupBy::ServiceItem).await?;
    let calls_by_department = query::stats(log_dir, &scope, Bucket::All, GroupBy::Department).await?;
    let calls_by_resource = query::stats(log_dir, &scope, Bucket::All, GroupBy::Resource).await?;
    let reasons_by_item = query::refusal_reasons(log_dir, &scope, GroupBy::ServiceItem).await?;
    let reasons_by_department = query::refusal_reasons(log_dir, &scope, GroupBy::Department).await?;

    let store = &platform.store;
    let departments_all = store.departments().await?;
    let seated: BTreeMap<String, String> =
        departments_all.iter().map(|d| (d.code.clone(), d.province().to_owned())).collect();
    // Whether a department is one the report covers; every department without a province.
    let covers = |code: &str| province.is_none_or(|p| seated.get(code).is_some_and(|s| s == p));
    let objections: Vec<Objection> = store
        .objections_filed_between(month.first, month.next)
        .await?
        .into_iter()
        .filter(|o| covers(&o.consumer_department) || covers(&o.supplier))
        .collect();
    let ratings: Vec<Rating> = store
        .ratings_of_period(&month.label())
        .await?
        .into_iter()
        .filter(|r| covers(&r.consumer_department) || covers(&r.supplier))
        .collect();
    let overdue: Vec<(String, String, String)> = overdue_demands(platform, month, judged_on)
        .await?
        .into_iter()
        .filter(|(_, applicant, supplier)| covers(applicant) || covers(supplier))
        .collect();
    let item_names: BTreeMap<String, String> =
        store.service_items().await?.into_iter().map(|i| (i.code, i.name)).collect();
    let department_names: BTreeMap<String, String> =
        departments_all.iter().map(|d| (d.code.clone(), d.name.clone())).collect();
    let resources: Vec<tongban_policy::catalog::Resource> =
        store.resources(None).await?.into_iter().filter(|r| covers(&r.supplier)).collect();

    let mut items: BTreeMap<String, ReportRow> = BTreeMap::new();
    let mut departments: BTreeMap<String, ReportRow> = BTreeMap::new();
    for (rows, key, table) in
        [(&calls_by_item, "service_item", &mut items), (&calls_by_department, "department", &mut departments)]
    {
        for row in rows {
            let Some(code) = row[key].as_str() else { continue };
            let entry = table.entry(code.to_owned()).or_default();
            entry.calls = number(row, "calls");
            entry.succeeded = number(row, "succeeded");
            entry.refused = number(row, "refused") + number(row, "rate_limited");
            entry.failed = number(row, "failed");
            entry.p95_ms = row["p95_ms"].as_f64().map(|ms| (ms * 10.0).round() / 10.0);
        }
    }
    for (rows, key, table) in [
        (&reasons_by_item, "service_item", &mut items),
        (&reasons_by_department, "department", &mut departments),
    ] {
        for row in rows {
            let (Some(code), Some(reason)) = (row[key].as_str(), row["reason"].as_str()) else { continue };
            table
                .entry(code.to_owned())
                .or_default()
                .refusals_by_reason
                .insert(reason.to_owned(), number(row, "calls"));
        }
    }
    let still_open = |o: &Objection| {
        o.state == ObjectionState::Open || o.answered_at.is_some_and(|at| at.date() > judged_on)
    };
    for objection in &objections {
        let open = u64::from(still_open(objection));
        let keys = [
            objection.service_item.as_ref().map(|s| (&mut items, s.clone())),
            Some((&mut departments, objection.consumer_department.clone())),
        ];
        for (table, code) in keys.into_iter().flatten() {
            let entry = table.entry(code).or_default();
            entry.objections += 1;
            entry.objections_open += open;
        }
        if objection.supplier != objection.consumer_department {
            let entry = departments.entry(objection.supplier.clone()).or_default();
            entry.objections += 1;
            entry.objections_open += open;
        }
    }
    let mut scores: BTreeMap<(u8, String), Vec<f64>> = BTreeMap::new();
    for rating in &ratings {
        for (table_index, code) in [
            (0, rating.service_item.clone()),
            (1, rating.consumer_department.clone()),
            (1, rating.supplier.clone()),
        ] {
            scores.entry((table_index, code)).or_default().push(f64::from(rating.score));
        }
    }
    for ((table_index, code), values) in scores {
        let table = if table_index == 0 { &mut items } else { &mut departments };
        let entry = table.entry(code).or_default();
        entry.ratings = values.len() as u64;
        entry.poor_ratings =
            values.iter().filter(|s| **s <= f64::from(tongban_policy::feedback::POOR_SCORE)).count() as u64;
        entry.mean_score = mean(values.into_iter());
    }
    for (service_item, applicant, supplier) in &overdue {
        items.entry(service_item.clone()).or_default().overdue_demands += 1;
        departments.entry(applicant.clone()).or_default().overdue_demands += 1;
        if supplier != applicant {
            departments.entry(supplier.clone()).or_default().overdue_demands += 1;
        }
    }
    for (code, row) in &mut items {
        code.clone_into(&mut row.code);
        row.name = item_names.get(code).cloned().unwrap_or_default();
    }
    for (code, row) in &mut departments {
        code.clone_into(&mut row.code);
        row.name = department_names.get(code).cloned().unwrap_or_default();
    }
    // A data office's report lists its own province's departments, not their counterparts.
    departments.retain(|code, _| covers(code));

    let calls_of: BTreeMap<&str, u64> = calls_by_resource
        .iter()
        .filter_map(|r| Some((r["resource"].as_str()?, number(r, "calls"))))
        .collect();
    let resources = resources
        .iter()
        .map(|resource| resource_row(resource, &calls_of, &objections, &ratings, judged_on, platform))
        .collect();
    Ok(MonthlyReport {
        month: month.label(),
        province: province.map(str::to_owned),
        generated_at: tongban_policy::time::to_rfc3339(now),
        service_items: items.into_values().collect(),
        departments: departments.into_values().collect(),
        resources,
    })
}

fn resource_row(
    resource: &tongban_policy::catalog::Resource,
    calls: &BTreeMap<&str, u64>,
    objections: &[Objection],
    ratings: &[Rating],
    judged_on: NaiveDate,
    platform: &Platform,
) -> ResourceRow {
    let mine: Vec<&Objection> = objections.iter().filter(|o| o.resource == resource.code).collect();
    let answered_by_then = |o: &&&Objection| o.answered_at.is_some_and(|at| at.date() <= judged_on);
    let count = |state: ObjectionState| {
        mine.iter().filter(answered_by_then).filter(|o| o.state == state).count() as u64
    };
    let open: Vec<&&Objection> = mine.iter().filter(|o| !answered_by_then(o)).collect();
    let resolution = mine.iter().filter(answered_by_then).filter_map(|o| {
        let answered = o.answered_at?.date();
        Some(f64::from(platform.calendar.working_days_between(o.filed_at.date(), answered)))
    });
    let rated: Vec<f64> =
        ratings.iter().filter(|r| r.resource == resource.code).map(|r| f64::from(r.score)).collect();
    ResourceRow {
        code: resource.code.clone(),
        name: resource.name.clone(),
        supplier: resource.supplier.clone(),
        calls: calls.get(resource.code.as_str()).copied().unwrap_or(0),
        objections: mine.len() as u64,
        corrected: count(ObjectionState::Corrected),
        confirmed_correct: count(ObjectionState::ConfirmedCorrect),
        rejected: count(ObjectionState::Rejected),
        open: open.len() as u64,
        overdue: open.iter().filter(|o| judged_on > o.deadline).count() as u64,
        mean_resolution_days: mean(resolution),
        ratings: rated.len() as u64,
        poor_ratings: rated.iter().filter(|s| **s <= f64::from(tongban_policy::feedback::POOR_SCORE)).count()
            as u64,
        mean_score: mean(rated.into_iter()),
    }
}

/// Demands whose review stage passed its deadline within the month, as (service item,
/// applicant, supplier): stages still running past a deadline that fell in the month, and
/// stages ended late whose deadline fell in it.
async fn overdue_demands(
    platform: &Platform,
    month: Month,
    judged_on: NaiveDate,
) -> Result<Vec<(String, String, String)>, ReportError> {
    let in_month = |day: NaiveDate| day >= month.first && day < month.next;
    let mut found = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let listed = platform.store.list_demands(&DemandFilter::default(), &page).await?;
        for demand in &listed.items {
            let workflow = &demand.filing.workflow;
            let running_late = workflow.state.running_stage().is_some()
                && workflow.clock.is_some_and(|c| in_month(c.deadline) && judged_on > c.deadline);
            let ended_late = workflow.history.iter().any(|t| {
                t.stage_deadline.is_some_and(|deadline| in_month(deadline) && t.met_deadline() == Some(false))
            });
            if running_late || ended_late {
                let filing = &demand.filing;
                found.push((
                    filing.service_item.clone(),
                    filing.applicant_department.clone(),
                    filing.supplier_department.clone(),
                ));
            }
        }
        match listed.next {
            Some(next) => page.after = Some(next),
            None => return Ok(found),
        }
    }
}

/// The report's tables as their sheet names and header rows, in Chinese, with each row's
/// cells; the CSV and XLSX writers both read it.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// A cell: text or a number (written as a number, so a spreadsheet can sum it).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Number(f64),
    Empty,
}

fn reasons_text(reasons: &BTreeMap<String, u64>) -> String {
    reasons.iter().map(|(reason, n)| format!("{reason}:{n}")).collect::<Vec<_>>().join("; ")
}

#[allow(clippy::cast_precision_loss)]
fn count(n: u64) -> Cell {
    Cell::Number(n as f64)
}

fn optional(value: Option<f64>) -> Cell {
    value.map_or(Cell::Empty, Cell::Number)
}

fn row_cells(row: &ReportRow) -> Vec<Cell> {
    vec![
        Cell::Text(row.code.clone()),
        Cell::Text(row.name.clone()),
        count(row.calls),
        count(row.succeeded),
        count(row.refused),
        count(row.failed),
        Cell::Text(reasons_text(&row.refusals_by_reason)),
        optional(row.p95_ms),
        count(row.objections),
        count(row.objections_open),
        count(row.ratings),
        optional(row.mean_score),
        count(row.poor_ratings),
        count(row.overdue_demands),
    ]
}

const ROW_HEADERS: [&str; 14] = [
    "编码",
    "名称",
    "调用次数",
    "成功",
    "拒绝",
    "失败",
    "拒绝原因",
    "P95时延(毫秒)",
    "纠错",
    "未办结纠错",
    "评价",
    "平均评分",
    "差评",
    "超期需求",
];

impl MonthlyReport {
    /// The province's name and a space, for a data office's report; empty for the platform's.
    fn province_name(&self) -> String {
        self.province
            .as_ref()
            .and_then(|p| tongban_policy::division::find(&format!("{p}0000")))
            .map(|d| format!("{} ", d.name))
            .unwrap_or_default()
    }

    /// The report's three tables: per service item, per department, per resource.
    pub fn tables(&self) -> Vec<Table> {
        let resource_headers = vec![
            "资源编码",
            "资源名称",
            "提供部门",
            "调用次数",
            "纠错",
            "已更正",
            "确认无误",
            "不予采纳",
            "未办结",
            "超期",
            "平均办结工作日",
            "评价",
            "平均评分",
            "差评",
        ];
        vec![
            Table {
                name: "按事项",
                headers: ROW_HEADERS.to_vec(),
                rows: self.service_items.iter().map(row_cells).collect(),
            },
            Table {
                name: "按部门",
                headers: ROW_HEADERS.to_vec(),
                rows: self.departments.iter().map(row_cells).collect(),
            },
            Table {
                name: "资源质量",
                headers: resource_headers,
                rows: self
                    .resources
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::Text(r.code.clone()),
                            Cell::Text(r.name.clone()),
                            Cell::Text(r.supplier.clone()),
                            count(r.calls),
                            count(r.objections),
                            count(r.corrected),
                            count(r.confirmed_correct),
                            count(r.rejected),
                            count(r.open),
                            count(r.overdue),
                            optional(r.mean_resolution_days),
                            count(r.ratings),
                            optional(r.mean_score),
                            count(r.poor_ratings),
                        ]
                    })
                    .collect(),
            },
        ]
    }

    /// One table as CSV (UTF-8 with a byte-order mark, for spreadsheet programs).
    pub fn csv(&self, table: usize) -> String {
        let tables = self.tables();
        let Some(table) = tables.get(table) else { return String::new() };
        let mut writer = csv::Writer::from_writer(Vec::new());
        // Writing to memory cannot fail.
        let _ = writer.write_record(&table.headers);
        for row in &table.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Cell::Text(text) => text.clone(),
                    Cell::Number(n) => n.to_string(),
                    Cell::Empty => String::new(),
                })
                .collect();
            let _ = writer.write_record(&cells);
        }
        let bytes = writer.into_inner().unwrap_or_default();
        format!("\u{feff}{}", String::from_utf8_lossy(&bytes))
    }

    /// The whole report as an XLSX workbook: a sheet per table, each headed by the report's
    /// title and month.
    pub fn xlsx(&self) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
        use rust_xlsxwriter::{Format, Workbook};
        let mut workbook = Workbook::new();
        let bold = Format::new().set_bold();
        for table in self.tables() {
            let sheet = workbook.add_worksheet();
            sheet.set_name(table.name)?;
            sheet.write_string_with_format(
                0,
                0,
                format!("跨省通办数据共享月度汇总表（{}{}）", self.province_name(), self.month),
                &bold,
            )?;
            sheet.write_string(1, 0, format!("生成时间：{}", self.generated_at))?;
            for (column, header) in (0u16..).zip(&table.headers) {
                sheet.write_string_with_format(3, column, *header, &bold)?;
                sheet.set_column_width(column, if column < 3 { 24 } else { 12 })?;
            }
            for (row, cells) in (4u32..).zip(&table.rows) {
                for (column, cell) in (0u16..).zip(cells) {
                    match cell {
                        Cell::Text(text) => {
                            sheet.write_string(row, column, text)?;
                        }
                        Cell::Number(n) => {
                            sheet.write_number(row, column, *n)?;
                        }
                        Cell::Empty => {}
                    }
                }
            }
        }
        workbook.save_to_buffer()
    }
}
