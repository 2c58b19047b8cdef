//! Demands that cross gateways: filed at the demanding department's home gateway on a
//! resource in a peer's catalog, reviewed for conformity there, then answered at the
//! supplier's gateway, where the grant is compiled and enforced.
//!
//! Each step is taken on one side only ([`acting_side`]) and reaches the other side as a
//! [`DemandStep`] through the outbox, written in the transaction that stores the step. The
//! receiver replays the step on its own copy with the workflow's own rules, so a peer can
//! take no step that is not its own and no step the workflow forbids; it takes from the
//! sender only the clock of a stage the sender runs, under the sender's calendar.

use chrono::NaiveDateTime;
use tongban_policy::catalog::{Resource, ShareType};
use tongban_policy::org::{Department, DepartmentRole};
use tongban_policy::workflow::{ActionKind, Demand, DemandState, Role, Side, StageClock, acting_side};

use crate::federation::{
    Crossing, Delivery, DemandStep, GrantMirror, PeerMessage, RemoteCatalog, RemoteDepartment,
    split_remote_id, stage_side,
};
use crate::store::{DemandFiling, DemandRecord, PeerChange, Received, StoreError};
use crate::{Platform, PlatformError, check_demand_terms};

/// A peer gateway as this gateway's configuration names it: who sent a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGateway {
    pub name: String,
    /// Its province (GB/T 2260 code).
    pub region: String,
}

impl PeerGateway {
    fn province(&self) -> &str {
        self.region.get(..2).unwrap_or_default()
    }
}

/// A refusal of a peer's message, with the stable code the sender records.
fn refused(code: &'static str, detail: impl Into<String>) -> PlatformError {
    PlatformError::unprocessable(code, "Refused from a peer", detail)
}

impl Platform {
    /// A resource of a peer's catalog by its remote id (`region:code`), with the catalog it
    /// came from.
    pub async fn remote_resource(
        &self,
        id: &str,
    ) -> Result<Option<(RemoteCatalog, Resource)>, PlatformError> {
        let Some((region, code)) = split_remote_id(id) else { return Ok(None) };
        for catalog in self.store.remote_catalogs().await? {
            if catalog.region != region {
                continue;
            }
            let found =
                catalog.document.as_ref().and_then(|d| d.resources.iter().find(|r| r.code == code)).cloned();
            if let Some(resource) = found {
                return Ok(Some((catalog, resource)));
            }
        }
        Ok(None)
    }

    /// The resource a demand is on: the local catalog's, or at the home gateway of a demand
    /// that crosses gateways, the peer's as last received.
    pub(crate) async fn resource_of(&self, demand: &DemandRecord) -> Result<Resource, PlatformError> {
        if demand.filing.crossing.as_ref().is_some_and(|c| c.side == Side::Home) {
            return match self.remote_resource(&demand.filing.resource_code).await? {
                Some((_, resource)) => Ok(resource),
                None => Err(PlatformError::unprocessable(
                    "unknown_resource",
                    "Unknown resource",
                    format!("resource {} is no longer in its gateway's catalog", demand.filing.resource_code),
                )),
            };
        }
        Ok(self.store.resource(&demand.filing.resource_code, None).await?)
    }

    /// A department by code: this gateway's own, else one a peer stated, else (for the supplier
    /// of a remote resource) what the remote catalog tells of it.
    pub(crate) async fn party(
        &self,
        code: &str,
        role: DepartmentRole,
        region: &str,
    ) -> Result<Department, PlatformError> {
        match self.store.department(code).await {
            Ok(department) => return Ok(department),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(match self.store.remote_department(code).await? {
            Some(remote) => {
                Department { code: remote.code, name: remote.name, region: remote.region, roles: vec![role] }
            }
            None => Department {
                code: code.to_owned(),
                name: code.to_owned(),
                region: region.to_owned(),
                roles: vec![role],
            },
        })
    }

    /// The filing of a demand on a peer's resource, as the home gateway stores it: the
    /// supplier's answer is always needed, since the grant is the supplier gateway's to make.
    pub(crate) fn remote_filing(
        catalog: &RemoteCatalog,
        resource: &Resource,
        resource_id: &str,
        mut filing: DemandFiling,
    ) -> DemandFiling {
        filing.resource_code = resource_id.to_owned();
        filing.supplier_department = resource.supplier.clone();
        filing.workflow.supplier_review = true;
        filing.crossing = Some(Crossing { peer: catalog.peer.clone(), side: Side::Home });
        filing
    }

    /// The message carrying a step just taken on a demand that crosses gateways, when the
    /// other side must learn of it: every step from the home office's first conformity pass
    /// on. Steps before it stay at home; the supplier has nothing to answer yet.
    pub(crate) async fn step_message(
        &self,
        record: &DemandRecord,
        workflow: &Demand,
        action: tongban_policy::workflow::Action,
        role: Role,
        actor: &str,
        at: NaiveDateTime,
    ) -> Result<Option<(String, PeerMessage)>, PlatformError> {
        let Some(crossing) = &record.filing.crossing else { return Ok(None) };
        if !workflow.history.iter().any(|t| t.kind == ActionKind::PassConformity) {
            return Ok(None);
        }
        let filing = &record.filing;
        let applicant = self.party(&filing.applicant_department, DepartmentRole::Demander, "").await?;
        let resource_code = match crossing.side {
            Side::Home => {
                split_remote_id(&filing.resource_code).map_or(filing.resource_code.as_str(), |(_, c)| c)
            }
            Side::Supplier => filing.resource_code.as_str(),
        };
        let step = DemandStep {
            demand_id: record.id.clone(),
            applicant: RemoteDepartment {
                code: applicant.code,
                name: applicant.name,
                region: applicant.region,
            },
            applicant_system: filing.applicant_system.clone(),
            resource_code: resource_code.to_owned(),
            resource_version: filing.resource_version,
            supplier_department: filing.supplier_department.clone(),
            service_item: filing.service_item.clone(),
            purpose: filing.purpose.clone(),
            legal_basis: filing.legal_basis.clone(),
            actor: actor.to_owned(),
            role,
            action,
            at,
            workflow: workflow.clone(),
        };
        Ok(Some((crossing.peer.clone(), PeerMessage::DemandStep(Box::new(step)))))
    }

    /// Applies message `seq` from `peer`. Messages are applied exactly once and in order: a
    /// repeat is acknowledged without effect, and one out of sequence is refused with the
    /// number expected. A message whose content is refused still takes its place in the
    /// sequence, so one bad message cannot stop those behind it; the sender records it refused.
    pub async fn receive_from_peer(
        &self,
        peer: &PeerGateway,
        seq: i64,
        message: PeerMessage,
    ) -> Result<Delivery, PlatformError> {
        let position = self.store.inbox_position(&peer.name).await?;
        if seq <= position {
            return Ok(Delivery { applied: false, clock: None });
        }
        if seq != position + 1 {
            return Err(PlatformError::new(
                crate::ErrorKind::Conflict,
                "out_of_sequence",
                "Message out of sequence",
                format!("message {seq} from {} arrived before message {}", peer.name, position + 1),
            ));
        }
        let now = self.now();
        let outcome = match message {
            PeerMessage::DemandStep(step) => self.receive_step(peer, seq, *step, now).await,
            PeerMessage::GrantChanged { grant } => self
                .receive_mirror(peer, seq, *grant, now)
                .await
                .map(|applied| Delivery { applied, clock: None }),
        };
        match outcome {
            Err(error) if matches!(error.kind, crate::ErrorKind::Invalid | crate::ErrorKind::Forbidden) => {
                tracing::warn!(peer = %peer.name, seq, code = error.code, detail = %error.detail, "refused a peer's message");
                self.store.receive_from_peer(&peer.name, seq, PeerChange::Refused, now).await?;
                Err(error)
            }
            other => other,
        }
    }

    /// Refuses message `seq` from `peer`, which could not be read, taking its place in the
    /// sequence when it is the next one, so the messages behind it can be applied.
    pub async fn refuse_unreadable(&self, peer: &PeerGateway, seq: i64, why: &str) -> PlatformError {
        let error = refused("unreadable_message", format!("message {seq} is not a readable message: {why}"));
        match self.store.inbox_position(&peer.name).await {
            Ok(position) if position + 1 == seq => {
                tracing::warn!(peer = %peer.name, seq, why, "refused an unreadable message from a peer");
                match self.store.receive_from_peer(&peer.name, seq, PeerChange::Refused, self.now()).await {
                    Ok(_) => error,
                    Err(e) => e.into(),
                }
            }
            Ok(_) => error,
            Err(e) => e.into(),
        }
    }

    async fn receive_step(
        &self,
        peer: &PeerGateway,
        seq: i64,
        step: DemandStep,
        now: NaiveDateTime,
    ) -> Result<Delivery, PlatformError> {
        let actor = if step.actor.contains('/') {
            step.actor.clone()
        } else {
            format!("{}/{}", peer.name, step.actor)
        };
        let Some(record) = self.store.demand_if_any(&step.demand_id).await? else {
            return self.receive_offer(peer, seq, step, actor, now).await;
        };
        let Some(crossing) = record.filing.crossing.clone().filter(|c| c.peer == peer.name) else {
            return Err(PlatformError::forbidden(format!(
                "demand {} is not shared with gateway {}",
                step.demand_id, peer.name
            )));
        };
        let sender = crossing.side.other();
        let mut workflow = record.filing.workflow.clone();
        let kind = step.action.kind();
        if acting_side(workflow.state, kind, step.role) != sender {
            return Err(PlatformError::forbidden(format!(
                "{kind:?} by {:?} on demand {} in state {:?} is not the sending gateway's to take",
                step.role, step.demand_id, workflow.state
            )));
        }
        if let tongban_policy::workflow::Action::Resubmit { terms } = &step.action
            && crossing.side == Side::Supplier
        {
            let resource = self.store.resource(&record.filing.resource_code, None).await?;
            check_demand_terms(&resource, terms, now.date())?;
        }
        workflow.apply(&actor, step.role, step.action, step.at, &self.calendar, &self.limits)?;
        // The clock of a stage the sender runs is the sender's, under its calendar; that of a
        // stage this side runs was just computed here and goes back in the answer.
        let mut clock = None;
        if let Some(current) = workflow.clock {
            if stage_side(current.stage) == sender {
                workflow.clock = step.workflow.clock;
            } else {
                clock = Some(current);
            }
        }
        if let (Some(mine), Some(theirs)) = (workflow.history.last_mut(), step.workflow.history.last())
            && theirs.stage_deadline.is_some()
            && theirs.from.running_stage().is_some_and(|s| stage_side(s) == sender)
        {
            mine.stage_deadline = theirs.stage_deadline;
        }
        let change =
            PeerChange::Demand { id: &record.id, expected_version: record.version, workflow: &workflow };
        let received = self.store.receive_from_peer(&peer.name, seq, change, now).await?;
        Ok(Delivery { applied: received == Received::Applied, clock })
    }

    /// The first step of a demand from a peer: its home office's conformity pass, which hands
    /// the demand to this gateway, the supplier's.
    async fn receive_offer(
        &self,
        peer: &PeerGateway,
        seq: i64,
        step: DemandStep,
        actor: String,
        now: NaiveDateTime,
    ) -> Result<Delivery, PlatformError> {
        if step.action.kind() != ActionKind::PassConformity
            || step.role != Role::DataOffice
            || step.workflow.state != DemandState::SupplierReview
        {
            return Err(refused(
                "unknown_demand",
                format!(
                    "demand {} is unknown here; a peer hands a demand over with its office's conformity pass",
                    step.demand_id
                ),
            ));
        }
        let resource = match self.store.resource(&step.resource_code, None).await {
            Ok(resource) => resource,
            Err(StoreError::NotFound(_)) => {
                return Err(refused(
                    "unknown_resource",
                    format!("resource {} is not in this gateway's catalog", step.resource_code),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if resource.supplier != step.supplier_department || resource.share_type == ShareType::NotShared {
            return Err(refused(
                "unknown_resource",
                format!("resource {} is not shared by {}", resource.code, step.supplier_department),
            ));
        }
        // A peer speaks for the departments of its own province only.
        let applicant = Department {
            code: step.applicant.code.clone(),
            name: step.applicant.name.clone(),
            region: step.applicant.region.clone(),
            roles: vec![DepartmentRole::Demander],
        };
        applicant.validate().map_err(|e| refused("invalid_department", format!("the applicant: {e}")))?;
        if applicant.province() != peer.province() || step.applicant.code.get(2..4) != Some(peer.province()) {
            return Err(PlatformError::forbidden(format!(
                "gateway {} speaks for province {}, not for department {} of {}",
                peer.name, peer.region, applicant.code, applicant.region
            )));
        }
        let local = match self.store.department(&applicant.code).await {
            Ok(local) if local.province() != peer.province() => {
                return Err(PlatformError::forbidden(format!(
                    "department {} is not of {}",
                    local.code, peer.region
                )));
            }
            Ok(_) => true,
            Err(StoreError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let mut workflow = step.workflow;
        check_demand_terms(&resource, &workflow.requested, now.date())?;
        if !resource.service_items.contains(&step.service_item) {
            return Err(refused(
                "service_item_not_served",
                format!("resource {} does not serve {}", resource.code, step.service_item),
            ));
        }
        // The home gateway's history stands as it told it, its actors named as theirs; the
        // supplier's stage starts here, under this gateway's calendar.
        for transition in &mut workflow.history {
            if !transition.actor.contains('/') {
                transition.actor = format!("{}/{}", peer.name, transition.actor);
            }
        }
        if let Some(last) = workflow.history.last_mut() {
            last.actor = actor;
        }
        workflow.supplier_review = true;
        workflow.approved = None;
        workflow.refusal = None;
        let today = step.at.date();
        let clock = StageClock {
            stage: tongban_policy::workflow::Stage::Supplier,
            running_since: today,
            used_before: 0,
            deadline: self.calendar.add_working_days(today, self.limits.supplier),
        };
        workflow.clock = Some(clock);
        let filing = DemandFiling {
            applicant_department: applicant.code.clone(),
            applicant_system: step.applicant_system,
            resource_code: resource.code.clone(),
            resource_version: i64::from(resource.version),
            supplier_department: resource.supplier.clone(),
            service_item: step.service_item,
            purpose: step.purpose,
            legal_basis: step.legal_basis,
            workflow,
            crossing: Some(Crossing { peer: peer.name.clone(), side: Side::Supplier }),
        };
        let change = PeerChange::NewDemand {
            id: &step.demand_id,
            filing: &filing,
            applicant: (!local).then_some(&step.applicant),
        };
        let received = self.store.receive_from_peer(&peer.name, seq, change, now).await?;
        Ok(Delivery { applied: received == Received::Applied, clock: Some(clock) })
    }

    /// A grant the supplier's gateway wrote for one of this gateway's demands, for the mirror.
    async fn receive_mirror(
        &self,
        peer: &PeerGateway,
        seq: i64,
        grant: tongban_policy::grant::Grant,
        now: NaiveDateTime,
    ) -> Result<bool, PlatformError> {
        let record = self.store.demand_if_any(&grant.demand_id).await?;
        let Some(record) = record.filter(|r| {
            r.filing.crossing.as_ref().is_some_and(|c| c.peer == peer.name && c.side == Side::Home)
        }) else {
            return Err(PlatformError::forbidden(format!(
                "grant {} names demand {}, which gateway {} does not answer",
                grant.id, grant.demand_id, peer.name
            )));
        };
        if grant.consumer_department != record.filing.applicant_department {
            return Err(PlatformError::forbidden(format!(
                "grant {} is for {}, not for the demand's department",
                grant.id, grant.consumer_department
            )));
        }
        // The grant must be on the resource the demand asked for, as the peer's catalog names
        // it: a mirror naming another resource or dataset would steer this gateway's early
        // decisions and the routing of queries to views the demand never covered.
        let asked = split_remote_id(&record.filing.resource_code).map(|(_, code)| code);
        let published = self.remote_resource(&record.filing.resource_code).await?;
        let dataset_matches =
            published.as_ref().is_none_or(|(_, resource)| resource.dataset == grant.dataset);
        if asked != Some(grant.resource_code.as_str()) || !dataset_matches {
            return Err(refused(
                "grant_mismatch",
                format!(
                    "grant {} is on {} ({}), not on the demand's resource",
                    grant.id, grant.resource_code, grant.dataset
                ),
            ));
        }
        let mirror = GrantMirror {
            peer: peer.name.clone(),
            resource_id: record.filing.resource_code.clone(),
            grant,
            received_at: now,
        };
        let received =
            self.store.receive_from_peer(&peer.name, seq, PeerChange::Mirror(&mirror), now).await?;
        Ok(received == Received::Applied)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use tongban_policy::catalog::ShareType;
    use tongban_policy::grant::{Grant, GrantSource};
    use tongban_policy::workflow::{Demand, Terms};

    use super::*;
    use crate::federation::CatalogDocument;

    /// A supplier's gateway may send the home gateway grants only on the resource each demand
    /// asked for: a grant naming another resource or dataset would steer the home gateway's
    /// early decisions and the routing of its queries.
    #[tokio::test]
    async fn a_mirrored_grant_must_be_on_the_demands_resource() {
        let platform = Platform::in_memory(Vec::new()).await.expect("platform");
        let supplier = "11410000MB0000001X";
        let household = crate::federation::tests::resource(
            "A",
            supplier,
            ShareType::Unconditional,
            &[("name", ShareType::Unconditional)],
        );
        let other = crate::federation::tests::resource(
            "B",
            supplier,
            ShareType::Unconditional,
            &[("name", ShareType::Unconditional)],
        );
        let document = CatalogDocument::publish("henan", "410000", [&household, &other]);
        let now = platform.now();
        platform.store.save_remote_catalog("henan", "410000", None, &document, now).await.expect("catalog");
        let terms = Terms {
            items: vec!["name".into()],
            division_prefix: String::new(),
            rate_per_second: 1,
            daily_quota: 1,
            valid_until: NaiveDate::from_ymd_opt(2099, 1, 1).expect("date"),
        };
        let filing = DemandFiling {
            applicant_department: "11440000MB0000002Y".into(),
            applicant_system: None,
            resource_code: "410000:A".into(),
            resource_version: 1,
            supplier_department: supplier.into(),
            service_item: "KSTB-GA-001".into(),
            purpose: "核验".into(),
            legal_basis: "依据".into(),
            workflow: Demand::draft(terms.clone(), true),
            crossing: Some(Crossing { peer: "henan".into(), side: Side::Home }),
        };
        let demand = platform.store.create_demand(filing, now).await.expect("demand");
        let grant_on = |resource: &Resource| {
            let source = GrantSource {
                demand_id: &demand.id,
                consumer_department: "11440000MB0000002Y",
                consumer_system: None,
                service_item: "KSTB-GA-001",
                purpose: "核验",
            };
            Grant::compile(format!("g-{}", resource.code), source, &terms, resource, now.date())
                .expect("grant")
        };
        let henan = PeerGateway { name: "henan".into(), region: "410000".into() };
        let send = |seq: i64, grant: Grant| {
            let (platform, henan) = (&platform, &henan);
            async move {
                platform
                    .receive_from_peer(henan, seq, PeerMessage::GrantChanged { grant: Box::new(grant) })
                    .await
            }
        };
        let wrong = send(1, grant_on(&other)).await.expect_err("another resource");
        assert_eq!(wrong.code, "grant_mismatch");
        let mut elsewhere = grant_on(&household);
        elsewhere.dataset = "social_insurance".into();
        assert_eq!(send(2, elsewhere).await.expect_err("another dataset").code, "grant_mismatch");
        assert!(send(3, grant_on(&household)).await.expect("the demand's resource").applied);
        let mirrors = platform.store.grant_mirrors(None).await.expect("mirrors");
        assert_eq!(mirrors.iter().map(|m| m.grant.id.as_str()).collect::<Vec<_>>(), ["g-A"]);
    }
}
