//! The demand workflow, tested exhaustively against the table in `cases/transitions.tsv`
//! and with property tests over random sequences of actions.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use proptest::prelude::*;
use tongban_policy::calendar::WorkingCalendar;
use tongban_policy::workflow::{
    Action, ActionKind, Demand, DemandState, Reasoned, Role, Stage, StageLimits, Terms, WorkflowError,
};

const ROLES: [Role; 3] = [Role::Applicant, Role::DataOffice, Role::Supplier];

fn name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).expect("serialises").as_str().expect("unit variant").to_owned()
}

fn requested() -> Terms {
    Terms {
        items: vec!["id_number".into(), "name".into(), "status".into()],
        division_prefix: "41".into(),
        rate_per_second: 50,
        daily_quota: 100_000,
        valid_until: NaiveDate::from_ymd_opt(2027, 12, 31).expect("date"),
    }
}

fn narrowed() -> Terms {
    Terms {
        items: vec!["id_number".into(), "status".into()],
        division_prefix: "4115".into(),
        rate_per_second: 20,
        ..requested()
    }
}

fn refusal() -> Reasoned {
    Reasoned {
        reason: "超出履职需要".into(), basis: "《政务数据共享条例》第十五条".into()
    }
}

/// A well-formed action of each kind.
fn action(kind: ActionKind) -> Action {
    match kind {
        ActionKind::Submit => Action::Submit,
        ActionKind::PassConformity => Action::PassConformity { terms: narrowed() },
        ActionKind::RefuseConformity => Action::RefuseConformity { refusal: refusal() },
        ActionKind::RequestCorrection => Action::RequestCorrection { reason: "请补充法律依据".into() },
        ActionKind::Resubmit => Action::Resubmit { terms: requested() },
        ActionKind::SupplierApprove => Action::SupplierApprove { terms: narrowed() },
        ActionKind::SupplierRefuse => Action::SupplierRefuse { refusal: refusal() },
        ActionKind::Dispute => Action::Dispute { reason: "申请协调".into() },
        ActionKind::DecideApprove => Action::DecideApprove { terms: narrowed() },
        ActionKind::DecideRefuse => Action::DecideRefuse { refusal: refusal() },
        ActionKind::Withdraw => Action::Withdraw { reason: "事项已办结".into() },
    }
}

fn at(day: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 3, day).expect("date").and_hms_opt(10, 0, 0).expect("time")
}

fn in_state(state: DemandState, supplier_review: bool) -> Demand {
    Demand { state, ..Demand::draft(requested(), supplier_review) }
}

/// The table: (state, action, role, supplier_review) → next state.
fn table() -> HashMap<(String, String, String, bool), String> {
    let mut table = HashMap::new();
    for line in include_str!("cases/transitions.tsv").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [state, action, role, review, next] = fields[..] else { panic!("bad line: {line}") };
        let flags: &[bool] = match review {
            "any" => &[false, true],
            "yes" => &[true],
            "no" => &[false],
            other => panic!("bad supplier_review {other}"),
        };
        for &flag in flags {
            let key = (state.to_owned(), action.to_owned(), role.to_owned(), flag);
            assert!(table.insert(key, next.to_owned()).is_none(), "duplicate line: {line}");
        }
    }
    table
}

#[test]
fn every_state_action_and_role_behaves_as_the_table_says() {
    let table = table();
    let calendar = WorkingCalendar::default();
    let limits = StageLimits::default();
    let mut legal = 0;
    for state in DemandState::ALL {
        for kind in ActionKind::ALL {
            for role in ROLES {
                for supplier_review in [false, true] {
                    let key = (name(state), name(kind), name(role), supplier_review);
                    let mut demand = in_state(state, supplier_review);
                    let before = demand.clone();
                    let result =
                        demand.apply("tester", role, action(kind), at(2), &calendar, &limits).cloned();
                    match table.get(&key) {
                        Some(next) => {
                            legal += 1;
                            let transition =
                                result.unwrap_or_else(|e| panic!("{key:?} should be legal: {e}"));
                            assert_eq!(&name(demand.state), next, "{key:?}");
                            assert_eq!(
                                (transition.from, transition.to, transition.role),
                                (state, demand.state, role)
                            );
                            assert_eq!(demand.history.len(), 1);
                        }
                        None => {
                            let error = result.expect_err(&format!("{key:?} should be refused"));
                            assert!(
                                matches!(
                                    error,
                                    WorkflowError::IllegalTransition { .. } | WorkflowError::WrongRole { .. }
                                ),
                                "{key:?}: {error}"
                            );
                            assert_eq!(demand, before, "{key:?}: a refused action changes nothing");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(legal, table.len(), "every line of the table was exercised");
    // Final states accept nothing at all.
    for state in DemandState::ALL.into_iter().filter(|s| s.is_final()) {
        assert!(table.keys().all(|(s, ..)| s != &name(state)), "{state:?} is final");
    }
}

#[test]
fn refusals_need_reasons_and_bases_and_approvals_cannot_widen() {
    let calendar = WorkingCalendar::default();
    let limits = StageLimits::default();
    let mut demand = in_state(DemandState::Submitted, true);
    let empty_basis = Reasoned { basis: " ".into(), ..refusal() };
    assert_eq!(
        demand.apply(
            "office",
            Role::DataOffice,
            Action::RefuseConformity { refusal: empty_basis },
            at(2),
            &calendar,
            &limits
        ),
        Err(WorkflowError::MissingBasis)
    );
    assert_eq!(
        demand.apply(
            "office",
            Role::DataOffice,
            Action::RequestCorrection { reason: "".into() },
            at(2),
            &calendar,
            &limits
        ),
        Err(WorkflowError::MissingReason(ActionKind::RequestCorrection))
    );
    for (what, terms) in [
        ("item", Terms { items: vec!["address".into()], ..narrowed() }),
        ("rows", Terms { division_prefix: "4".into(), ..narrowed() }),
        ("rate", Terms { rate_per_second: 51, ..narrowed() }),
        ("quota", Terms { daily_quota: 100_001, ..narrowed() }),
        ("validity", Terms { valid_until: NaiveDate::from_ymd_opt(2028, 1, 1).expect("date"), ..narrowed() }),
        ("nothing", Terms { items: vec![], ..narrowed() }),
    ] {
        let result = demand.apply(
            "office",
            Role::DataOffice,
            Action::PassConformity { terms },
            at(2),
            &calendar,
            &limits,
        );
        assert!(matches!(result, Err(WorkflowError::Widening(_))), "{what}: {result:?}");
    }
    assert_eq!(demand.state, DemandState::Submitted);
    assert!(demand.history.is_empty());
}

#[test]
fn corrections_pause_the_clock_and_resubmission_resumes_it() {
    // March 2026: the 2nd is a Monday.
    let calendar =
        WorkingCalendar::new([NaiveDate::from_ymd_opt(2026, 3, 12).expect("date")], []).expect("calendar");
    let limits = StageLimits { conformity: 5, supplier: 5, ..StageLimits::default() };
    let mut demand = Demand::draft(requested(), true);
    demand.apply("a", Role::Applicant, Action::Submit, at(2), &calendar, &limits).expect("submit");
    // Conformity from Monday the 2nd: five working days is Monday the 9th.
    let clock = demand.clock.expect("conformity clock");
    assert_eq!(
        (clock.stage, clock.deadline),
        (Stage::Conformity, NaiveDate::from_ymd_opt(2026, 3, 9).expect("date"))
    );
    // Three working days used (3rd, 4th, 5th), then a correction; the applicant takes a week.
    demand
        .apply("o", Role::DataOffice, action(ActionKind::RequestCorrection), at(5), &calendar, &limits)
        .expect("correction");
    assert!(
        !demand.is_overdue(NaiveDate::from_ymd_opt(2026, 3, 20).expect("date")),
        "paused clocks are never overdue"
    );
    demand
        .apply("a", Role::Applicant, action(ActionKind::Resubmit), at(11), &calendar, &limits)
        .expect("resubmit");
    // Two days left from Wednesday the 11th, skipping the holiday on the 12th: the 13th and
    // the 16th.
    let clock = demand.clock.expect("resumed");
    assert_eq!((clock.stage, clock.used_before), (Stage::Conformity, 3));
    assert_eq!(clock.deadline, NaiveDate::from_ymd_opt(2026, 3, 16).expect("date"));
    assert!(!demand.is_overdue(NaiveDate::from_ymd_opt(2026, 3, 16).expect("date")));
    assert!(demand.is_overdue(NaiveDate::from_ymd_opt(2026, 3, 17).expect("date")));
    demand
        .apply("o", Role::DataOffice, action(ActionKind::PassConformity), at(13), &calendar, &limits)
        .expect("pass");
    demand
        .apply("s", Role::Supplier, action(ActionKind::SupplierApprove), at(16), &calendar, &limits)
        .expect("approve");
    assert_eq!(demand.state, DemandState::Approved);
    assert_eq!(demand.approved, Some(narrowed()));
    assert!(demand.clock.is_none());
    let kinds: Vec<ActionKind> = demand.history.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::Submit,
            ActionKind::RequestCorrection,
            ActionKind::Resubmit,
            ActionKind::PassConformity,
            ActionKind::SupplierApprove
        ]
    );
    assert_eq!(demand.history[1].reason.as_deref(), Some("请补充法律依据"));
}

/// A resubmission after the supplier's correction request may ask for anything, so it goes
/// back to the data office's conformity review with a fresh clock, and the supplier answers
/// only what the office lets through again.
#[test]
fn a_resubmission_after_the_suppliers_correction_is_reviewed_from_the_start() {
    let calendar = WorkingCalendar::new([], []).expect("calendar");
    let limits = StageLimits { conformity: 2, supplier: 5, ..StageLimits::default() };
    let mut demand = Demand::draft(requested(), true);
    demand.apply("a", Role::Applicant, Action::Submit, at(2), &calendar, &limits).expect("submit");
    demand
        .apply("o", Role::DataOffice, action(ActionKind::PassConformity), at(3), &calendar, &limits)
        .expect("pass");
    demand
        .apply("s", Role::Supplier, action(ActionKind::RequestCorrection), at(5), &calendar, &limits)
        .expect("correction");
    // Wider terms than the office passed: more items, every row, a higher rate.
    let wider = Terms { division_prefix: String::new(), rate_per_second: 500, ..requested() };
    demand
        .apply("a", Role::Applicant, Action::Resubmit { terms: wider.clone() }, at(9), &calendar, &limits)
        .expect("resubmit");
    assert_eq!(demand.state, DemandState::Submitted);
    assert_eq!(demand.requested, wider);
    let clock = demand.clock.expect("a fresh conformity clock");
    assert_eq!((clock.stage, clock.used_before), (Stage::Conformity, 0));
    assert_eq!(clock.deadline, NaiveDate::from_ymd_opt(2026, 3, 11).expect("date"));
    // The supplier cannot approve what the office has not passed again.
    let early = demand.apply(
        "s",
        Role::Supplier,
        Action::SupplierApprove { terms: wider.clone() },
        at(9),
        &calendar,
        &limits,
    );
    assert!(matches!(early, Err(WorkflowError::IllegalTransition { .. })), "{early:?}");
    demand
        .apply("o", Role::DataOffice, action(ActionKind::PassConformity), at(10), &calendar, &limits)
        .expect("pass again");
    assert_eq!(demand.state, DemandState::SupplierReview);
    assert_eq!(demand.requested, narrowed(), "the supplier reviews what the office let through");
}

proptest! {
    /// Whatever anyone tries, in any order: only table steps happen, a refused step changes
    /// nothing, approvals never exceed the request, final states are never left, and the
    /// history tells the whole story.
    #[test]
    fn random_sequences_keep_the_workflow_sound(
        steps in proptest::collection::vec((0usize..11, 0usize..3, 0u32..20), 1..40),
        supplier_review in any::<bool>(),
    ) {
        let table = table();
        let calendar = WorkingCalendar::default();
        let limits = StageLimits::default();
        let original = requested();
        let mut demand = Demand::draft(requested(), supplier_review);
        let mut day = 0u32;
        for (kind, role, advance) in steps {
            day = (day + advance).min(27);
            let (kind, role) = (ActionKind::ALL[kind], ROLES[role]);
            let before = demand.clone();
            let legal = table.get(&(name(demand.state), name(kind), name(role), supplier_review)).cloned();
            match demand.apply("x", role, action(kind), at(day + 1), &calendar, &limits) {
                Ok(_) => {
                    prop_assert!(!before.state.is_final());
                    prop_assert_eq!(Some(name(demand.state)), legal);
                    prop_assert_eq!(demand.history.len(), before.history.len() + 1);
                }
                Err(_) => {
                    prop_assert!(legal.is_none());
                    prop_assert_eq!(&demand, &before);
                }
            }
            if let Some(approved) = &demand.approved {
                prop_assert!(approved.widening_of(&original).is_none());
                prop_assert_eq!(demand.state, DemandState::Approved);
            }
            prop_assert_eq!(demand.clock.is_some(), demand.state.running_stage().is_some()
                || matches!(demand.state, DemandState::ConformityCorrection | DemandState::SupplierCorrection));
        }
        let replayed = demand.history.iter().fold(DemandState::Draft, |state, t| {
            assert_eq!(t.from, state);
            t.to
        });
        prop_assert_eq!(replayed, demand.state);
    }
}

#[test]
fn the_history_records_whether_each_stage_was_decided_in_time() {
    // March 2026: the 2nd is a Monday; conformity has two working days, the supplier five.
    let calendar = WorkingCalendar::new([], []).expect("calendar");
    let limits = StageLimits { supplier: 5, ..StageLimits::default() };
    let mut demand = Demand::draft(requested(), true);
    demand.apply("a", Role::Applicant, Action::Submit, at(2), &calendar, &limits).expect("submit");
    // Conformity passed on its deadline (the 4th): in time.
    demand
        .apply("o", Role::DataOffice, action(ActionKind::PassConformity), at(4), &calendar, &limits)
        .expect("pass");
    // The supplier's stage (deadline the 11th) answered on the 13th: late.
    demand
        .apply("s", Role::Supplier, action(ActionKind::SupplierApprove), at(13), &calendar, &limits)
        .expect("approve");
    let met: Vec<Option<bool>> = demand.history.iter().map(|t| t.met_deadline()).collect();
    assert_eq!(met, [None, Some(true), Some(false)]);
    assert_eq!(demand.history[2].stage_deadline, NaiveDate::from_ymd_opt(2026, 3, 11));
}

/// On a demand that crosses gateways every legal step belongs to exactly one side, and the
/// steps a supplier's gateway takes are the supplier's answer and the decision on a dispute.
#[test]
fn every_step_across_gateways_has_one_side() {
    use tongban_policy::workflow::{Side, acting_side, next_state};
    let mut supplier_steps = Vec::new();
    for state in DemandState::ALL {
        for kind in ActionKind::ALL {
            for role in [Role::Applicant, Role::DataOffice, Role::Supplier] {
                if next_state(state, kind, role, true).is_some()
                    && acting_side(state, kind, role) == Side::Supplier
                {
                    supplier_steps.push((state, kind));
                }
            }
        }
    }
    assert_eq!(
        supplier_steps,
        vec![
            (DemandState::SupplierReview, ActionKind::RequestCorrection),
            (DemandState::SupplierReview, ActionKind::SupplierApprove),
            (DemandState::SupplierReview, ActionKind::SupplierRefuse),
            (DemandState::Disputed, ActionKind::DecideApprove),
            (DemandState::Disputed, ActionKind::DecideRefuse),
        ]
    );
    assert_eq!(Side::Home.other(), Side::Supplier);
}
