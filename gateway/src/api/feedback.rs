//! Data objections (纠错) and ratings (好差评): consuming departments say what was wrong with
//! an answer or a service, and suppliers answer within working-day deadlines.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tongban_exchange::query::{self, Scope};
use tongban_policy::feedback::{ObjectedExchange, Objection, ObjectionAnswer, ObjectionState, Rating};

use super::{Listing, page_request};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_platform::store::FeedbackFilter;
use tongban_platform::{Caller, RatingInput};

/// An objection as the API shows it: the record, and whether its answer is overdue today.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ObjectionView {
    #[serde(flatten)]
    objection: Objection,
    overdue: bool,
}

impl ObjectionView {
    fn of(objection: Objection, state: &AppState) -> Self {
        let overdue = objection.overdue(state.platform().now().date());
        ObjectionView { objection, overdue }
    }
}

/// A rating as the API shows it, with whether its rectification task is overdue today.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RatingView {
    #[serde(flatten)]
    rating: Rating,
    overdue: bool,
}

impl RatingView {
    fn of(rating: Rating, state: &AppState) -> Self {
        let overdue = rating.overdue(state.platform().now().date());
        RatingView { rating, overdue }
    }
}

/// An objection as a consuming department files it: the exchange and the item said to be
/// wrong. It names no person; the gateway reads the resource and the record's key digest from
/// the exchange's record.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectionInput {
    /// The `X-Tongban-Exchange-Id` of the answer.
    exchange_id: String,
    /// The information item said to be wrong; one the answer held.
    item: String,
    /// What is wrong, without personal data (at most 2,000 characters).
    description: String,
}

/// Files an objection (纠错) to an item of an answer the caller's department received
/// (demanders, and the department's systems). The supplier must answer within the configured
/// working days.
#[utoipa::path(post, path = "/objections", tag = "feedback", security(("bearer" = [])),
    request_body = ObjectionInput,
    responses((status = 201, body = ObjectionView), (status = 404, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn file_objection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<ObjectionInput>,
) -> Result<(StatusCode, Json<ObjectionView>), ApiError> {
    let exchange = objected_exchange(&state, &caller, &input.exchange_id).await?;
    let objection = state.platform().file_objection(&caller, exchange, input.item, input.description).await?;
    Ok((StatusCode::CREATED, Json(ObjectionView::of(objection, &state))))
}

/// What the log says of the exchange an objection names. Only a successful look-up or
/// verification on one resource answered something a department can object to.
async fn objected_exchange(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ObjectedExchange, ApiError> {
    let not_yours =
        || ApiError::not_found(format!("exchange {id} is not an answer your department received"));
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_yours());
    }
    let scope = Scope {
        id: Some(id.to_owned()),
        department: Some(caller.department().code.clone()),
        ..Scope::default()
    };
    let mut rows =
        super::exchanges::ask(state, |dir| async move { query::records(&dir, &scope, None, 1).await })
            .await?;
    let record = rows.pop().ok_or_else(not_yours)?;
    let text = |name: &str| record[name].as_str().map(str::to_owned);
    let list = |name: &str| -> Vec<String> {
        record[name]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    if text("department").as_deref() != Some(caller.department().code.as_str()) {
        // A supplier sees the calls on its resources in the log, but cannot object to them.
        return Err(not_yours());
    }
    let not_objectable = |why: &str| {
        ApiError::unprocessable("not_objectable", "Not objectable", format!("exchange {id} {why}"))
    };
    if record["status"].as_u64() != Some(200) {
        return Err(not_objectable("was not answered with data (only answers can be wrong)"));
    }
    let (resources, suppliers) = (list("resources"), list("suppliers"));
    let (Some(key_digest), [resource], [supplier]) =
        (text("key_digest"), resources.as_slice(), suppliers.as_slice())
    else {
        return Err(not_objectable("is not a look-up or verification of one record"));
    };
    Ok(ObjectedExchange {
        exchange_id: id.to_owned(),
        consumer_department: caller.department().code.clone(),
        consumer_system: text("system"),
        resource: resource.clone(),
        supplier: supplier.clone(),
        service_item: text("service_item"),
        key_digest,
        items: list("items"),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectionQuery {
    state: Option<ObjectionState>,
    resource: Option<String>,
    /// Only objections still open past their deadline on this day (YYYY-MM-DD).
    overdue_on: Option<chrono::NaiveDate>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists the objections the caller may read: its department's, filed or to answer; a
/// reviewer's province's suppliers'; all for those who oversee the platform.
#[utoipa::path(get, path = "/objections", tag = "feedback", security(("bearer" = [])), params(ObjectionQuery),
    responses((status = 200, body = Listing<ObjectionView>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn list_objections(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ObjectionQuery>,
) -> Result<Json<Listing<ObjectionView>>, ApiError> {
    let page = page_request(query.after, query.limit)?;
    let filter = FeedbackFilter {
        state: query.state.map(|s| s.as_str().to_owned()),
        resource: query.resource,
        overdue_on: query.overdue_on,
        ..FeedbackFilter::default()
    };
    let listed = state.platform().objections(&caller, filter, &page).await?;
    Ok(Json(Listing::of(listed, |o| ObjectionView::of(o, &state))))
}

/// One objection.
#[utoipa::path(get, path = "/objections/{id}", tag = "feedback", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ObjectionView), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_objection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ObjectionView>, ApiError> {
    Ok(Json(ObjectionView::of(state.platform().objection(&caller, &id).await?, &state)))
}

/// The supplier's answer to an objection: corrected, confirmed correct, or rejected with a
/// reason (administrators of the supplying department). An objection is answered once.
#[utoipa::path(post, path = "/objections/{id}/answer", tag = "feedback", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ObjectionAnswer,
    responses((status = 200, body = ObjectionView), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 409, body = crate::error::ProblemSchema)))]
pub(super) async fn answer_objection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(answer): ApiJson<ObjectionAnswer>,
) -> Result<Json<ObjectionView>, ApiError> {
    Ok(Json(ObjectionView::of(state.platform().answer_objection(&caller, &id, &answer).await?, &state)))
}

/// A key the supplier believes the objection is about.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyCheck {
    /// The record key, such as an identity number; it is compared and forgotten, never kept.
    key: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyCheckAnswer {
    /// Whether the key is the one the objected answer was about.
    matches: bool,
}

/// Checks whether a key is the record's the objection is about (administrators of the
/// supplying department): the objection holds only a keyed digest, which the supplier cannot
/// compute without the log's key, so the gateway compares for it.
#[utoipa::path(post, path = "/objections/{id}/key-check", tag = "feedback", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = KeyCheck,
    responses((status = 200, body = KeyCheckAnswer), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn check_objection_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(check): ApiJson<KeyCheck>,
) -> Result<Json<KeyCheckAnswer>, ApiError> {
    let objection = state.platform().objection(&caller, &id).await?;
    if !(caller.has_role(tongban_policy::org::UserRole::SupplierAdmin)
        && caller.department().code == objection.supplier)
    {
        return Err(ApiError::forbidden("keys are checked by an administrator of the supplying department"));
    }
    let digest = tongban_exchange::key_digest(state.data().log.key(), &check.key);
    Ok(Json(KeyCheckAnswer { matches: digest == objection.key_digest }))
}

/// Rates a grant's service for this month (demanders of the consuming department), once per
/// grant and month. A score of 2 or less names what went wrong and opens a rectification
/// task (整改) for the supplier.
#[utoipa::path(post, path = "/ratings", tag = "feedback", security(("bearer" = [])),
    request_body = RatingInput,
    responses((status = 201, body = RatingView), (status = 404, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn rate(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<RatingInput>,
) -> Result<(StatusCode, Json<RatingView>), ApiError> {
    let rating = state.platform().rate(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(RatingView::of(rating, &state))))
}

/// The state of a rating's rectification task.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum TaskState {
    /// A good rating, with no task.
    None,
    Open,
    Answered,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RatingQuery {
    task: Option<TaskState>,
    resource: Option<String>,
    /// Only ratings whose rectification task is open past its deadline on this day
    /// (YYYY-MM-DD).
    overdue_on: Option<chrono::NaiveDate>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists the ratings the caller may read, as objections are listed.
#[utoipa::path(get, path = "/ratings", tag = "feedback", security(("bearer" = [])), params(RatingQuery),
    responses((status = 200, body = Listing<RatingView>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn list_ratings(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RatingQuery>,
) -> Result<Json<Listing<RatingView>>, ApiError> {
    let page = page_request(query.after, query.limit)?;
    let task = query.task.map(|t| {
        match t {
            TaskState::None => "none",
            TaskState::Open => "open",
            TaskState::Answered => "answered",
        }
        .to_owned()
    });
    let filter = FeedbackFilter {
        state: task,
        resource: query.resource,
        overdue_on: query.overdue_on,
        ..FeedbackFilter::default()
    };
    let listed = state.platform().ratings(&caller, filter, &page).await?;
    Ok(Json(Listing::of(listed, |r| RatingView::of(r, &state))))
}

/// One rating.
#[utoipa::path(get, path = "/ratings/{id}", tag = "feedback", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RatingView), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_rating(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RatingView>, ApiError> {
    Ok(Json(RatingView::of(state.platform().rating(&caller, &id).await?, &state)))
}

/// The supplier's rectification (整改) in answer to a poor rating.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RectificationInput {
    /// What the supplier did about it (at most 2,000 characters).
    answer: String,
}

/// Answers a poor rating's rectification task (administrators of the supplying department).
#[utoipa::path(post, path = "/ratings/{id}/rectification", tag = "feedback", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RectificationInput,
    responses((status = 200, body = RatingView), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 409, body = crate::error::ProblemSchema)))]
pub(super) async fn rectify(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<RectificationInput>,
) -> Result<Json<RatingView>, ApiError> {
    Ok(Json(RatingView::of(state.platform().rectify(&caller, &id, input.answer).await?, &state)))
}
