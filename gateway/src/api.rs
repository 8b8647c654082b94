//! The REST API of the CRM UI, scoped by bearer token like the feed: a manager or admin reads and
//! writes their whole organization, an agent their own calls and the leads they own; nobody
//! reaches another organization, whatever ids they send (the store's row-level security backs
//! this up). Errors are JSON `{"error": "…"}` with a 4xx that says what was wrong, or a 5xx.

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Json, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tracing::{error, info};
use winnerr_events::UserId;
use winnerr_store::{CallFilter, Erasure, Store, StoreError};

use crate::auth::{AuthError, Claims};
use crate::server::Gateway;

/// The OpenAPI document of this API.
const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}", get(get_call))
        .route("/api/calls/{id}/utterances", get(call_utterances))
        .route("/api/calls/{id}/export", get(export_call))
        .route("/api/people", axum::routing::post(create_person))
        .route(
            "/api/people/{id}",
            get(get_person).patch(update_person).delete(erase_person),
        )
        .route("/api/people/{id}/calls", get(person_calls))
        .route("/api/people/{id}/timeline", get(person_timeline))
        .route("/api/people/{id}/scores", get(person_scores))
        .route("/api/deals", get(list_deals))
        .route(
            "/api/do-not-call",
            get(list_do_not_call).post(add_do_not_call),
        )
        .route(
            "/api/do-not-call/{id}",
            axum::routing::delete(remove_do_not_call),
        )
        .route("/api/keyterms", get(get_keyterms).put(set_keyterms))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The largest request body: a person's fields at their limits fit several times over.
const MAX_BODY_BYTES: usize = 32 * 1024;

/// What went wrong, as the caller sees it.
#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized(AuthError),
    BadRequest(String),
    TooLarge,
    Forbidden(&'static str),
    NotFound,
    Conflict(String),
    Unavailable,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(err) => {
                let body = Json(serde_json::json!({ "error": err.to_string() }));
                return (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    body,
                )
                    .into_response();
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, message.to_owned()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, message),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no database is configured".to_owned(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(message) => ApiError::BadRequest(message),
            other => {
                error!(error = %other, "API request failed in the store");
                ApiError::Internal
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge;
        }
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// The authenticated caller (bearer token in the `Authorization` header).
pub(crate) struct Caller(Claims);

impl FromRequestParts<Gateway> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        gateway
            .auth()
            .authenticate(&parts.headers, None)
            .map(Caller)
            .map_err(ApiError::Unauthorized)
    }
}

impl Caller {
    /// The agent whose records alone this caller may see; `None` for the whole organization.
    fn only_agent(&self) -> Option<&UserId> {
        (!self.0.role.sees_whole_org()).then_some(&self.0.sub)
    }

    /// Refuses an agent what `what` says is for managers and admins.
    fn whole_org(&self, what: &'static str) -> Result<(), ApiError> {
        match self.only_agent() {
            Some(_) => Err(ApiError::Forbidden(what)),
            None => Ok(()),
        }
    }
}

fn store(gateway: &Gateway) -> Result<&Store, ApiError> {
    gateway.store().ok_or(ApiError::Unavailable)
}

/// An id from a path: the same rules as every id of the engine.
fn path_id(id: &str) -> Result<&str, ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if valid {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a valid id",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// An id given as a query filter: the same rules as ids in paths.
fn filter_id(id: &str) -> Result<String, ApiError> {
    path_id(id).map(str::to_owned)
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallQuery {
    status: Option<CallStatus>,
    agent_id: Option<String>,
    lead_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CallStatus {
    Live,
    Ended,
}

async fn list_calls(
    State(gateway): State<Gateway>,
    caller: Caller,
    query: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let lead = query.lead_id.as_deref().map(filter_id).transpose()?;
    calls_page(&gateway, &caller, &query, lead).await
}

/// A page of the calls `query` asks for (of `lead`, when given) that `caller` may see.
async fn calls_page(
    gateway: &Gateway,
    caller: &Caller,
    query: &CallQuery,
    lead: Option<String>,
) -> Result<Response, ApiError> {
    let filter = CallFilter {
        live: query.status.map(|s| matches!(s, CallStatus::Live)),
        agent_id: query.agent_id.as_deref().map(filter_id).transpose()?,
        lead_id: lead,
    };
    let page = store(gateway)?
        .list_calls(
            &caller.0.org,
            &filter,
            caller.only_agent(),
            query.limit.unwrap_or(50),
            query.cursor.as_deref(),
        )
        .await?;
    Ok(Json(page).into_response())
}

async fn get_call(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let call = store(&gateway)?
        .get_call(&caller.0.org, path_id(&id)?, caller.only_agent())
        .await?;
    call.map(|call| Json(call).into_response())
        .ok_or(ApiError::NotFound)
}

async fn call_utterances(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let store = store(&gateway)?;
    let id = path_id(&id)?;
    // Only a call the caller may see has a transcript they may read.
    if store
        .get_call(&caller.0.org, id, caller.only_agent())
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound);
    }
    let utterances = store
        .read_transcript(&caller.0.org, id, &caller.0.sub)
        .await?;
    Ok(Json(serde_json::json!({ "items": utterances })).into_response())
}

/// A call and its whole transcript as a file to keep outside the CRM: for managers and admins,
/// audited as `call.export`.
async fn export_call(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    caller.whole_org("exporting calls is for managers and admins")?;
    let store = store(&gateway)?;
    let id = path_id(&id)?;
    let call = store
        .get_call(&caller.0.org, id, None)
        .await?
        .ok_or(ApiError::NotFound)?;
    let utterances = store
        .export_transcript(&caller.0.org, id, &caller.0.sub)
        .await?;
    let disposition = format!("attachment; filename=\"call-{id}.json\"");
    Ok((
        [(axum::http::header::CONTENT_DISPOSITION, disposition)],
        Json(serde_json::json!({ "call": call, "utterances": utterances })),
    )
        .into_response())
}

/// Who may open a softphone call (`GET /softphone/stream`): the token's user, about a lead they
/// may see by the REST rules (`None` refuses with the status to answer), speaking as the agent
/// (`outbound`) — only an admin token, an integration bridging a customer's leg, may send the
/// customer's side (`inbound`).
pub(crate) async fn softphone_caller(
    gateway: &Gateway,
    claims: Claims,
    lead: Option<&winnerr_events::LeadId>,
    track: winnerr_events::Track,
) -> Result<Claims, Response> {
    if track == winnerr_events::Track::Inbound && claims.role != winnerr_events::Role::Admin {
        return Err(
            ApiError::Forbidden("only an admin token may send the customer's track")
                .into_response(),
        );
    }
    let caller = Caller(claims);
    if let Some(lead) = lead {
        visible_person(gateway, &caller, lead.as_str())
            .await
            .map_err(IntoResponse::into_response)?;
    }
    Ok(caller.0)
}

/// A person the caller may see: managers any of their organization's, agents the leads they own.
async fn visible_person(
    gateway: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<winnerr_store::Person, ApiError> {
    let person = store(gateway)?
        .get_person(&caller.0.org, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    match caller.only_agent() {
        Some(agent) if person.owner_user_id.as_deref() != Some(agent.as_str()) => {
            Err(ApiError::NotFound)
        }
        _ => Ok(person),
    }
}

async fn create_person(
    State(gateway): State<Gateway>,
    caller: Caller,
    body: Result<Json<winnerr_store::PersonFields>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut fields) = body?;
    if let Some(agent) = caller.only_agent() {
        match &fields.owner_user_id {
            Some(owner) if owner != agent.as_str() => {
                return Err(ApiError::Forbidden("agents create leads for themselves"));
            }
            _ => fields.owner_user_id = Some(agent.to_string()),
        }
    }
    let person = store(&gateway)?
        .create_person(&caller.0.org, &fields)
        .await?;
    Ok((StatusCode::CREATED, Json(person)).into_response())
}

async fn get_person(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    Ok(Json(visible_person(&gateway, &caller, &id).await?).into_response())
}

async fn update_person(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<winnerr_store::PersonFields>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Json(fields) = body?;
    let person = visible_person(&gateway, &caller, &id).await?;
    if caller.only_agent().is_some()
        && fields
            .owner_user_id
            .as_ref()
            .is_some_and(|o| Some(o) != person.owner_user_id.as_ref())
    {
        return Err(ApiError::Forbidden(
            "agents cannot hand their leads to someone else",
        ));
    }
    let updated = store(&gateway)?
        .update_person(&caller.0.org, &person.id, &fields)
        .await?;
    updated
        .map(|p| Json(p).into_response())
        .ok_or(ApiError::NotFound)
}

/// Erases a person on request (admins): their profile and what the CRM holds from them, audited
/// as `person.erase` with the counts; refused while they are on a live call.
async fn erase_person(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    if caller.0.role != winnerr_events::Role::Admin {
        return Err(ApiError::Forbidden("erasing a person is for admins"));
    }
    let erasure = store(&gateway)?
        .erase_person(&caller.0.org, path_id(&id)?, caller.0.sub.as_str())
        .await?;
    match erasure {
        Erasure::Erased(erased) => {
            info!(org_id = %caller.0.org, person = %id, by = %caller.0.sub, ?erased, "person erased");
            Ok(Json(serde_json::json!({ "erased": erased })).into_response())
        }
        Erasure::NotFound => Err(ApiError::NotFound),
        Erasure::OnLiveCall(call) => Err(ApiError::Conflict(format!(
            "the person is on live call {call}: erase them once it ends"
        ))),
    }
}

async fn person_calls(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<CallQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    let person = visible_person(&gateway, &caller, &id).await?;
    calls_page(&gateway, &caller, &query, Some(person.id)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A person's calls and messages, newest first (the calls an agent sees: their own).
async fn person_timeline(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    let person = visible_person(&gateway, &caller, &id).await?;
    let page = store(&gateway)?
        .person_timeline(
            &caller.0.org,
            &person.id,
            caller.only_agent(),
            query.limit.unwrap_or(50),
            query.cursor.as_deref(),
            caller.0.sub.as_str(),
        )
        .await?;
    Ok(Json(page).into_response())
}

async fn person_scores(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let person = visible_person(&gateway, &caller, &id).await?;
    let scores = store(&gateway)?
        .person_scores(&caller.0.org, &person.id)
        .await?;
    Ok(Json(serde_json::json!({ "items": scores })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DealQuery {
    person_id: Option<String>,
}

async fn list_deals(
    State(gateway): State<Gateway>,
    caller: Caller,
    query: Result<Query<DealQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    caller.whole_org("the pipeline is for managers and admins")?;
    let person = query.person_id.as_deref().map(path_id).transpose()?;
    let deals = store(&gateway)?.list_deals(&caller.0.org, person).await?;
    Ok(Json(serde_json::json!({ "items": deals })).into_response())
}

/// The organization's keyterms, in its order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeytermsRequest {
    terms: Vec<String>,
}

/// The organization's keyterms (anyone of it: they are its public words, not its data).
async fn get_keyterms(
    State(gateway): State<Gateway>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let terms = store(&gateway)?.keyterms(&caller.0.org).await?;
    Ok(Json(serde_json::json!({ "terms": terms })).into_response())
}

/// Replaces the organization's keyterms (managers and admins); new calls decode with them.
async fn set_keyterms(
    State(gateway): State<Gateway>,
    caller: Caller,
    body: Result<Json<KeytermsRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    caller.whole_org("keyterms are set by managers and admins")?;
    let terms = store(&gateway)?
        .set_keyterms(&caller.0.org, &request.terms, caller.0.sub.as_str())
        .await?;
    Ok(Json(serde_json::json!({ "terms": terms })).into_response())
}

/// A number to put on the organization's do-not-call list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoNotCallRequest {
    phone: String,
    reason: Option<String>,
}

/// Anyone of the organization may put a number on its list (an agent hears the request); the
/// entry comes back with the id that removes it.
async fn add_do_not_call(
    State(gateway): State<Gateway>,
    caller: Caller,
    body: Result<Json<DoNotCallRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let entry = store(&gateway)?
        .add_do_not_call(
            &caller.0.org,
            &request.phone,
            request.reason.as_deref(),
            caller.0.sub.as_str(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

/// The list (managers and admins): the last four digits of each number, never the number.
async fn list_do_not_call(
    State(gateway): State<Gateway>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.whole_org("the do-not-call list is for managers and admins")?;
    let entries = store(&gateway)?.list_do_not_call(&caller.0.org).await?;
    Ok(Json(serde_json::json!({ "items": entries })).into_response())
}

/// Takes a number off the list (managers and admins).
async fn remove_do_not_call(
    State(gateway): State<Gateway>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    caller.whole_org("the do-not-call list is for managers and admins")?;
    let removed = store(&gateway)?
        .remove_do_not_call(&caller.0.org, path_id(&id)?, caller.0.sub.as_str())
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}
