//! The demand → review → approval workflow (需求清单 → 符合性审查 → 供方答复 → 授权).
//!
//! A demand moves between [`DemandState`]s only by [`Action`]s that the acting [`Role`] may
//! take in the current state; anything else is refused with the reason. Review stages run
//! against working-day deadlines; a correction request (补正) pauses the stage's clock. A
//! resubmission goes back to the data office's conformity review, whoever asked for the
//! correction, since its terms may differ from everything reviewed so far: after the office's own
//! request the paused clock resumes with the days already used, after the supplier's a fresh
//! conformity stage starts.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;

/// Where a demand stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DemandState {
    /// Being written by the demanding department.
    Draft,
    /// Waiting for the data office's conformity check (符合性审查).
    Submitted,
    /// Returned by the data office for correction (补正); the conformity clock is paused.
    ConformityCorrection,
    /// Waiting for the supplier's answer (conditional resources only).
    SupplierReview,
    /// Returned by the supplier for correction; the supplier's clock is paused.
    SupplierCorrection,
    /// Approved; the approved terms compile into a grant.
    Approved,
    /// Refused by the data office at the conformity check.
    RefusedAtConformity,
    /// Refused by the supplier; the demanding department may dispute it.
    RefusedBySupplier,
    /// In coordination by the data office (争议处理).
    Disputed,
    /// Refused by the data office's final decision on a dispute.
    FinallyRefused,
    /// Withdrawn by the demanding department.
    Withdrawn,
}

impl DemandState {
    pub const ALL: [DemandState; 11] = [
        DemandState::Draft,
        DemandState::Submitted,
        DemandState::ConformityCorrection,
        DemandState::SupplierReview,
        DemandState::SupplierCorrection,
        DemandState::Approved,
        DemandState::RefusedAtConformity,
        DemandState::RefusedBySupplier,
        DemandState::Disputed,
        DemandState::FinallyRefused,
        DemandState::Withdrawn,
    ];

    /// States no action leaves. An approved demand lives on as its grant.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DemandState::Approved
                | DemandState::RefusedAtConformity
                | DemandState::FinallyRefused
                | DemandState::Withdrawn
        )
    }

    /// The review stage whose clock runs in this state, if any.
    pub fn running_stage(self) -> Option<Stage> {
        match self {
            DemandState::Submitted => Some(Stage::Conformity),
            DemandState::SupplierReview => Some(Stage::Supplier),
            DemandState::Disputed => Some(Stage::Coordination),
            _ => None,
        }
    }
}

/// A review stage with a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Conformity,
    Supplier,
    Coordination,
}

/// Who acts on a demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The demanding department.
    Applicant,
    /// The data-management office.
    DataOffice,
    /// The supplying department.
    Supplier,
}

/// What a demand asks for, or what an approval grants. Approval may narrow every term, never
/// widen one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Terms {
    /// Information items (dataset columns).
    pub items: Vec<String>,
    /// Rows: only records whose division code starts with this prefix (`""` for all).
    pub division_prefix: String,
    /// Calls per second.
    pub rate_per_second: u32,
    /// Calls per day.
    pub daily_quota: u32,
    /// Last day of validity.
    pub valid_until: NaiveDate,
}

impl Terms {
    /// Why `self` is not within `requested`, if it is not.
    pub fn widening_of(&self, requested: &Terms) -> Option<String> {
        if let Some(item) = self.items.iter().find(|i| !requested.items.contains(i)) {
            return Some(format!("item {item} was not requested"));
        }
        if self.items.is_empty() {
            return Some("an approval grants at least one item".into());
        }
        if !self.division_prefix.starts_with(&requested.division_prefix) {
            return Some(format!(
                "row scope {:?} is wider than the requested {:?}",
                self.division_prefix, requested.division_prefix
            ));
        }
        if self.rate_per_second > requested.rate_per_second {
            return Some("rate is above the requested rate".into());
        }
        if self.daily_quota > requested.daily_quota {
            return Some("daily quota is above the requested quota".into());
        }
        if self.valid_until > requested.valid_until {
            return Some("validity ends after the requested date".into());
        }
        None
    }
}

/// A reason with its basis, as a refusal must give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reasoned {
    pub reason: String,
    /// The legal or policy basis (依据).
    pub basis: String,
}

/// Something done to a demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Submit,
    PassConformity { terms: Terms },
    RefuseConformity { refusal: Reasoned },
    RequestCorrection { reason: String },
    Resubmit { terms: Terms },
    SupplierApprove { terms: Terms },
    SupplierRefuse { refusal: Reasoned },
    Dispute { reason: String },
    DecideApprove { terms: Terms },
    DecideRefuse { refusal: Reasoned },
    Withdraw { reason: String },
}

/// The kinds of [`Action`], without their payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Submit,
    PassConformity,
    RefuseConformity,
    RequestCorrection,
    Resubmit,
    SupplierApprove,
    SupplierRefuse,
    Dispute,
    DecideApprove,
    DecideRefuse,
    Withdraw,
}

impl ActionKind {
    pub const ALL: [ActionKind; 11] = [
        ActionKind::Submit,
        ActionKind::PassConformity,
        ActionKind::RefuseConformity,
        ActionKind::RequestCorrection,
        ActionKind::Resubmit,
        ActionKind::SupplierApprove,
        ActionKind::SupplierRefuse,
        ActionKind::Dispute,
        ActionKind::DecideApprove,
        ActionKind::DecideRefuse,
        ActionKind::Withdraw,
    ];
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Submit => ActionKind::Submit,
            Action::PassConformity { .. } => ActionKind::PassConformity,
            Action::RefuseConformity { .. } => ActionKind::RefuseConformity,
            Action::RequestCorrection { .. } => ActionKind::RequestCorrection,
            Action::Resubmit { .. } => ActionKind::Resubmit,
            Action::SupplierApprove { .. } => ActionKind::SupplierApprove,
            Action::SupplierRefuse { .. } => ActionKind::SupplierRefuse,
            Action::Dispute { .. } => ActionKind::Dispute,
            Action::DecideApprove { .. } => ActionKind::DecideApprove,
            Action::DecideRefuse { .. } => ActionKind::DecideRefuse,
            Action::Withdraw { .. } => ActionKind::Withdraw,
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Action::RefuseConformity { refusal }
            | Action::SupplierRefuse { refusal }
            | Action::DecideRefuse { refusal } => Some(&refusal.reason),
            Action::RequestCorrection { reason }
            | Action::Dispute { reason }
            | Action::Withdraw { reason } => Some(reason),
            _ => None,
        }
    }
}

/// The next state for `kind` taken by `role` in `state`, when the workflow allows it.
/// `supplier_review` says whether the demand needs the supplier's answer.
pub fn next_state(
    state: DemandState,
    kind: ActionKind,
    role: Role,
    supplier_review: bool,
) -> Option<DemandState> {
    use ActionKind as A;
    use DemandState as S;
    use Role as R;
    Some(match (state, kind, role) {
        (S::Draft, A::Submit, R::Applicant) => S::Submitted,
        (S::Submitted, A::PassConformity, R::DataOffice) => {
            if supplier_review {
                S::SupplierReview
            } else {
                S::Approved
            }
        }
        (S::Submitted, A::RefuseConformity, R::DataOffice) => S::RefusedAtConformity,
        (S::Submitted, A::RequestCorrection, R::DataOffice) => S::ConformityCorrection,
        (S::ConformityCorrection, A::Resubmit, R::Applicant) => S::Submitted,
        (S::SupplierReview, A::SupplierApprove, R::Supplier) => S::Approved,
        (S::SupplierReview, A::SupplierRefuse, R::Supplier) => S::RefusedBySupplier,
        (S::SupplierReview, A::RequestCorrection, R::Supplier) => S::SupplierCorrection,
        // A resubmission may change every term, so it is checked from the start: the office's
        // conformity review again, then the supplier's when the new terms need it.
        (S::SupplierCorrection, A::Resubmit, R::Applicant) => S::Submitted,
        (S::RefusedBySupplier, A::Dispute, R::Applicant) => S::Disputed,
        (S::Disputed, A::DecideApprove, R::DataOffice) => S::Approved,
        (S::Disputed, A::DecideRefuse, R::DataOffice) => S::FinallyRefused,
        (
            S::Draft
            | S::Submitted
            | S::ConformityCorrection
            | S::SupplierReview
            | S::SupplierCorrection
            | S::RefusedBySupplier
            | S::Disputed,
            A::Withdraw,
            R::Applicant,
        ) => S::Withdrawn,
        _ => return None,
    })
}

/// The two gateways a demand crosses when the resource is another province's: the demanding
/// department's home gateway and the supplier's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The demanding department's gateway: the applicant's steps and its office's conformity
    /// review are taken there.
    Home,
    /// The supplier's gateway: the supplier's answer and the coordination of a dispute by that
    /// province's office are taken there, and the grant is compiled and enforced there.
    Supplier,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Home => Side::Supplier,
            Side::Supplier => Side::Home,
        }
    }
}

/// The gateway that takes step `kind` in `role` from `state` on a demand that crosses
/// gateways. Each step has exactly one: the other side only replays it, so two offices can never
/// both decide one stage, and a peer cannot take a step that belongs to this side.
pub fn acting_side(state: DemandState, kind: ActionKind, role: Role) -> Side {
    match (role, state, kind) {
        (Role::Applicant, _, _) => Side::Home,
        (Role::Supplier, _, _) => Side::Supplier,
        // The office coordinating a dispute is the one over the data: the supplier's.
        (Role::DataOffice, DemandState::Disputed, _) => Side::Supplier,
        (Role::DataOffice, _, _) => Side::Home,
    }
}

/// Working-day limits per review stage. Defaults follow common provincial practice and are
/// meant to be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageLimits {
    pub conformity: u32,
    pub supplier: u32,
    pub coordination: u32,
    /// Working days a supplier has to answer a data objection (纠错).
    pub objection: u32,
    /// Working days a supplier has to answer a poor rating (整改).
    pub rectification: u32,
}

impl Default for StageLimits {
    fn default() -> Self {
        StageLimits { conformity: 2, supplier: 10, coordination: 10, objection: 5, rectification: 10 }
    }
}

impl StageLimits {
    pub fn of(&self, stage: Stage) -> u32 {
        match stage {
            Stage::Conformity => self.conformity,
            Stage::Supplier => self.supplier,
            Stage::Coordination => self.coordination,
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{kind:?} is not possible while the demand is {state:?}")]
    IllegalTransition { state: DemandState, kind: ActionKind },
    #[error("{role:?} may not {kind:?} a demand that is {state:?}")]
    WrongRole { state: DemandState, kind: ActionKind, role: Role },
    #[error("{0:?} needs a reason")]
    MissingReason(ActionKind),
    #[error("a refusal needs its basis")]
    MissingBasis,
    #[error("the approval widens the request: {0}")]
    Widening(String),
}

/// One recorded step of a demand's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub actor: String,
    pub role: Role,
    pub kind: ActionKind,
    pub from: DemandState,
    pub to: DemandState,
    #[serde(with = "crate::time::rfc3339")]
    pub at: NaiveDateTime,
    pub reason: Option<String>,
    /// When the step ended or paused a review stage: that stage's deadline, so the history
    /// shows whether each stage was decided in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_deadline: Option<NaiveDate>,
}

impl Transition {
    /// Whether the step ended a review stage within its deadline (`None`: it ended none).
    pub fn met_deadline(&self) -> Option<bool> {
        self.stage_deadline.map(|deadline| self.at.date() <= deadline)
    }
}

/// The clock of the running review stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageClock {
    pub stage: Stage,
    /// When the stage (re)started running.
    pub running_since: NaiveDate,
    /// Working days used before the last pause.
    pub used_before: u32,
    pub deadline: NaiveDate,
}

/// A demand's workflow: its state, what was asked and approved, its clock and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Demand {
    pub state: DemandState,
    /// Whether any requested item is conditional, so the supplier must answer.
    pub supplier_review: bool,
    pub requested: Terms,
    pub approved: Option<Terms>,
    pub refusal: Option<Reasoned>,
    /// The running stage's clock, or the paused one during a correction.
    pub clock: Option<StageClock>,
    pub history: Vec<Transition>,
}

impl Demand {
    /// A new draft.
    pub fn draft(requested: Terms, supplier_review: bool) -> Self {
        Demand {
            state: DemandState::Draft,
            supplier_review,
            requested,
            approved: None,
            refusal: None,
            clock: None,
            history: Vec::new(),
        }
    }

    /// Whether the running stage is past its deadline on `today`.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.state.running_stage().is_some() && self.clock.is_some_and(|c| today > c.deadline)
    }

    /// Applies `action` taken by `actor` in `role` at `now`, or explains why it cannot be.
    /// Nothing changes when an error is returned.
    pub fn apply(
        &mut self,
        actor: &str,
        role: Role,
        action: Action,
        now: NaiveDateTime,
        calendar: &WorkingCalendar,
        limits: &StageLimits,
    ) -> Result<&Transition, WorkflowError> {
        let kind = action.kind();
        let to = match next_state(self.state, kind, role, self.supplier_review) {
            Some(to) => to,
            // The action exists here, but belongs to someone else.
            None if [Role::Applicant, Role::DataOffice, Role::Supplier]
                .into_iter()
                .any(|r| next_state(self.state, kind, r, self.supplier_review).is_some()) =>
            {
                return Err(WorkflowError::WrongRole { state: self.state, kind, role });
            }
            None => return Err(WorkflowError::IllegalTransition { state: self.state, kind }),
        };
        if let Some(reason) = action.reason()
            && reason.trim().is_empty()
        {
            return Err(WorkflowError::MissingReason(kind));
        }
        match &action {
            Action::RefuseConformity { refusal }
            | Action::SupplierRefuse { refusal }
            | Action::DecideRefuse { refusal }
                if refusal.basis.trim().is_empty() =>
            {
                return Err(WorkflowError::MissingBasis);
            }
            Action::PassConformity { terms }
            | Action::SupplierApprove { terms }
            | Action::DecideApprove { terms } => {
                if let Some(why) = terms.widening_of(&self.requested) {
                    return Err(WorkflowError::Widening(why));
                }
            }
            _ => {}
        }

        // All checks passed: change the demand.
        let reason = action.reason().map(str::to_owned);
        let today = now.date();
        let from = self.state;
        match action {
            Action::Resubmit { terms } => self.requested = terms,
            Action::PassConformity { terms }
            | Action::SupplierApprove { terms }
            | Action::DecideApprove { terms } => {
                // A supplier review starts from what the office let through.
                if to == DemandState::Approved {
                    self.approved = Some(terms);
                } else {
                    self.requested = terms;
                }
            }
            Action::RefuseConformity { refusal }
            | Action::SupplierRefuse { refusal }
            | Action::DecideRefuse { refusal } => {
                self.refusal = Some(refusal);
            }
            _ => {}
        }
        let stage_deadline = from.running_stage().and(self.clock).map(|clock| clock.deadline);
        self.clock = match (from.running_stage(), to.running_stage(), self.clock) {
            // Pausing for a correction: keep the stage and the days used.
            (Some(_), None, Some(clock))
                if matches!(to, DemandState::ConformityCorrection | DemandState::SupplierCorrection) =>
            {
                let used = clock.used_before + calendar.working_days_between(clock.running_since, today);
                Some(StageClock { used_before: used, ..clock })
            }
            // Resuming after a correction: the same stage continues with the days left.
            (None, Some(stage), Some(clock)) if clock.stage == stage => {
                let left = limits.of(stage).saturating_sub(clock.used_before);
                Some(StageClock {
                    running_since: today,
                    deadline: calendar.add_working_days(today, left),
                    ..clock
                })
            }
            // Entering a new stage: a fresh clock.
            (_, Some(stage), _) => Some(StageClock {
                stage,
                running_since: today,
                used_before: 0,
                deadline: calendar.add_working_days(today, limits.of(stage)),
            }),
            (_, None, _) => None,
        };
        self.state = to;
        self.history.push(Transition {
            actor: actor.to_owned(),
            role,
            kind,
            from,
            to,
            at: now,
            reason,
            stage_deadline,
        });
        Ok(self.history.last().expect("just pushed"))
    }
}
