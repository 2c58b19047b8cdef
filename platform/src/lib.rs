//! The platform's operations on catalog, demands and grants, with their rules: who may do
//! what, what is checked before anything is written, and how approvals become grants. The
//! HTTP handlers and the demo seed both go through here, so the rules live in one place.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{NaiveDate, NaiveDateTime};
use tongban_policy::calendar::WorkingCalendar;
use tongban_policy::catalog::{Resource, ShareType};
use tongban_policy::grant::{Grant, GrantChange, GrantSet, GrantSource};
use tongban_policy::org::{
    DemandParties, Department, DepartmentRole, ItemOrigin, ServiceItem, ServiceItemInput, UserRole,
    reviews_for, workflow_roles,
};
use tongban_policy::workflow::{Action, Demand, Role, StageLimits, Terms, next_state};

pub mod auth;
pub mod clock;
mod crossing;
pub mod error;
pub mod federation;
pub mod feedback;
pub mod service_items;
pub mod store;
pub mod users;

use crate::store::{DemandFiling, DemandRecord, GrantRecord, Store, SystemRecord, UserRecord};
pub use clock::{Clock, SetClock};
pub use crossing::PeerGateway;
pub use error::{ErrorKind, PlatformError};
pub use feedback::RatingInput;

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub enum Caller {
    User {
        user: UserRecord,
        department: Department,
    },
    /// A system, shared with the other calls presenting its credentials.
    System(Arc<SystemIdentity>),
}

/// An authenticated system and its department.
#[derive(Debug)]
pub struct SystemIdentity {
    pub system: SystemRecord,
    pub department: Department,
}

impl Caller {
    pub fn department(&self) -> &Department {
        match self {
            Caller::User { department, .. } => department,
            Caller::System(identity) => &identity.department,
        }
    }

    /// The name recorded as actor in histories.
    pub fn actor(&self) -> String {
        match self {
            Caller::User { user, .. } => format!("user:{}", user.username),
            Caller::System(identity) => format!("system:{}", identity.system.id),
        }
    }

    pub fn has_role(&self, role: UserRole) -> bool {
        matches!(self, Caller::User { user, .. } if user.roles.contains(&role))
    }

    /// Refuses with 403 unless the caller is a person holding one of `roles`.
    pub fn require(&self, roles: &[UserRole]) -> Result<&UserRecord, PlatformError> {
        match self {
            Caller::User { user, .. } if roles.iter().any(|r| user.roles.contains(r)) => Ok(user),
            _ => Err(PlatformError::forbidden(format!("this needs one of the roles {roles:?}"))),
        }
    }

    /// Whether the caller oversees the whole platform: reads every record.
    pub fn oversees(&self) -> bool {
        self.has_role(UserRole::PlatformAdmin) || self.has_role(UserRole::Operator)
    }
}

/// What the data plane decides with: every grant and the current version of every catalog
/// resource, read together.
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    /// The store's policy revision the snapshot was read at.
    pub revision: i64,
    pub grants: GrantSet,
    pub resources: HashMap<String, Resource>,
}

/// The configured datasets, each with the credit code of the department that supplies it
/// (`None` when the configuration names none): a resource may be bound only to its own
/// supplier's datasets.
pub type DatasetSuppliers = Arc<BTreeMap<String, Option<String>>>;

/// The grants and catalog in force, swapped whole when either changes, so the data plane never
/// waits on the store and never sees half a change.
#[derive(Debug, Clone, Default)]
pub struct GrantRegistry {
    current: Arc<RwLock<(i64, Arc<PolicySnapshot>)>>,
}

/// Catalog resources bound to a dataset their supplier does not own, as the configuration now
/// says: left from a store written before ownership was configured, or by a configuration
/// changed since. The data plane refuses them; this names them for the operator.
pub fn unowned_resources<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    suppliers: &BTreeMap<String, Option<String>>,
) -> Vec<&'a Resource> {
    resources
        .into_iter()
        .filter(|r| suppliers.get(&r.dataset).and_then(Option::as_deref) != Some(r.supplier.as_str()))
        .collect()
}

impl GrantRegistry {
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.read().expect("grant registry lock is never poisoned").1.clone()
    }

    pub fn revision(&self) -> i64 {
        self.current.read().expect("grant registry lock is never poisoned").0
    }

    /// Reloads every grant and resource from the store.
    pub async fn reload(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let revision = store.policy_revision().await?;
        let grants = store.grants().await?;
        let resources = store.resources(None).await?;
        let snapshot = Arc::new(PolicySnapshot {
            revision,
            grants: GrantSet::new(grants.into_iter().map(|r| r.grant)),
            resources: resources.into_iter().map(|r| (r.code.clone(), r)).collect(),
        });
        let mut current = self.current.write().expect("grant registry lock is never poisoned");
        // A slower reload must not replace a newer one.
        if revision >= current.0 {
            *current = (revision, snapshot);
        }
        Ok(())
    }

    /// Reloads when grants or the catalog changed elsewhere (another instance on the store).
    pub async fn refresh_if_changed(&self, store: &Store) -> Result<bool, crate::store::StoreError> {
        if store.policy_revision().await? == self.revision() {
            return Ok(false);
        }
        self.reload(store).await?;
        Ok(true)
    }
}

/// Everything the platform's operations need.
#[derive(Debug, Clone)]
pub struct Platform {
    pub store: Store,
    pub calendar: Arc<WorkingCalendar>,
    pub limits: StageLimits,
    pub grants: GrantRegistry,
    /// The configured datasets a resource may be bound to, each with its supplier.
    pub datasets: DatasetSuppliers,
    pub session_hours: u32,
    /// Where the platform reads the time.
    pub clock: Clock,
    /// Systems recently authenticated, by API key digest or certificate fingerprint.
    pub identities: Identities,
    /// Bumped when a message for a peer gateway is written, so the outbox delivers it at once.
    pub outbox_written: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A short-lived cache of authenticated systems, so that a data call does not query the store
/// to learn who is calling. Entries live a few seconds; a system disabled, or a certificate
/// registered, through another instance takes effect when they expire, and one changed
/// through this instance at once ([`Identities::forget_all`]).
#[derive(Clone)]
pub struct Identities(moka::sync::Cache<Credential, Arc<SystemIdentity>>);

/// What a system presented, as the identity cache knows it: the SHA-256 of an API key or of
/// a client certificate, so that neither is kept and a look-up formats nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    ApiKey([u8; 32]),
    Certificate([u8; 32]),
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("entries", &self.0.entry_count()).finish()
    }
}

impl Default for Identities {
    fn default() -> Self {
        Identities(
            moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(5))
                .build(),
        )
    }
}

impl Identities {
    pub fn get(&self, credential: &Credential) -> Option<Arc<SystemIdentity>> {
        self.0.get(credential)
    }

    /// Remembers an authenticated system and hands it back.
    pub fn insert(
        &self,
        credential: Credential,
        system: SystemRecord,
        department: Department,
    ) -> Arc<SystemIdentity> {
        let identity = Arc::new(SystemIdentity { system, department });
        self.0.insert(credential, Arc::clone(&identity));
        identity
    }

    pub fn forget_all(&self) {
        self.0.invalidate_all();
    }
}

/// A new demand as a demanding department files it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemandInput {
    pub resource_code: String,
    /// The calling system the grant will be for; any system of the department when absent.
    #[serde(default)]
    pub system_id: Option<String>,
    pub service_item: String,
    pub purpose: String,
    pub legal_basis: String,
    /// Items wanted, rows, expected volume and requested validity.
    pub terms: Terms,
}

/// A catalog entry as its supplier writes it; version and supplier are set by the platform.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub summary: String,
    pub share_type: ShareType,
    #[serde(default)]
    pub share_condition: Option<String>,
    pub share_methods: Vec<tongban_policy::catalog::ShareMethod>,
    pub update_cycle: tongban_policy::catalog::UpdateCycle,
    pub dataset: String,
    pub items: Vec<tongban_policy::catalog::InformationItem>,
    #[serde(default)]
    pub service_items: Vec<String>,
    /// The item holding each record's division code, for row scopes.
    #[serde(default)]
    pub division_item: Option<String>,
    #[serde(default)]
    pub format: tongban_policy::catalog::ResourceFormat,
    #[serde(default)]
    pub open_type: tongban_policy::catalog::OpenType,
    #[serde(default)]
    pub class: tongban_policy::catalog::ResourceClass,
    /// Codes of related resources in the catalog.
    #[serde(default)]
    pub related_resources: Vec<String>,
    /// The laws and regulations the sharing rests on; required of a resource not shared.
    #[serde(default)]
    pub legal_basis: String,
}

fn invalid(detail: impl Into<String>) -> PlatformError {
    PlatformError::invalid(detail)
}

/// Checks terms a demand asks for: something to grant, rows named by a division prefix, a
/// positive rate and quota, a validity in the future.
fn check_terms(terms: &Terms, today: NaiveDate) -> Result<(), PlatformError> {
    if terms.items.is_empty() {
        return Err(invalid("terms.items: name at least one information item"));
    }
    let prefix = &terms.division_prefix;
    if prefix.len() > 6 || !prefix.len().is_multiple_of(2) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "terms.division_prefix {prefix:?}: give a GB/T 2260 prefix of 2, 4 or 6 digits, or \"\" for all rows"
        )));
    }
    if !prefix.is_empty()
        && !tongban_policy::division::all().iter().any(|d| d.code.starts_with(prefix.as_str()))
    {
        return Err(invalid(format!("terms.division_prefix {prefix:?} matches no known division")));
    }
    if terms.rate_per_second == 0 || terms.daily_quota == 0 {
        return Err(invalid("terms.rate_per_second and terms.daily_quota must be at least 1"));
    }
    if terms.valid_until <= today {
        return Err(invalid(format!("terms.valid_until {} is not in the future", terms.valid_until)));
    }
    Ok(())
}

/// Checks terms a demand asks of `resource`, when filed and again when resubmitted: the terms
/// themselves, then that every item can be granted and that rows can be scoped as asked.
fn check_demand_terms(resource: &Resource, terms: &Terms, today: NaiveDate) -> Result<(), PlatformError> {
    check_terms(terms, today)?;
    let ungrantable = resource.ungrantable(terms.items.iter().map(String::as_str));
    if !ungrantable.is_empty() {
        return Err(PlatformError::ungrantable(&ungrantable));
    }
    if !terms.division_prefix.is_empty() && resource.division_item.is_none() {
        return Err(invalid(format!(
            "terms.division_prefix: resource {} has no division item to scope rows by; ask for \"\"",
            resource.code
        )));
    }
    Ok(())
}

/// The calendar built into the gateway: the published national schedules.
const BUILTIN_CALENDAR: &str = include_str!("../data/calendar.toml");

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    holidays: Vec<NaiveDate>,
    makeup_working_days: Vec<NaiveDate>,
}

/// Why the platform could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("calendar {path}: {source}")]
    CalendarUnreadable { path: String, source: std::io::Error },
    #[error("calendar {path}: {detail}")]
    CalendarInvalid { path: String, detail: String },
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Reads a calendar file (or the built-in one).
pub fn load_calendar(path: Option<&std::path::Path>) -> Result<WorkingCalendar, OpenError> {
    let name = path.map_or_else(|| "(built in)".to_owned(), |p| p.display().to_string());
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| OpenError::CalendarUnreadable { path: name.clone(), source })?,
        None => BUILTIN_CALENDAR.to_owned(),
    };
    let invalid = |detail: String| OpenError::CalendarInvalid { path: name.clone(), detail };
    let file: CalendarFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    WorkingCalendar::new(file.holidays, file.makeup_working_days).map_err(|e| invalid(e.to_string()))
}

/// What the platform is opened with: the gateway's configuration, resolved.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub store_url: String,
    /// A calendar file replacing the built-in one.
    pub calendar: Option<std::path::PathBuf>,
    pub limits: StageLimits,
    /// The configured datasets and the credit code of the department supplying each.
    pub datasets: Vec<(String, Option<String>)>,
    pub session_hours: u32,
}

/// Brings a store to one standing grant per purpose ([`Store::one_grant_per_purpose`]) and
/// tells the operator of each grant this replaced.
async fn settle_grants(store: &Store, now: NaiveDateTime) -> Result<(), OpenError> {
    for replaced in store.one_grant_per_purpose(now).await? {
        tracing::warn!(
            grant = %replaced.grant,
            by = %replaced.by,
            "two grants stood for one purpose; the older is now superseded by the newer approval"
        );
    }
    Ok(())
}

impl Platform {
    /// Reloads the policy after a change of grants or the catalog made through this instance,
    /// and announces it to the other instances on the store, which reload at once.
    async fn policy_changed(&self) -> Result<(), crate::store::StoreError> {
        self.grants.reload(&self.store).await?;
        self.store.announce(crate::store::Change::Policy).await;
        Ok(())
    }

    /// Connects the store and loads the calendar.
    pub async fn open(options: PlatformOptions) -> Result<Platform, OpenError> {
        let store = Store::connect(&options.store_url).await?;
        settle_grants(&store, Clock::system().now()).await?;
        Ok(Platform {
            store,
            calendar: Arc::new(load_calendar(options.calendar.as_deref())?),
            limits: options.limits,
            grants: GrantRegistry::default(),
            datasets: Arc::new(options.datasets.into_iter().collect()),
            session_hours: options.session_hours,
            identities: Identities::default(),
            clock: Clock::system(),
            outbox_written: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// A platform on an in-memory store, for tests: `datasets` are names with their suppliers.
    pub async fn in_memory(datasets: Vec<(String, Option<String>)>) -> Result<Platform, OpenError> {
        let store = Store::connect("sqlite::memory:").await?;
        settle_grants(&store, Clock::system().now()).await?;
        Ok(Platform {
            store,
            calendar: Arc::new(load_calendar(None)?),
            limits: StageLimits::default(),
            grants: GrantRegistry::default(),
            datasets: Arc::new(datasets.into_iter().collect()),
            session_hours: 8,
            identities: Identities::default(),
            clock: Clock::system(),
            outbox_written: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// The time on the platform's clock: Beijing wall time (see [`Clock::now`]). Workflow
    /// deadlines, grant validity and daily quotas are counted in Beijing calendar days.
    pub fn now(&self) -> NaiveDateTime {
        self.clock.now()
    }

    /// The platform reading its time from `clock`, as tests that cross deadlines do.
    pub fn with_clock(mut self, clock: impl Into<Clock>) -> Platform {
        self.clock = clock.into();
        self
    }

    // ---- Catalog ------------------------------------------------------------------------

    /// Checks a catalog entry of `supplier` before it is stored.
    async fn check_resource(&self, input: &ResourceInput, supplier: &str) -> Result<(), PlatformError> {
        if input.code.trim().is_empty() || input.name.trim().is_empty() {
            return Err(invalid("code and name must not be empty"));
        }
        if input.items.is_empty() {
            return Err(invalid("items: a resource has at least one information item"));
        }
        let mut names: Vec<&str> = input.items.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("items: {} appears twice", pair[0])));
        }
        if input.share_type == ShareType::Conditional
            && input.share_condition.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            return Err(invalid("share_condition: a conditional resource states its condition"));
        }
        if let Some(item) = &input.division_item
            && !input.items.iter().any(|i| &i.name == item)
        {
            return Err(invalid(format!("division_item {item:?} is not one of the resource's items")));
        }
        if input.share_methods.is_empty() {
            return Err(invalid("share_methods: name at least one"));
        }
        match self.datasets.get(&input.dataset) {
            None => {
                return Err(PlatformError::unprocessable(
                    "unknown_dataset",
                    "Unknown dataset",
                    format!(
                        "dataset {:?} is not configured; known: {:?}",
                        input.dataset,
                        self.datasets.keys().collect::<Vec<_>>()
                    ),
                ));
            }
            // A department shares only what it supplies: binding a resource to another
            // department's dataset would let its own approval release that department's data.
            Some(owner) if owner.as_deref() != Some(supplier) => {
                return Err(PlatformError::new(
                    ErrorKind::Forbidden,
                    "dataset_not_owned",
                    "Dataset not owned",
                    format!(
                        "dataset {:?} is not supplied by department {supplier}; a resource can only be made over \
                         its own department's datasets",
                        input.dataset
                    ),
                ));
            }
            Some(_) => {}
        }
        if input.share_type == ShareType::NotShared && input.legal_basis.trim().is_empty() {
            return Err(invalid("legal_basis: a resource not shared states the basis for not sharing it"));
        }
        let mut related: Vec<&str> = input.related_resources.iter().map(String::as_str).collect();
        related.sort_unstable();
        if related.windows(2).any(|w| w[0] == w[1]) || related.contains(&input.code.as_str()) {
            return Err(invalid("related_resources: name each other resource once, not the resource itself"));
        }
        for code in related {
            if self.store.newest_resource_version(code).await? == 0 {
                return Err(PlatformError::unprocessable(
                    "unknown_resource",
                    "Unknown resource",
                    format!("related resource {code} is not in the catalog"),
                ));
            }
        }
        for code in &input.service_items {
            self.store.service_item(code).await.map_err(|_| {
                PlatformError::unprocessable(
                    "unknown_service_item",
                    "Unknown service item",
                    format!("service item {code} is not registered"),
                )
            })?;
        }
        Ok(())
    }

    /// Registers a new resource of the caller's department as version 1.
    pub async fn create_resource(
        &self,
        caller: &Caller,
        input: ResourceInput,
    ) -> Result<Resource, PlatformError> {
        caller.require(&[UserRole::SupplierAdmin])?;
        let supplier = caller.department();
        if !supplier.has_role(DepartmentRole::Supplier) {
            return Err(PlatformError::forbidden("the caller's department is not a supplier"));
        }
        self.check_resource(&input, &supplier.code).await?;
        if self.store.newest_resource_version(&input.code).await? > 0 {
            return Err(PlatformError::new(
                ErrorKind::Conflict,
                "already_exists",
                "Already exists",
                format!("resource {} exists; edit it to make a new version", input.code),
            ));
        }
        let resource = resource_from(input, 1, &supplier.code);
        self.store.put_resource_version(&resource, &caller.actor(), self.now()).await?;
        self.policy_changed().await?;
        Ok(resource)
    }

    /// Stores an edit of a resource as its next version. `base_version` is the version the
    /// edit was made from; an edit of an outdated version is a conflict.
    pub async fn edit_resource(
        &self,
        caller: &Caller,
        code: &str,
        base_version: u32,
        input: ResourceInput,
    ) -> Result<Resource, PlatformError> {
        caller.require(&[UserRole::SupplierAdmin])?;
        let current = self.store.resource(code, None).await?;
        if current.supplier != caller.department().code {
            return Err(PlatformError::forbidden(format!("resource {code} belongs to another supplier")));
        }
        if input.code != code {
            return Err(invalid("code: a resource's code cannot change"));
        }
        if base_version != current.version {
            return Err(PlatformError::conflict(format!(
                "resource {code} is at version {}, the edit was made on version {base_version}",
                current.version
            )));
        }
        self.check_resource(&input, &current.supplier).await?;
        let resource = resource_from(input, current.version + 1, &current.supplier);
        self.check_edit_keeps_grants(&current, &resource).await?;
        self.store.put_resource_version(&resource, &caller.actor(), self.now()).await?;
        // Items withdrawn from sharing stop flowing at once, under every grant.
        self.policy_changed().await?;
        Ok(resource)
    }

    /// Refuses an edit that would change what grants still in force read beyond what was
    /// approved. Grants fix their items and masks when approved, but read the current version's
    /// dataset, rows (its division item) and share methods, so an edit may not re-point the
    /// dataset, change the division item or offer a new kind of call while any grant on the
    /// resource can still be used. Narrowing edits (withdrawing items or methods) stay allowed:
    /// they take effect under every grant at once.
    async fn check_edit_keeps_grants(
        &self,
        current: &Resource,
        next: &Resource,
    ) -> Result<(), PlatformError> {
        let mut widenings = Vec::new();
        if next.dataset != current.dataset {
            widenings.push(format!("dataset {:?} → {:?}", current.dataset, next.dataset));
        }
        if next.division_item != current.division_item {
            widenings.push(format!("division_item {:?} → {:?}", current.division_item, next.division_item));
        }
        let added: Vec<_> =
            next.share_methods.iter().filter(|m| !current.share_methods.contains(m)).collect();
        if !added.is_empty() {
            widenings.push(format!("share_methods adds {added:?}"));
        }
        if widenings.is_empty() {
            return Ok(());
        }
        let today = self.now().date();
        let live: Vec<String> = self
            .store
            .grants()
            .await?
            .into_iter()
            .filter(|g| {
                g.grant.resource_code == current.code
                    && matches!(
                        g.grant.effective(today),
                        tongban_policy::grant::Effective::Active
                            | tongban_policy::grant::Effective::Suspended
                            | tongban_policy::grant::Effective::NotYetValid
                    )
            })
            .map(|g| g.grant.id)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        Err(PlatformError::new(
            ErrorKind::Conflict,
            "edit_widens_grants",
            "Edit widens grants",
            format!(
                "resource {} has grants that can still be used ({}); the edit would change what they read ({}). \
                 Revoke them first, or make a new resource and let demands on it be reviewed",
                current.code,
                live.join(", "),
                widenings.join("; ")
            ),
        ))
    }

    // ---- Demands ------------------------------------------------------------------------

    /// Files a demand as a draft.
    pub async fn file_demand(
        &self,
        caller: &Caller,
        input: DemandInput,
    ) -> Result<DemandRecord, PlatformError> {
        self.file_demand_at(caller, input, self.now()).await
    }

    /// Files a demand as a draft at `now`: the demo seeds demands filed in the past this way,
    /// so that the review queue has work that is already overdue.
    pub async fn file_demand_at(
        &self,
        caller: &Caller,
        input: DemandInput,
        now: NaiveDateTime,
    ) -> Result<DemandRecord, PlatformError> {
        caller.require(&[UserRole::Demander])?;
        let applicant = caller.department();
        if !applicant.has_role(DepartmentRole::Demander) {
            return Err(PlatformError::forbidden("the caller's department is not a demanding department"));
        }
        for (field, value) in [
            ("purpose", &input.purpose),
            ("legal_basis", &input.legal_basis),
            ("service_item", &input.service_item),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(format!("{field} must not be empty")));
            }
        }
        let unknown = || {
            PlatformError::unprocessable(
                "unknown_resource",
                "Unknown resource",
                format!("resource {} is not in the catalog", input.resource_code),
            )
        };
        // A remote id names a resource in a peer gateway's catalog.
        let remote = self.remote_resource(&input.resource_code).await?;
        let resource = match &remote {
            Some((_, resource)) => resource.clone(),
            None if federation::split_remote_id(&input.resource_code).is_some() => return Err(unknown()),
            None => self.store.resource(&input.resource_code, None).await.map_err(|e| match e {
                crate::store::StoreError::NotFound(_) => unknown(),
                other => other.into(),
            })?,
        };
        check_demand_terms(&resource, &input.terms, now.date())?;
        if !resource.service_items.contains(&input.service_item) {
            return Err(PlatformError::unprocessable(
                "service_item_not_served",
                "Service item not served",
                format!(
                    "resource {} does not serve service item {}; it serves {:?}",
                    resource.code, input.service_item, resource.service_items
                ),
            ));
        }
        if let Some(system_id) = &input.system_id {
            let system =
                self.store.system(system_id).await.ok().filter(|s| s.department_code == applicant.code);
            if system.is_none() {
                return Err(invalid(format!(
                    "system_id {system_id} is not a system of the caller's department"
                )));
            }
        }
        let workflow = Demand::draft(
            input.terms.clone(),
            resource.needs_supplier_review(input.terms.items.iter().map(String::as_str)),
        );
        let filing = DemandFiling {
            applicant_department: applicant.code.clone(),
            applicant_system: input.system_id,
            resource_code: resource.code.clone(),
            resource_version: i64::from(resource.version),
            supplier_department: resource.supplier.clone(),
            service_item: input.service_item,
            purpose: input.purpose,
            legal_basis: input.legal_basis,
            workflow,
            crossing: None,
        };
        let filing = match &remote {
            Some((catalog, resource)) => {
                Platform::remote_filing(catalog, resource, &input.resource_code, filing)
            }
            None => filing,
        };
        Ok(self.store.create_demand(filing, now).await?)
    }

    /// The parties of a demand, and the province whose office reviews it here.
    async fn parties(
        &self,
        demand: &DemandRecord,
    ) -> Result<(Department, Department, String), PlatformError> {
        let Some(crossing) = &demand.filing.crossing else {
            let applicant = self.store.department(&demand.filing.applicant_department).await?;
            let supplier = self.store.department(&demand.filing.supplier_department).await?;
            let office = supplier.province().to_owned();
            return Ok((applicant, supplier, office));
        };
        // Across gateways one party is another province's: stated by its gateway, or for a
        // supplier, known from the catalog its gateway published.
        let supplier_region = match federation::split_remote_id(&demand.filing.resource_code) {
            Some((region, _)) => region.to_owned(),
            None => String::new(),
        };
        let applicant = self.party(&demand.filing.applicant_department, DepartmentRole::Demander, "").await?;
        let supplier = self
            .party(&demand.filing.supplier_department, DepartmentRole::Supplier, &supplier_region)
            .await?;
        let office = match crossing.side {
            tongban_policy::workflow::Side::Home => applicant.province(),
            tongban_policy::workflow::Side::Supplier => supplier.province(),
        }
        .to_owned();
        Ok((applicant, supplier, office))
    }

    /// The demands `caller` may read, as a filter narrowing `asked`: a department its own
    /// demands and those it must answer, reviewers those on their province's data, those who
    /// oversee the platform all. Every route that lists demands, or counts them, reads through
    /// this one rule; [`Platform::may_read_demand`] is the same rule for one demand.
    pub fn demand_scope(
        &self,
        caller: &Caller,
        mut asked: crate::store::DemandFilter,
    ) -> Result<crate::store::DemandFilter, PlatformError> {
        let user = caller.require(&[
            UserRole::Demander,
            UserRole::SupplierAdmin,
            UserRole::DataOfficeReviewer,
            UserRole::Operator,
            UserRole::PlatformAdmin,
        ])?;
        let department = caller.department();
        if caller.oversees() {
            // Everything.
        } else if user.roles.contains(&UserRole::DataOfficeReviewer) {
            if !department.has_role(DepartmentRole::DataOffice) {
                return Err(PlatformError::forbidden("reviewers belong to a data office"));
            }
            // A data office reviews the demands on its own province's data, and those its
            // province's departments send to other provinces' gateways.
            asked.office_province = Some(department.province().to_owned());
        } else if user.roles.contains(&UserRole::Demander) {
            // Departments see their side of the workflow only.
            if asked.applicant_department.as_ref().is_some_and(|a| a != &department.code) {
                return Err(PlatformError::forbidden("demanders list their own department's demands"));
            }
            asked.applicant_department = Some(department.code.clone());
        } else {
            if asked.supplier_department.as_ref().is_some_and(|s| s != &department.code) {
                return Err(PlatformError::forbidden("suppliers list the demands on their own resources"));
            }
            asked.supplier_department = Some(department.code.clone());
        }
        Ok(asked)
    }

    /// Whether the caller may read a demand: its parties, the reviewers of the supplier's
    /// province, and those who oversee the platform.
    pub async fn may_read_demand(
        &self,
        caller: &Caller,
        demand: &DemandRecord,
    ) -> Result<bool, PlatformError> {
        if caller.oversees() {
            return Ok(true);
        }
        let Caller::User { user, department } = caller else { return Ok(false) };
        let (applicant, supplier, office_province) = self.parties(demand).await?;
        Ok(department.code == applicant.code
            || department.code == supplier.code
            || !workflow_roles(
                &user.roles,
                department,
                DemandParties {
                    applicant: &applicant,
                    supplier: &supplier,
                    office_province: &office_province,
                },
            )
            .is_empty())
    }

    /// Takes `action` on demand `id` as read at `expected_version`. An approval compiles the
    /// grant in the same write, and the grant registry is reloaded before this returns.
    pub async fn act_on_demand(
        &self,
        caller: &Caller,
        id: &str,
        expected_version: i64,
        action: Action,
    ) -> Result<DemandRecord, PlatformError> {
        self.act_on_demand_at(caller, id, expected_version, action, self.now()).await
    }

    /// Takes `action` on a demand at `now` (see [`Platform::file_demand_at`]).
    pub async fn act_on_demand_at(
        &self,
        caller: &Caller,
        id: &str,
        expected_version: i64,
        action: Action,
        now: NaiveDateTime,
    ) -> Result<DemandRecord, PlatformError> {
        let Caller::User { user, department } = caller else {
            return Err(PlatformError::forbidden("systems do not take part in the workflow"));
        };
        let record = self.store.demand(id).await?;
        let (applicant, supplier, office_province) = self.parties(&record).await?;
        let held = workflow_roles(
            &user.roles,
            department,
            DemandParties { applicant: &applicant, supplier: &supplier, office_province: &office_province },
        );
        let Some(&first) = held.first() else {
            return Err(PlatformError::forbidden(format!("{} has no part in demand {id}", user.username)));
        };
        if record.version != expected_version {
            return Err(PlatformError::conflict(format!(
                "demand {id} is at version {}, the action was taken on version {expected_version}",
                record.version
            )));
        }
        let mut workflow = record.filing.workflow.clone();
        let kind = action.kind();
        // Whether the supplier must answer follows from what is asked now, of the catalog as it
        // is now: a resubmission may ask for conditional items the first filing did not, and a
        // supplier may have made an item conditional since. Once needed, it stays needed.
        let resource = self.resource_of(&record).await?;
        let asked = match &action {
            Action::Resubmit { terms } => {
                check_demand_terms(&resource, terms, now.date())?;
                terms
            }
            _ => &workflow.requested,
        };
        workflow.supplier_review |= resource.needs_supplier_review(asked.items.iter().map(String::as_str));
        // A person may hold several roles on one demand; act in the one the step belongs to.
        let role: Role = held
            .iter()
            .copied()
            .find(|r| next_state(workflow.state, kind, *r, workflow.supplier_review).is_some())
            .unwrap_or(first);
        let actor = caller.actor();
        // Across gateways each step is taken on one side only.
        if let Some(crossing) = &record.filing.crossing
            && tongban_policy::workflow::acting_side(workflow.state, kind, role) != crossing.side
        {
            return Err(PlatformError::new(
                ErrorKind::Forbidden,
                "step_at_peer",
                "Step taken at the peer gateway",
                format!("this step on demand {id} is taken at the other gateway ({})", crossing.peer),
            ));
        }
        workflow.apply(&actor, role, action.clone(), now, &self.calendar, &self.limits)?;
        let to_peer = self.step_message(&record, &workflow, action, role, &actor, now).await?;
        let grant = match (&workflow.approved, workflow.state) {
            (Some(terms), tongban_policy::workflow::DemandState::Approved) => {
                let source = GrantSource {
                    demand_id: &record.id,
                    consumer_department: &record.filing.applicant_department,
                    consumer_system: record.filing.applicant_system.as_deref(),
                    service_item: &record.filing.service_item,
                    purpose: &record.filing.purpose,
                };
                Some(Grant::compile(uuid::Uuid::now_v7().to_string(), source, terms, &resource, now.date())?)
            }
            _ => None,
        };
        let updated = self
            .store
            .update_demand(
                id,
                expected_version,
                &workflow,
                grant.as_ref().map(|g| (g, actor.as_str())),
                to_peer.as_ref().map(|(peer, message)| (peer.as_str(), message)),
                now,
            )
            .await?;
        if to_peer.is_some() || (grant.is_some() && record.filing.crossing.is_some()) {
            self.wake_outbox();
        }
        if grant.is_some() {
            self.policy_changed().await?;
        }
        Ok(updated)
    }

    // ---- Grants -------------------------------------------------------------------------

    /// A page of the grants `caller` may read, by the rule of [`Platform::may_read_grant`]
    /// written as the store's filter: a department's own, those on its resources, a
    /// reviewer's on its province's data, and all for those who oversee the platform.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        request: &store::PageRequest,
    ) -> Result<store::Page<store::GrantRecord>, PlatformError> {
        let filter = if caller.oversees() {
            store::GrantFilter::default()
        } else {
            let department = caller.department();
            let reviews = matches!(caller, Caller::User { user, .. }
                if user.roles.contains(&UserRole::DataOfficeReviewer)
                    && department.has_role(tongban_policy::org::DepartmentRole::DataOffice));
            store::GrantFilter {
                party: Some(department.code.clone()),
                reviewing_province: reviews.then(|| department.province().to_owned()),
            }
        };
        Ok(self.store.grants_page(&filter, request).await?)
    }

    /// Whether the caller may read a grant.
    /// Whether the caller may read a grant: its consumer, the supplier, the reviewers of the
    /// supplier's province, and those who oversee the platform.
    pub async fn may_read_grant(&self, caller: &Caller, grant: &Grant) -> Result<bool, PlatformError> {
        if caller.oversees() {
            return Ok(true);
        }
        let department = caller.department();
        if department.code == grant.consumer_department {
            return Ok(true);
        }
        let resource = self.store.resource(&grant.resource_code, Some(grant.resource_version)).await?;
        if resource.supplier == department.code {
            return Ok(true);
        }
        let supplier = self.store.department(&resource.supplier).await?;
        Ok(matches!(caller, Caller::User { user, .. } if reviews_for(&user.roles, department, &supplier)))
    }

    /// Suspends, resumes, revokes or narrows a grant: the supplier's administrators and the
    /// reviewers of the supplier's province may.
    pub async fn change_grant(
        &self,
        caller: &Caller,
        id: &str,
        expected_version: i64,
        change: GrantChange,
        reason: &str,
    ) -> Result<GrantRecord, PlatformError> {
        let user = caller.require(&[UserRole::SupplierAdmin, UserRole::DataOfficeReviewer])?;
        if reason.trim().is_empty() {
            return Err(PlatformError::unprocessable(
                "missing_reason",
                "Reason missing",
                "a grant change records its reason",
            ));
        }
        let record = self.store.grant(id).await?;
        let resource =
            self.store.resource(&record.grant.resource_code, Some(record.grant.resource_version)).await?;
        let supplier = self.store.department(&resource.supplier).await?;
        let department = caller.department();
        let supplier_admin =
            user.roles.contains(&UserRole::SupplierAdmin) && department.code == supplier.code;
        let reviewer = reviews_for(&user.roles, department, &supplier);
        if !(supplier_admin || reviewer) {
            return Err(PlatformError::forbidden(format!("{} may not change grant {id}", user.username)));
        }
        if record.version != expected_version {
            return Err(PlatformError::conflict(format!(
                "grant {id} is at version {}, the change was made on version {expected_version}",
                record.version
            )));
        }
        let next = record.grant.change(&change)?;
        let stored = self
            .store
            .update_grant(&next, expected_version, &caller.actor(), Some(reason), self.now())
            .await?;
        self.policy_changed().await?;
        // A grant compiled for another gateway's department goes to that gateway's mirror.
        self.wake_outbox();
        Ok(stored)
    }

    /// Tells the outbox that messages for peers may be waiting.
    pub fn wake_outbox(&self) {
        self.outbox_written.send_modify(|written| *written = written.wrapping_add(1));
    }

    /// Registers one service item, for the API and the demo alike.
    pub async fn create_service_item(
        &self,
        caller: &Caller,
        input: ServiceItemInput,
    ) -> Result<ServiceItem, PlatformError> {
        caller.require(&[UserRole::PlatformAdmin])?;
        let problems = input.problems();
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let item = ServiceItem::new(input, ItemOrigin::Registered, caller.actor(), self.now_rfc3339());
        self.store.create_service_item(&item).await?;
        Ok(item)
    }

    /// Imports a service-item list in the CSV format of `service_items`: new codes are
    /// registered, changed ones stored anew, and nothing at all is written when any row is bad.
    pub async fn import_service_items(
        &self,
        caller: &Caller,
        text: &str,
    ) -> Result<ImportSummary, PlatformError> {
        caller.require(&[UserRole::PlatformAdmin])?;
        let inputs = service_items::parse(text).map_err(|e| {
            PlatformError::unprocessable(
                "invalid_service_item_list",
                "Invalid service-item list",
                e.to_string(),
            )
        })?;
        let stored: HashMap<String, ServiceItem> =
            self.store.service_items().await?.into_iter().map(|i| (i.code.clone(), i)).collect();
        let (mut created, mut updated, mut unchanged) = (Vec::new(), Vec::new(), 0);
        let at = self.now_rfc3339();
        for input in inputs {
            match stored.get(&input.code) {
                Some(current) if !current.differs_from(&input) => unchanged += 1,
                Some(_) => {
                    updated.push(ServiceItem::new(input, ItemOrigin::Import, caller.actor(), at.clone()))
                }
                None => created.push(ServiceItem::new(input, ItemOrigin::Import, caller.actor(), at.clone())),
            }
        }
        self.store.import_service_items(&created, &updated).await?;
        Ok(ImportSummary {
            created: created.into_iter().map(|i| i.code).collect(),
            updated: updated.into_iter().map(|i| i.code).collect(),
            unchanged,
        })
    }

    fn now_rfc3339(&self) -> String {
        tongban_policy::time::to_rfc3339(self.now())
    }
}

/// What an import of a service-item list did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Codes registered for the first time.
    pub created: Vec<String>,
    /// Codes whose statement changed and was stored anew.
    pub updated: Vec<String>,
    /// How many items the list states as they are already stored.
    pub unchanged: usize,
}

fn resource_from(input: ResourceInput, version: u32, supplier: &str) -> Resource {
    Resource {
        code: input.code,
        version,
        name: input.name,
        supplier: supplier.to_owned(),
        summary: input.summary,
        share_type: input.share_type,
        share_condition: input.share_condition,
        share_methods: input.share_methods,
        update_cycle: input.update_cycle,
        dataset: input.dataset,
        items: input.items,
        service_items: input.service_items,
        division_item: input.division_item,
        format: input.format,
        open_type: input.open_type,
        class: input.class,
        related_resources: input.related_resources,
        legal_basis: input.legal_basis,
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn the_platform_keeps_beijing_time_whatever_the_servers_zone() {
        // Computed from UTC, so the process's own zone (TZ) plays no part.
        let beijing = chrono::Utc::now().naive_utc() + chrono::Duration::hours(8);
        let drift = (Clock::system().now() - beijing).num_seconds().abs();
        assert!(drift <= 5, "platform time is Beijing time (drift {drift} s)");
    }
}
