//! The exchange record: what the log keeps of one data call, and the enums it names.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tongban_policy::decision::{Operation, Reason};

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    System,
    Grant,
    DailyQuota,
    Resource,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::System => "system",
            Limit::Grant => "grant",
            Limit::DailyQuota => "daily_quota",
            Limit::Resource => "resource",
        }
    }
}

/// Whether a call's answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// Not cacheable: SQL, real-time resources, or the cache is off.
    Bypass,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// The named phases of a data call, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Authenticate,
    ResolveGrant,
    RateLimit,
    Cache,
    Execute,
    Mask,
    Log,
}

/// One exchange, as written to the log. Absent values are left out of the line rather than
/// written as `null`: the log's readers take a missing field as null, and every byte saved is
/// one less to encode, hash and write on each call.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    pub id: String,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The W3C trace the call belongs to: the caller's `traceparent` when it sent a valid
    /// one, else one named after the record.
    pub trace_id: String,
    pub operation: Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The GB/T 2260 division of the calling department's seat (from its credit code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Resources the call read (or asked for, when refused), with the catalog version served.
    pub resources: Vec<String>,
    pub resource_versions: Vec<u32>,
    /// The supplying departments of those resources, and their divisions.
    pub suppliers: Vec<String>,
    pub supplier_regions: Vec<String>,
    pub grants: Vec<String>,
    /// The version of each of those grants the call was decided on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_versions: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_item: Option<String>,
    /// Salted SHA-256 of the case number (办件编号), so calls of one case can be found together
    /// without the log holding the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_digest: Option<String>,
    /// Keyed SHA-256 of the key a look-up or verification asked for, so that an objection to
    /// the answer can name the record without the log holding the identity number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_digest: Option<String>,
    /// Items served (column names, never values).
    pub items: Vec<String>,
    pub rows: u64,
    /// Request body bytes received and answer body bytes sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub status: u16,
    /// The problem code of a refused or failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub reasons: Vec<Reason>,
    /// The limit that refused the call, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Limit>,
    /// Whether the answer came from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheOutcome>,
    /// Microseconds spent in each phase that ran, written as an object keyed by phase.
    #[serde(serialize_with = "phases_as_object")]
    pub phases: Vec<(Phase, u64)>,
    /// For a proxied call: the supplier's status, how many attempts were made, and the
    /// microseconds from the first attempt to the supplier's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub upstream_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
    /// For a summary of calls refused without a credential past their source's allowance:
    /// the source address; `rows` then counts the calls it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a call that crossed gateways: the peer gateway on the other side (the supplier's,
    /// at the home gateway; the caller's home, at the supplier's), and the id of that
    /// gateway's record of the same call, so the two records can be joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_exchange_id: Option<String>,
    /// The salted digests of the request and of the answer body that the call's receipt binds
    /// (`tongban_evidence::part_digest`), in hex; absent when the log signs no receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_digest: Option<String>,
    /// For a call that crossed gateways: the home gateway's signed request (`docs/evidence.md`),
    /// as the home gateway made it and as the supplier's gateway received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_signature: Option<String>,
    /// At the home gateway: the receipt the supplier's gateway answered the call with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_receipt: Option<String>,
    /// The replica of the gateway that served the call (`exchange_log.replica`), where several
    /// share one store and their logs are read as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

fn phases_as_object<S: serde::Serializer>(phases: &[(Phase, u64)], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(phases.len()))?;
    for (phase, us) in phases {
        map.serialize_entry(phase, us)?;
    }
    map.end()
}

impl ExchangeRecord {
    pub fn begin(operation: Operation) -> Self {
        let id = uuid::Uuid::now_v7();
        // Encoded into a buffer rather than through `Display`, which goes through the
        // formatting machinery on every call.
        let mut text = uuid::Uuid::encode_buffer();
        ExchangeRecord {
            id: id.hyphenated().encode_lower(&mut text).to_owned(),
            trace_id: id.simple().encode_lower(&mut text).to_owned(),
            started_at: Utc::now(),
            finished_at: None,
            operation,
            system: None,
            department: None,
            region: None,
            resources: Vec::new(),
            resource_versions: Vec::new(),
            suppliers: Vec::new(),
            supplier_regions: Vec::new(),
            grants: Vec::new(),
            grant_versions: Vec::new(),
            service_item: None,
            case_digest: None,
            operator_digest: None,
            key_digest: None,
            items: Vec::new(),
            rows: 0,
            bytes_in: 0,
            bytes_out: 0,
            status: 0,
            code: None,
            upstream_status: None,
            upstream_attempts: 0,
            upstream_us: None,
            source: None,
            peer: None,
            peer_exchange_id: None,
            request_digest: None,
            response_digest: None,
            request_signature: None,
            peer_receipt: None,
            replica: None,
            reasons: Vec::new(),
            rate_limit: None,
            cache: None,
            phases: Vec::new(),
        }
    }
}

/// The keyed digest of a record key a call asked for (`ExchangeRecord::key_digest`). Letters
/// are taken in upper case first, as the data plane reads keys (an identity number's check
/// character may come as `x`), so one record always has one digest.
pub fn key_digest(log_key: &[u8], record_key: &str) -> String {
    purpose_digest(log_key, &record_key.to_ascii_uppercase())
}

/// A keyed digest of a purpose field, so the log can group calls by case without holding it.
/// The key is the log's own (`purpose.key` beside its segments), so digests match across
/// restarts but cannot be recomputed from a guessed case number without it.
pub fn purpose_digest(key: &[u8], value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update(value.as_bytes());
    let mut text = [0u8; 32];
    hex::encode_to_slice(&hasher.finalize()[..16], &mut text).expect("16 bytes are 32 hex digits");
    std::str::from_utf8(&text).expect("hex digits are ASCII").to_owned()
}

#[cfg(test)]
impl ExchangeRecord {
    /// A record with every member that can be absent set (tests).
    pub(crate) fn with_every_member() -> ExchangeRecord {
        let mut record = ExchangeRecord::begin(Operation::Lookup);
        record.finished_at = Some(Utc::now());
        record.system = Some("sys-1".into());
        record.department = Some("11410000MB0000000X".into());
        record.region = Some("410000".into());
        record.resources = vec!["R-1".into()];
        record.resource_versions = vec![2];
        record.suppliers = vec!["11440000MB0000000Y".into()];
        record.supplier_regions = vec!["440000".into()];
        record.grants = vec!["g-1".into()];
        record.grant_versions = vec![3];
        record.service_item = Some("KSTB-001".into());
        record.case_digest = Some("ab".repeat(16));
        record.operator_digest = Some("cd".repeat(16));
        record.key_digest = Some("ef".repeat(16));
        record.items = vec!["name".into()];
        record.status = 403;
        record.code = Some("access_denied");
        record.reasons = vec![Reason::NoGrant];
        record.rate_limit = Some(Limit::Grant);
        record.cache = Some(CacheOutcome::Miss);
        record.phases = vec![(Phase::Authenticate, 3)];
        record.upstream_status = Some(200);
        record.upstream_us = Some(10);
        record.source = Some("127.0.0.1".into());
        record.peer = Some("guangdong".into());
        record.peer_exchange_id = Some("x-1".into());
        record.request_digest = Some("01".repeat(32));
        record.response_digest = Some("02".repeat(32));
        record.request_signature = Some("c2ln".into());
        record.peer_receipt = Some("cmVj".into());
        record.replica = Some("gateway-0".into());
        record
    }
}
