//! A supplier's own HTTP API, for the demo, the tests and the benchmarks: the housing fund
//! centre's deposit service (公积金缴存信息查询与缴存证明), answering from the generated
//! housing fund dataset the way such services commonly do.
//!
//! - `GET /deposits/{id_number}`: the account's deposit record in a JSON envelope
//!   (`{"code": 0, "message": "成功", "data": {…}}`), every field of the record, unmasked: it
//!   is the gateway's job to cut it down to what a grant allows.
//! - `GET /certificates/{id_number}`: the deposit certificate (缴存证明) as a PDF document.
//!
//! Both require the gateway's credential (`Authorization: Bearer …`) and let shared caches
//! keep answers for a minute.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use tongban_connectors::{Dataset, DatasetConfig, SourceConfig, open_dataset, session_config};

/// How long a shared cache may keep an answer, unless told otherwise.
pub const CACHE_CONTROL: &str = "max-age=60";

#[derive(Clone)]
struct Supplier {
    dataset: Arc<Dataset>,
    credential: Arc<str>,
    cache_control: Arc<str>,
}

/// Opens the housing fund dataset at `parquet` and returns the service's routes. Calls must
/// carry `Authorization: Bearer {token}`; answers carry `Cache-Control: {cache_control}`.
pub async fn app(parquet: &Path, token: &str, cache_control: &str) -> anyhow::Result<Router> {
    let config = DatasetConfig {
        name: "housing_fund".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Parquet { location: parquet.display().to_string() },
    };
    let ctx = SessionContext::new_with_config(session_config());
    let dataset = open_dataset(&config, Path::new("."), &ctx).await?;
    let supplier = Supplier {
        dataset: Arc::new(dataset),
        credential: format!("Bearer {token}").into(),
        cache_control: cache_control.into(),
    };
    Ok(Router::new()
        .route("/deposits/{id_number}", get(deposit))
        .route("/certificates/{id_number}", get(certificate))
        .with_state(supplier))
}

/// Serves the service on `listener` until the process ends.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    parquet: &Path,
    token: &str,
) -> anyhow::Result<SocketAddr> {
    let address = listener.local_addr()?;
    let app = app(parquet, token, CACHE_CONTROL).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the demo supplier service stopped");
        }
    });
    Ok(address)
}

fn envelope(status: StatusCode, code: u16, message: &str, data: Value) -> Response {
    let body = json!({ "code": code, "message": message, "data": data });
    (status, axum::Json(body)).into_response()
}

impl Supplier {
    fn authorised(&self, headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == self.credential.as_bytes())
    }

    /// The account with this identity number, as JSON members, or the answer to give instead.
    async fn account(
        &self,
        headers: &HeaderMap,
        id_number: &str,
    ) -> Result<serde_json::Map<String, Value>, Response> {
        if !self.authorised(headers) {
            return Err(envelope(StatusCode::UNAUTHORIZED, 401, "未授权的调用方", Value::Null));
        }
        let found = self.dataset.lookup.lookup(id_number, None).await.map_err(|e| {
            tracing::error!(error = %e, "supplier look-up failed");
            envelope(StatusCode::INTERNAL_SERVER_ERROR, 500, "查询失败", Value::Null)
        })?;
        if found.batch.num_rows() == 0 {
            return Err(envelope(StatusCode::NOT_FOUND, 404, "未查询到缴存信息", Value::Null));
        }
        let mut out = Vec::new();
        {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            writer.write(&found.batch.slice(0, 1)).and_then(|()| writer.finish()).map_err(|e| {
                tracing::error!(error = %e, "supplier encoding failed");
                envelope(StatusCode::INTERNAL_SERVER_ERROR, 500, "查询失败", Value::Null)
            })?;
        }
        match serde_json::from_slice::<Value>(&out) {
            Ok(Value::Array(mut rows)) => match rows.pop() {
                Some(Value::Object(account)) => Ok(account),
                _ => Err(envelope(StatusCode::INTERNAL_SERVER_ERROR, 500, "查询失败", Value::Null)),
            },
            _ => Err(envelope(StatusCode::INTERNAL_SERVER_ERROR, 500, "查询失败", Value::Null)),
        }
    }
}

async fn deposit(
    State(supplier): State<Supplier>,
    headers: HeaderMap,
    UrlPath(id_number): UrlPath<String>,
) -> Response {
    let mut response = match supplier.account(&headers, &id_number).await {
        Ok(account) => envelope(StatusCode::OK, 0, "成功", Value::Object(account)),
        Err(response) => response,
    };
    if let Ok(value) = header::HeaderValue::from_str(&supplier.cache_control) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

async fn certificate(
    State(supplier): State<Supplier>,
    headers: HeaderMap,
    UrlPath(id_number): UrlPath<String>,
) -> Response {
    let account = match supplier.account(&headers, &id_number).await {
        Ok(account) => account,
        Err(response) => return response,
    };
    let field = |name: &str| match account.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    // The certificate's text; PDF strings take ASCII, so Chinese field names stay out of it.
    let lines = [
        "Housing Provident Fund Deposit Certificate".to_owned(),
        format!("Account: {}", field("account_number")),
        format!("ID number: {}", field("id_number")),
        format!("Employer credit code: {}", field("employer_credit_code")),
        format!("Status: {}", if field("account_status") == "正常" { "active" } else { "inactive" }),
        format!("Paid through: {}", field("paid_through_month")),
    ];
    let pdf = minimal_pdf(&lines);
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"deposit-certificate.pdf\"".to_owned()),
            (header::CACHE_CONTROL, supplier.cache_control.to_string()),
        ],
        pdf,
    )
        .into_response()
}

/// A one-page PDF with `lines` of text in Helvetica.
fn minimal_pdf(lines: &[String]) -> Vec<u8> {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
    let mut text = String::from("BT /F1 12 Tf 72 760 Td 16 TL\n");
    for line in lines {
        text.push_str(&format!("({}) '\n", escape(line)));
    }
    text.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    pdf
}
