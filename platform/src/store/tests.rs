//! The store suite, run against embedded SQLite and against the PostgreSQL server the test
//! script starts.

use chrono::{NaiveDate, NaiveDateTime};
use tongban_policy::calendar::WorkingCalendar;
use tongban_policy::credit_code::CreditCode;
use tongban_policy::org::{Department, DepartmentRole, ServiceItem, UserRole};
use tongban_policy::workflow::{Action, Demand, DemandState, Reasoned, Role, StageLimits, Terms};

use super::*;

/// A fresh SQLite file, and a fresh PostgreSQL database when the test script provides a
/// server.
async fn stores() -> Vec<(&'static str, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display()))
        .await
        .expect("sqlite store");
    let mut stores = vec![("sqlite", sqlite, Some(dir))];
    match std::env::var("TONGBAN_TEST_PG_URL") {
        Ok(admin) => {
            let name = format!("store_{}", uuid::Uuid::now_v7().simple());
            let admin_pool = sqlx::PgPool::connect(&admin).await.expect("admin connection");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin_pool)
                .await
                .expect("create database");
            let mut url = url::Url::parse(&admin).expect("url");
            url.set_path(&name);
            stores.push(("postgres", Store::connect(url.as_str()).await.expect("postgres store"), None));
        }
        Err(_) if std::env::var_os("TONGBAN_REQUIRE_PG").is_some() => {
            panic!("TONGBAN_REQUIRE_PG is set but TONGBAN_TEST_PG_URL is not")
        }
        Err(_) => eprintln!("PostgreSQL not configured: running the store suite on SQLite only"),
    }
    stores
}

/// The platform administrator acting at `hour` of 2026-03-`day`.
fn admin(day: u32, hour: u32) -> Acting<'static> {
    Acting { by: "user:admin", at: at(day, hour) }
}

fn at(day: u32, hour: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 3, day).expect("date").and_hms_opt(hour, 0, 0).expect("time")
}

fn terms() -> Terms {
    Terms {
        items: vec!["id_number".into(), "name".into(), "status".into()],
        division_prefix: "41".into(),
        rate_per_second: 20,
        daily_quota: 50_000,
        valid_until: NaiveDate::from_ymd_opt(2027, 6, 30).expect("date"),
    }
}

fn new_demand(department: &str, resource: &str) -> DemandFiling {
    DemandFiling {
        applicant_department: department.into(),
        applicant_system: Some("一网通办受理系统".into()),
        resource_code: resource.into(),
        resource_version: 1,
        supplier_department: "11410000MB0000000X".into(),
        service_item: "11100000000013127D3120001".into(),
        purpose: "户口迁移核验".into(),
        legal_basis: "《户口登记条例》".into(),
        workflow: Demand::draft(terms(), true),
        crossing: None,
    }
}

fn act(record: &DemandRecord, role: Role, action: Action, now: NaiveDateTime) -> Demand {
    let mut workflow = record.filing.workflow.clone();
    workflow
        .apply("reviewer", role, action, now, &WorkingCalendar::default(), &StageLimits::default())
        .expect("legal action");
    workflow
}

#[tokio::test]
async fn demands_round_trip_list_filter_and_paginate() {
    for (backend, store, _dir) in stores().await {
        let created =
            store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(2, 9)).await.expect("create");
        assert_eq!(created.version, 1, "{backend}");
        assert_eq!(created.filing.workflow.state, DemandState::Draft);
        assert_eq!(store.demand(&created.id).await.expect("read"), created, "{backend}");
        for i in 0..4 {
            let department = if i % 2 == 0 { "住建厅" } else { "人社厅" };
            store.create_demand(new_demand(department, "R-SOCIAL"), at(2, 10 + i)).await.expect("create");
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_demands(&DemandFilter::default(), &PageRequest { after: after.clone(), limit: Some(2) })
                .await
                .expect("list");
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|d| d.id.clone()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{backend}: every demand once");
        assert_eq!(seen.first(), Some(&created.id), "{backend}: creation order");
        let filter =
            DemandFilter { applicant_department: Some("人社厅".into()), ..DemandFilter::default() };
        assert_eq!(
            store.list_demands(&filter, &PageRequest::first(50)).await.expect("list").items.len(),
            3,
            "{backend}"
        );
        let filter = DemandFilter {
            resource_code: Some("R-SOCIAL".into()),
            state: Some(DemandState::Draft),
            ..DemandFilter::default()
        };
        assert_eq!(
            store.list_demands(&filter, &PageRequest::first(50)).await.expect("list").items.len(),
            4,
            "{backend}"
        );
        assert!(matches!(store.demand("no-such-id").await, Err(StoreError::NotFound(_))), "{backend}");
    }
}

#[tokio::test]
async fn changes_need_the_current_version_and_record_their_transitions() {
    for (backend, store, _dir) in stores().await {
        let draft = store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(2, 9)).await.expect("create");
        let submitted = act(&draft, Role::Applicant, Action::Submit, at(2, 10));
        let stored = store
            .update_demand(&draft.id, draft.version, &submitted, None, None, at(2, 10))
            .await
            .expect("update");
        assert_eq!((stored.version, stored.filing.workflow.state), (2, DemandState::Submitted), "{backend}");

        // Writing again from the version already replaced is refused and changes nothing.
        let again = store.update_demand(&draft.id, draft.version, &submitted, None, None, at(2, 11)).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{backend}: {again:?}");
        assert_eq!(store.demand(&draft.id).await.expect("read"), stored, "{backend}");
        assert!(matches!(
            store.update_demand("missing", 1, &submitted, None, None, at(2, 11)).await,
            Err(StoreError::NotFound(_))
        ));

        let corrected = act(
            &stored,
            Role::DataOffice,
            Action::RequestCorrection { reason: "请补充依据".into() },
            at(3, 9),
        );
        let stored = store
            .update_demand(&draft.id, stored.version, &corrected, None, None, at(3, 9))
            .await
            .expect("update");
        let transitions = store.demand_transitions(&draft.id).await.expect("transitions");
        let steps: Vec<(i64, &str, &str)> =
            transitions.iter().map(|(seq, _, a, s)| (*seq, a.as_str(), s.as_str())).collect();
        assert_eq!(
            steps,
            [(1, "submit", "submitted"), (2, "request_correction", "conformity_correction")],
            "{backend}"
        );
        assert_eq!(stored.filing.workflow.history.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_acting_at_once_cannot_both_win() {
    for (backend, store, _dir) in stores().await {
        for round in 0..10 {
            let draft =
                store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(2, 9)).await.expect("create");
            let submitted = act(&draft, Role::Applicant, Action::Submit, at(2, 10));
            let current = store
                .update_demand(&draft.id, draft.version, &submitted, None, None, at(2, 10))
                .await
                .expect("submit");

            // Both reviewers read the same version and decide differently at the same moment.
            let approve =
                act(&current, Role::DataOffice, Action::PassConformity { terms: terms() }, at(3, 9));
            let refusal = Reasoned { reason: "超出职责".into(), basis: "条例第十条".into() };
            let refuse = act(&current, Role::DataOffice, Action::RefuseConformity { refusal }, at(3, 9));
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let store = store.clone();
                    let id = current.id.clone();
                    async move { store.update_demand(&id, current.version, &approve, None, None, at(3, 9)).await }
                }),
                tokio::spawn({
                    let store = store.clone();
                    let id = current.id.clone();
                    async move { store.update_demand(&id, current.version, &refuse, None, None, at(3, 9)).await }
                }),
            );
            let (a, b) = (a.expect("task"), b.expect("task"));
            assert_eq!(
                [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
                1,
                "{backend} round {round}: exactly one wins: {a:?} / {b:?}"
            );
            let loser = if a.is_ok() { b } else { a };
            assert!(matches!(loser, Err(StoreError::Conflict(_))), "{backend} round {round}: {loser:?}");

            let stored = store.demand(&current.id).await.expect("read");
            assert_eq!(stored.version, current.version + 1);
            assert!(matches!(
                stored.filing.workflow.state,
                DemandState::SupplierReview | DemandState::RefusedAtConformity
            ));
            let recorded = store.demand_transitions(&current.id).await.expect("transitions").len();
            assert_eq!(recorded, 2, "{backend} round {round}: one decision recorded");
        }
    }
}

#[tokio::test]
async fn overdue_reviews_are_one_query() {
    for (backend, store, _dir) in stores().await {
        let draft = store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(2, 9)).await.expect("create");
        let submitted = act(&draft, Role::Applicant, Action::Submit, at(2, 10));
        store
            .update_demand(&draft.id, draft.version, &submitted, None, None, at(2, 10))
            .await
            .expect("submit");
        // Submitted Monday 2 March: two working days, due Wednesday the 4th.
        assert!(
            store
                .overdue_demands(NaiveDate::from_ymd_opt(2026, 3, 4).expect("date"), &DemandFilter::default())
                .await
                .expect("query")
                .is_empty()
        );
        let overdue = store
            .overdue_demands(NaiveDate::from_ymd_opt(2026, 3, 5).expect("date"), &DemandFilter::default())
            .await
            .expect("query");
        assert_eq!(
            overdue.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [draft.id.as_str()],
            "{backend}"
        );
    }
}

/// Attempts are counted before a password is checked, and the count decides at once: five
/// pass, the sixth is refused until the lock has run from the fifth, and refused attempts do
/// not lengthen it.
#[tokio::test]
async fn sign_in_attempts_lock_a_name_after_five_until_the_lock_has_run() {
    let lock = chrono::Duration::minutes(15);
    let minute = |m: i64| at(2, 9) + chrono::Duration::minutes(m);
    for (backend, store, _dir) in stores().await {
        for n in 1..=5 {
            let counted = store.count_sign_in_attempt("reviewer", minute(n), lock, 5).await.expect("count");
            assert_eq!(counted, SignInAttempt::Counted(n as u32), "{backend}");
        }
        let locked = SignInAttempt::Locked { until: minute(5) + lock };
        for m in [6, 19] {
            let refused = store.count_sign_in_attempt("reviewer", minute(m), lock, 5).await.expect("count");
            assert_eq!(refused, locked, "{backend}: refused attempts do not move the lock");
        }
        let other = store.count_sign_in_attempt("operator", minute(6), lock, 5).await.expect("count");
        assert_eq!(other, SignInAttempt::Counted(1), "{backend}: other names are counted apart");
        let after = store.count_sign_in_attempt("reviewer", minute(20), lock, 5).await.expect("count");
        assert_eq!(after, SignInAttempt::Counted(1), "{backend}: the lock ends and counting starts again");

        store.count_sign_in_attempt("operator", minute(21), lock, 5).await.expect("count");
        store.clear_sign_in_attempts("operator").await.expect("clear");
        let cleared = store.count_sign_in_attempt("operator", minute(22), lock, 5).await.expect("count");
        assert_eq!(cleared, SignInAttempt::Counted(1), "{backend}: a success clears the count");

        // Attempts older than the lock are swept; the recent ones stay and still count.
        assert_eq!(store.sweep_sign_in_attempts(minute(21)).await.expect("sweep"), 1, "{backend}");
        let kept = store.count_sign_in_attempt("operator", minute(23), lock, 5).await.expect("count");
        assert_eq!(kept, SignInAttempt::Counted(2), "{backend}");
    }
}

/// Guesses sent all at once are each counted before any is checked, so no more than the
/// bound pass, on either database.
#[tokio::test]
async fn sign_in_attempts_made_at_once_never_pass_the_bound_together() {
    let lock = chrono::Duration::minutes(15);
    for (backend, store, _dir) in stores().await {
        let attempts = (0..24).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.count_sign_in_attempt("reviewer", at(2, 9), lock, 5).await })
        });
        let mut counted = Vec::new();
        let mut locked = 0;
        for attempt in attempts.collect::<Vec<_>>() {
            match attempt.await.expect("task").expect("count") {
                SignInAttempt::Counted(n) => counted.push(n),
                SignInAttempt::Locked { .. } => locked += 1,
            }
        }
        counted.sort_unstable();
        assert_eq!(counted, vec![1, 2, 3, 4, 5], "{backend}");
        assert_eq!(locked, 19, "{backend}");
    }
}

/// Two bootstraps at once: each checks there is no administrator, and then only one makes
/// theirs; the other's department and account are not left behind.
#[tokio::test]
async fn only_one_of_two_first_administrators_made_at_once_is_kept() {
    for (backend, store, _dir) in stores().await {
        let bootstrap = |n: usize| {
            let store = store.clone();
            async move {
                let department = Department {
                    code: CreditCode::compose('1', '1', "410000", &format!("0041000{n}")),
                    name: format!("数据局{n}"),
                    region: "410000".into(),
                    roles: vec![DepartmentRole::DataOffice],
                };
                let user = UserRecord {
                    username: format!("admin{n}"),
                    display_name: "平台管理员".into(),
                    department_code: department.code.clone(),
                    roles: vec![UserRole::PlatformAdmin],
                    enabled: true,
                    created_at: at(2, 9),
                };
                store.create_first_admin(&department, &user, "$argon2id$hash", at(2, 9)).await
            }
        };
        let (first, second) = tokio::join!(tokio::spawn(bootstrap(1)), tokio::spawn(bootstrap(2)));
        let outcomes = [first.expect("task"), second.expect("task")];
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{backend}: {outcomes:?}");
        assert!(
            outcomes.iter().any(|o| matches!(o, Err(StoreError::Conflict(_)))),
            "{backend}: {outcomes:?}"
        );
        let users = store.users(None).await.expect("users");
        assert_eq!(users.len(), 1, "{backend}: {users:?}");
        assert_eq!(store.departments().await.expect("departments").len(), 1, "{backend}");
        let again = bootstrap(3).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{backend}: {again:?}");
        // The bootstrap that won is on the trail, alone.
        let trail = store.admin_actions(None, &PageRequest::first(10)).await.expect("trail");
        let actions: Vec<(&str, &str, &str)> =
            trail.items.iter().map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str())).collect();
        assert_eq!(
            actions,
            vec![("bootstrap", "platform.bootstrapped", users[0].username.as_str())],
            "{backend}"
        );
    }
}

/// Leases of one grant's daily quota taken all at once add up to the quota and no more, the
/// last one cut to what is left, on either database; what is given back can be leased again.
#[tokio::test]
async fn quota_leases_taken_at_once_never_add_up_past_the_quota() {
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).expect("date");
    for (backend, store, _dir) in stores().await {
        let leases = (0..12).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.lease_quota("g1", day, 7, 50).await })
        });
        let mut got = Vec::new();
        for lease in leases.collect::<Vec<_>>() {
            got.push(lease.await.expect("task").expect("lease"));
        }
        got.sort_unstable();
        assert_eq!(got.iter().sum::<u32>(), 50, "{backend}: {got:?}");
        assert_eq!(got, [0, 0, 0, 0, 1, 7, 7, 7, 7, 7, 7, 7], "{backend}");
        assert_eq!(store.quota_used("g1", day).await.expect("used"), 50, "{backend}");
        let other_day = store.lease_quota("g1", day.succ_opt().expect("day"), 7, 50).await.expect("lease");
        assert_eq!(other_day, 7, "{backend}: each day has its own quota");

        store.return_quota("g1", day, 3).await.expect("return");
        assert_eq!(store.lease_quota("g1", day, 7, 50).await.expect("lease"), 3, "{backend}");
        assert_eq!(
            store.sweep_quota_usage(day.succ_opt().expect("day")).await.expect("sweep"),
            1,
            "{backend}"
        );
        assert_eq!(store.quota_used("g1", day).await.expect("used"), 0, "{backend}");
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(Store::connect("mysql://localhost/x").await, Err(StoreError::UnsupportedUrl(_))));
}

#[tokio::test]
async fn departments_people_catalog_and_grants_round_trip() {
    use tongban_policy::catalog::{
        InformationItem, MaskRule, Resource, Sensitivity, ShareMethod, ShareType, UpdateCycle,
    };
    use tongban_policy::grant::{Grant, GrantChange, GrantSource};

    for (backend, store, _dir) in stores().await {
        let supplier = Department {
            code: CreditCode::compose('1', '1', "410000", "00410001"),
            name: "河南省公安厅".into(),
            region: "410000".into(),
            roles: vec![DepartmentRole::Supplier],
        };
        let applicant = Department {
            code: CreditCode::compose('1', '1', "440000", "00440002"),
            name: "广东省公安厅".into(),
            region: "440000".into(),
            roles: vec![DepartmentRole::Demander],
        };
        store.create_department(&supplier, admin(2, 9)).await.expect("department");
        store.create_department(&applicant, admin(2, 9)).await.expect("department");
        assert!(
            matches!(store.create_department(&supplier, admin(2, 9)).await, Err(StoreError::Duplicate(_))),
            "{backend}"
        );
        assert_eq!(store.department(&supplier.code).await.expect("read"), supplier, "{backend}");

        let system = store
            .create_system(&applicant.code, "户籍系统", "digest-1", "tbk_abc", admin(2, 9))
            .await
            .expect("system");
        assert_eq!(
            store.system_by_key_digest("digest-1").await.expect("by key"),
            Some(system.clone()),
            "{backend}"
        );
        assert_eq!(store.system_by_key_digest("digest-2").await.expect("by key"), None);
        // Client certificates: registered by digest, unique across systems.
        assert_eq!(store.system_by_certificate("cert-1").await.expect("by certificate"), None, "{backend}");
        store.set_system_certificate(&system.id, "cert-1", admin(2, 10)).await.expect("register");
        assert_eq!(
            store.system_by_certificate("cert-1").await.expect("by certificate"),
            Some(system.clone())
        );
        let other = store
            .create_system(&applicant.code, "社保系统", "digest-3", "tbk_def", admin(2, 9))
            .await
            .expect("system");
        assert!(
            matches!(
                store.set_system_certificate(&other.id, "cert-1", admin(2, 10)).await,
                Err(StoreError::Duplicate(_))
            ),
            "{backend}"
        );
        assert!(matches!(
            store.set_system_certificate("nope", "cert-2", admin(2, 10)).await,
            Err(StoreError::NotFound(_))
        ));
        let user = UserRecord {
            username: "demander".into(),
            display_name: "业务员".into(),
            department_code: applicant.code.clone(),
            roles: vec![UserRole::Demander],
            enabled: true,
            created_at: at(2, 9),
        };
        store.create_user(&user, "$argon2id$hash", admin(2, 9)).await.expect("user");
        assert!(
            matches!(store.create_user(&user, "x", admin(2, 9)).await, Err(StoreError::Duplicate(_))),
            "{backend}"
        );
        store.create_session("session-1", "demander", at(2, 9), at(2, 17)).await.expect("session");
        assert_eq!(
            store.session_user("session-1", at(2, 12)).await.expect("session"),
            Some(user.clone()),
            "{backend}"
        );
        // Ended sessions are swept; those in force stay.
        store.create_session("session-ended", "demander", at(1, 9), at(1, 17)).await.expect("session");
        assert_eq!(store.sweep_sessions(at(2, 12)).await.expect("sweep"), 1, "{backend}");
        assert_eq!(store.session_user("session-1", at(2, 12)).await.expect("session"), Some(user.clone()));

        // A password change keeps the changing session and ends the others; stopping a
        // person ends every session; keys are replaced and systems stopped.
        store.create_session("session-2", "demander", at(2, 9), at(2, 17)).await.expect("session");
        let own = Acting { by: "user:demander", at: at(2, 11) };
        store.change_password("demander", "$argon2id$new", "session-1", own).await.expect("change");
        let (_, hash) = store.user_with_password("demander").await.expect("read").expect("user");
        assert_eq!(hash, "$argon2id$new", "{backend}");
        assert!(store.session_user("session-1", at(2, 12)).await.expect("session").is_some(), "{backend}");
        assert!(store.session_user("session-2", at(2, 12)).await.expect("session").is_none(), "{backend}");
        assert!(matches!(
            store.change_password("nobody", "x", "", admin(2, 11)).await,
            Err(StoreError::NotFound(_))
        ));
        let stopped = store.set_user_enabled("demander", false, admin(2, 12)).await.expect("stop");
        assert!(!stopped.enabled, "{backend}");
        assert!(store.session_user("session-1", at(2, 12)).await.expect("session").is_none(), "{backend}");
        assert!(
            store.set_user_enabled("demander", true, admin(2, 12)).await.expect("allow").enabled,
            "{backend}"
        );
        store.create_session("session-1", "demander", at(2, 9), at(2, 17)).await.expect("session");
        let renewed =
            store.set_system_api_key(&other.id, "digest-4", "tbk_ghi", admin(2, 13)).await.expect("new key");
        assert_eq!(renewed.api_key_prefix, "tbk_ghi", "{backend}");
        assert_eq!(store.system_by_key_digest("digest-3").await.expect("by key"), None, "{backend}");
        assert_eq!(store.system_by_key_digest("digest-4").await.expect("by key"), Some(renewed.clone()));
        assert!(
            !store.set_system_enabled(&other.id, false, admin(2, 14)).await.expect("stop").enabled,
            "{backend}"
        );
        assert_eq!(store.system_by_key_digest("digest-4").await.expect("by key"), None, "{backend}");
        store.set_system_enabled(&other.id, true, admin(2, 14)).await.expect("allow");
        assert!(matches!(
            store.set_system_api_key("nope", "d", "p", admin(2, 13)).await,
            Err(StoreError::NotFound(_))
        ));

        // Every change is on the trail, in order, in the transaction that made it: the refused
        // ones above (a duplicate, an unknown system or person) are not.
        let trail = store.admin_actions(None, &PageRequest::first(500)).await.expect("trail");
        let actions: Vec<(&str, &str, &str)> =
            trail.items.iter().map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str())).collect();
        let by_admin = |action, target| ("user:admin", action, target);
        assert_eq!(
            actions,
            vec![
                by_admin("department.created", supplier.code.as_str()),
                by_admin("department.created", applicant.code.as_str()),
                by_admin("system.created", system.id.as_str()),
                by_admin("system.certificate_registered", system.id.as_str()),
                by_admin("system.created", other.id.as_str()),
                by_admin("user.created", "demander"),
                ("user:demander", "user.password_changed", "demander"),
                by_admin("user.disabled", "demander"),
                by_admin("user.enabled", "demander"),
                by_admin("system.api_key_replaced", other.id.as_str()),
                by_admin("system.disabled", other.id.as_str()),
                by_admin("system.enabled", other.id.as_str()),
            ],
            "{backend}"
        );
        assert_eq!(trail.items[3].detail["sha256"], "cert-1", "{backend}");
        assert_eq!(trail.items[9].detail["api_key_prefix"], "tbk_ghi", "{backend}");
        assert_eq!(trail.items[9].at, at(2, 13), "{backend}");
        let first = store.admin_actions(Some("demander"), &PageRequest::first(3)).await.expect("trail");
        assert_eq!(first.items.len(), 3, "{backend}");
        let rest = store
            .admin_actions(Some("demander"), &PageRequest { after: first.next.clone(), limit: Some(10) })
            .await
            .expect("trail");
        assert_eq!((rest.items.len(), rest.next), (1, None), "{backend}");
        assert_eq!(store.session_user("session-1", at(2, 18)).await.expect("expired"), None, "{backend}");
        store.delete_session("session-1").await.expect("sign out");
        assert_eq!(store.session_user("session-1", at(2, 12)).await.expect("ended"), None);

        store
            .create_service_item(&ServiceItem {
                code: "KSTB-GA-001".into(),
                name: "工作调动户口迁移".into(),
                item_type: "行政许可".into(),
                ministry: "公安部".into(),
                legal_basis: "《中华人民共和国户口登记条例》".into(),
                needs: vec!["household".into()],
                source: Default::default(),
            })
            .await
            .expect("service item");
        let item = |name: &str| InformationItem {
            name: name.into(),
            label: name.into(),
            data_type: "Utf8".into(),
            sensitivity: Sensitivity::Important,
            personal: true,
            default_mask: MaskRule::None,
            share_type: ShareType::Conditional,
            required: false,
        };
        let mut resource = Resource {
            code: "A01-410000-0001".into(),
            version: 1,
            name: "户籍".into(),
            supplier: supplier.code.clone(),
            summary: String::new(),
            share_type: ShareType::Conditional,
            share_condition: Some("限户籍事项".into()),
            share_methods: vec![ShareMethod::Interface],
            update_cycle: UpdateCycle::Daily,
            dataset: "household".into(),
            items: vec![item("id_number"), item("name"), item("status")],
            service_items: vec!["KSTB-GA-001".into()],
            division_item: None,
            format: Default::default(),
            open_type: Default::default(),
            class: Default::default(),
            related_resources: vec![],
            legal_basis: String::new(),
        };
        store.put_resource_version(&resource, "user:s", at(2, 9)).await.expect("v1");
        resource.summary = "second".into();
        resource.version = 2;
        store.put_resource_version(&resource, "user:s", at(2, 10)).await.expect("v2");
        assert!(
            matches!(
                store.put_resource_version(&resource, "user:s", at(2, 10)).await,
                Err(StoreError::Conflict(_))
            ),
            "{backend}"
        );
        assert_eq!(store.resource(&resource.code, None).await.expect("newest").summary, "second");
        assert_eq!(store.resource(&resource.code, Some(1)).await.expect("v1").summary, "");
        assert_eq!(store.resources(Some(&supplier.code)).await.expect("list").len(), 1, "{backend}");
        // Ten more resources, every third unconditional: a filter on what the resource's
        // document holds still fills each page, across the chunks the store reads.
        for n in 2..12 {
            let mut more = resource.clone();
            more.code = format!("A01-410000-{n:04}");
            more.version = 1;
            more.share_type = if n % 3 == 0 { ShareType::Unconditional } else { ShareType::Conditional };
            store.put_resource_version(&more, "user:s", at(2, 9)).await.expect("more");
        }
        let unconditional =
            ResourceFilter { share_type: Some(ShareType::Unconditional), ..ResourceFilter::default() };
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .resources_page(&unconditional, &PageRequest { after: after.clone(), limit: Some(2) })
                .await
                .expect("page");
            pages.push(page.items.iter().map(|r| r.code.clone()).collect::<Vec<_>>());
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            pages,
            [vec!["A01-410000-0003", "A01-410000-0006"], vec!["A01-410000-0009"]],
            "{backend}: full pages of the matching resources only, at their newest versions"
        );
        let newest = store
            .resources_page(
                &ResourceFilter { supplier: Some(supplier.code.clone()), ..ResourceFilter::default() },
                &PageRequest::first(1),
            )
            .await
            .expect("page");
        assert_eq!((newest.items[0].version, newest.items[0].summary.as_str()), (2, "second"), "{backend}");
        assert_eq!(newest.next.as_deref(), Some(resource.code.as_str()), "{backend}");

        // A demand on the supplier's data, found by the supplier and by its province.
        let mut filing = new_demand(&applicant.code, &resource.code);
        filing.supplier_department = supplier.code.clone();
        let demand = store.create_demand(filing, at(2, 9)).await.expect("demand");
        for (province, expected) in [("41", 1), ("44", 0)] {
            let filter = DemandFilter { office_province: Some(province.into()), ..DemandFilter::default() };
            assert_eq!(
                store.list_demands(&filter, &PageRequest::first(10)).await.expect("list").items.len(),
                expected,
                "{backend}"
            );
        }

        // The approval and its grant are one write.
        let revision = store.grant_revision().await.expect("revision");
        let submitted = act(&demand, Role::Applicant, Action::Submit, at(2, 10));
        let demand = store
            .update_demand(&demand.id, demand.version, &submitted, None, None, at(2, 10))
            .await
            .expect("submit");
        let mut approved = demand.filing.workflow.clone();
        approved.supplier_review = false;
        approved
            .apply(
                "office",
                Role::DataOffice,
                Action::PassConformity { terms: terms() },
                at(3, 9),
                &WorkingCalendar::default(),
                &StageLimits::default(),
            )
            .expect("approve");
        let source = GrantSource {
            demand_id: &demand.id,
            consumer_department: &applicant.code,
            consumer_system: Some(&system.id),
            service_item: "KSTB-GA-001",
            purpose: "核验",
        };
        let grant =
            Grant::compile("g-1".into(), source, &terms(), &resource, at(3, 9).date()).expect("grant");
        store
            .update_demand(
                &demand.id,
                demand.version,
                &approved,
                Some((&grant, "user:office")),
                None,
                at(3, 9),
            )
            .await
            .expect("approve");
        assert_eq!(store.grant_of_demand(&demand.id).await.expect("grant"), Some(grant.clone()), "{backend}");
        assert_eq!(store.grant_revision().await.expect("revision"), revision + 1);
        let suspended = grant.change(&GrantChange::Suspend).expect("suspend");
        let stored =
            store.update_grant(&suspended, 1, "user:s", Some("检查"), at(3, 10)).await.expect("suspend");
        assert_eq!(stored.version, 2, "{backend}");
        assert!(
            matches!(
                store.update_grant(&suspended, 1, "user:s", Some("again"), at(3, 10)).await,
                Err(StoreError::Conflict(_))
            ),
            "{backend}: a stale change is refused"
        );
        let versions = store.grant_versions("g-1").await.expect("versions");
        assert_eq!(versions.len(), 2, "{backend}");
        assert_eq!(versions[1].2.as_deref(), Some("检查"));
        assert_eq!(store.grants().await.expect("grants").len(), 1);

        // Who lists the grant: its holder, its supplier, a data office reviewing the
        // supplier's province; not another department, nor another province's office.
        let visible = |party: &str, reviewing: Option<&str>| {
            let filter = GrantFilter {
                party: Some(party.to_owned()),
                reviewing_province: reviewing.map(str::to_owned),
            };
            let store = store.clone();
            async move { store.grants_page(&filter, &PageRequest::default()).await.expect("grants").items.len() }
        };
        assert_eq!(visible(&applicant.code, None).await, 1, "{backend}: the holder");
        assert_eq!(visible(&supplier.code, None).await, 1, "{backend}: the supplier");
        assert_eq!(visible("office-of-henan", Some("41")).await, 1, "{backend}: the supplier's province");
        assert_eq!(visible("office-of-guangdong", Some("44")).await, 0, "{backend}: another province");
        assert_eq!(visible("office-of-henan", None).await, 0, "{backend}: not a reviewer");
        assert_eq!(
            store
                .grants_page(&GrantFilter::default(), &PageRequest::default())
                .await
                .expect("all")
                .items
                .len(),
            1
        );
    }
}

/// Departments are paged by region and code, filtered by role and by region prefix in the
/// store; a prefix is matched as text, so `%` or `_` in it match nothing but themselves.
#[tokio::test]
async fn departments_are_paged_by_key_and_filtered_in_the_store() {
    for (backend, store, _dir) in stores().await {
        let regions = ["440100", "410000", "441900", "340000", "440000"];
        for (n, region) in regions.iter().enumerate() {
            let department = Department {
                code: CreditCode::compose('1', '1', region, &format!("0000000{n}")),
                name: format!("部门{n}"),
                region: (*region).into(),
                roles: if n % 2 == 0 {
                    vec![DepartmentRole::Supplier]
                } else {
                    vec![DepartmentRole::DataOffice]
                },
            };
            store.create_department(&department, admin(2, 9)).await.expect("department");
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let request = PageRequest { after: after.clone(), limit: Some(2) };
            let page = store.departments_page(&DepartmentFilter::default(), &request).await.expect("page");
            assert!(page.items.len() <= 2, "{backend}");
            seen.extend(page.items.into_iter().map(|d| d.region));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["340000", "410000", "440000", "440100", "441900"], "{backend}");
        let regions_of = |filter: DepartmentFilter| {
            let store = store.clone();
            async move {
                let page = store.departments_page(&filter, &PageRequest::default()).await.expect("page");
                page.items.into_iter().map(|d| d.region).collect::<Vec<_>>()
            }
        };
        let guangdong = DepartmentFilter { region_prefix: Some("44".into()), ..DepartmentFilter::default() };
        assert_eq!(regions_of(guangdong).await, ["440000", "440100", "441900"], "{backend}");
        let offices =
            DepartmentFilter { role: Some(DepartmentRole::DataOffice), ..DepartmentFilter::default() };
        assert_eq!(
            regions_of(offices).await,
            ["410000", "340000"].map(String::from).iter().rev().cloned().collect::<Vec<_>>(),
            "{backend}"
        );
        for pattern in ["4_", "%", "44%"] {
            let literal =
                DepartmentFilter { region_prefix: Some(pattern.into()), ..DepartmentFilter::default() };
            assert!(regions_of(literal).await.is_empty(), "{backend}: {pattern:?} is text, not a pattern");
        }
    }
}

/// SQLite keeps these settings per connection: every pooled connection must have them, not
/// only the one that happened to run them at start.
#[tokio::test]
async fn every_sqlite_connection_waits_on_a_busy_file_and_checks_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display()))
        .await
        .expect("sqlite store");
    // Held together, so that the pool has to open several.
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(store.pool.acquire().await.expect("connection"));
    }
    for connection in &mut connections {
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **connection)
            .await
            .expect("foreign_keys");
        let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut **connection)
            .await
            .expect("busy_timeout");
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **connection)
            .await
            .expect("journal_mode");
        assert_eq!((foreign_keys, busy_timeout, journal_mode.as_str()), (1, 5000, "wal"));
    }
}

/// A grant of `id` for `demand` serving `service_item`, for department 人社厅's system.
fn grant_of(id: &str, demand: &str, service_item: &str, from: NaiveDate) -> tongban_policy::grant::Grant {
    use tongban_policy::catalog::{
        InformationItem, MaskRule, Resource, Sensitivity, ShareMethod, ShareType, UpdateCycle,
    };
    let item = InformationItem {
        name: "id_number".into(),
        label: "身份证号".into(),
        data_type: "Utf8".into(),
        sensitivity: Sensitivity::Important,
        personal: true,
        default_mask: MaskRule::None,
        share_type: ShareType::Conditional,
        required: false,
    };
    let resource = Resource {
        code: "R-HOUSEHOLD".into(),
        version: 1,
        name: "户籍".into(),
        supplier: "11410000MB0000000X".into(),
        summary: String::new(),
        share_type: ShareType::Conditional,
        share_condition: None,
        share_methods: vec![ShareMethod::Interface],
        update_cycle: UpdateCycle::Daily,
        dataset: "household".into(),
        items: vec![item],
        service_items: vec![],
        division_item: None,
        format: Default::default(),
        open_type: Default::default(),
        class: Default::default(),
        related_resources: vec![],
        legal_basis: String::new(),
    };
    let source = tongban_policy::grant::GrantSource {
        demand_id: demand,
        consumer_department: "人社厅",
        consumer_system: Some("system-1"),
        service_item,
        purpose: "核验",
    };
    let mut terms = terms();
    terms.items = vec!["id_number".into()];
    tongban_policy::grant::Grant::compile(id.into(), source, &terms, &resource, from).expect("grant")
}

/// Approving a demand for the purpose a standing grant serves replaces that grant in the same
/// write: it ends superseded, naming its successor, and the calls it used today count against
/// the successor's quota. A grant for another service item stays.
#[tokio::test]
async fn a_later_approval_replaces_the_grant_standing_for_its_purpose() {
    use tongban_policy::grant::GrantStatus;

    for (backend, store, _dir) in stores().await {
        assert!(store.one_grant_per_purpose(at(2, 8)).await.expect("settled").is_empty(), "{backend}");
        let approve = |grant: tongban_policy::grant::Grant, now: NaiveDateTime| {
            let store = store.clone();
            async move {
                let demand =
                    store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), now).await.expect("demand");
                let grant = tongban_policy::grant::Grant { demand_id: demand.id.clone(), ..grant };
                store
                    .update_demand(
                        &demand.id,
                        demand.version,
                        &demand.filing.workflow,
                        Some((&grant, "user:office")),
                        None,
                        now,
                    )
                    .await
                    .expect("approved");
            }
        };
        let day = at(3, 9).date();
        approve(grant_of("g-first", "-", "KSTB-GA-001", day), at(3, 9)).await;
        approve(grant_of("g-other-item", "-", "KSTB-GA-002", day), at(3, 9)).await;
        assert_eq!(store.lease_quota("g-first", day, 7, 1_000).await.expect("lease"), 7);

        approve(grant_of("g-second", "-", "KSTB-GA-001", day), at(3, 15)).await;
        let first = store.grant("g-first").await.expect("first");
        assert_eq!(
            (first.version, first.grant.status, first.grant.superseded_by.as_deref()),
            (2, GrantStatus::Superseded, Some("g-second")),
            "{backend}"
        );
        let history = store.grant_versions("g-first").await.expect("history");
        let (_, actor, reason, _) = history.last().expect("a version");
        assert_eq!(actor, "user:office", "{backend}");
        assert!(
            reason.as_deref().is_some_and(|r| r.contains("superseded by grant g-second")),
            "{backend}: {reason:?}"
        );
        assert_eq!(
            store.quota_used("g-second", day).await.expect("used"),
            7,
            "{backend}: the day's calls carry over"
        );
        assert_eq!(
            store.grant("g-second").await.expect("second").grant.status,
            GrantStatus::Active,
            "{backend}"
        );
        assert_eq!(
            store.grant("g-other-item").await.expect("other").grant.status,
            GrantStatus::Active,
            "{backend}"
        );
    }
}

/// A store written before one grant per purpose was kept may hold two standing grants for one
/// purpose; opening it replaces the older, says so, and from then on the store refuses a
/// second standing grant for a purpose even when written around the platform.
#[tokio::test]
async fn overlapping_grants_of_an_older_store_are_settled_newest_first() {
    use tongban_policy::grant::GrantStatus;

    for (backend, store, _dir) in stores().await {
        store.one_grant_per_purpose(at(2, 8)).await.expect("settled");
        sqlx::query("DROP INDEX grants_one_standing_per_purpose")
            .execute(&store.pool)
            .await
            .expect("as before");
        let day = at(3, 9).date();
        for (id, from) in [("g-older", day), ("g-newer", day.succ_opt().expect("day"))] {
            let demand =
                store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(3, 9)).await.expect("demand");
            let grant = grant_of(id, &demand.id, "KSTB-GA-001", from);
            // Written as an older gateway did: no purpose kept, nothing replaced.
            sqlx::query(
                "INSERT INTO grants (id, demand_id, consumer_department, resource_code, status, valid_until, version, \
                 body, updated_at) VALUES ($1, $2, $3, $4, 'active', '2027-06-30', 1, $5, '2026-03-03 09:00:00')",
            )
            .bind(id)
            .bind(&demand.id)
            .bind(&grant.consumer_department)
            .bind(&grant.resource_code)
            .bind(serde_json::to_string(&grant).expect("json"))
            .execute(&store.pool)
            .await
            .expect("older write");
        }
        let replaced = store.one_grant_per_purpose(at(4, 9)).await.expect("settled");
        assert_eq!(replaced, [Superseded { grant: "g-older".into(), by: "g-newer".into() }], "{backend}");
        let older = store.grant("g-older").await.expect("older").grant;
        assert_eq!(
            (older.status, older.superseded_by.as_deref()),
            (GrantStatus::Superseded, Some("g-newer"))
        );
        assert_eq!(store.grant("g-newer").await.expect("newer").grant.status, GrantStatus::Active);
        assert!(store.one_grant_per_purpose(at(4, 10)).await.expect("again").is_empty(), "{backend}: once");

        let demand =
            store.create_demand(new_demand("人社厅", "R-HOUSEHOLD"), at(4, 9)).await.expect("demand");
        let third = grant_of("g-third", &demand.id, "KSTB-GA-001", day);
        let around = sqlx::query(
            "INSERT INTO grants (id, demand_id, consumer_department, resource_code, status, valid_until, version, \
             body, updated_at, purpose) VALUES ($1, $2, $3, $4, 'active', '2027-06-30', 1, $5, '2026-03-04 09:00:00', \
             (SELECT purpose FROM grants WHERE id = 'g-newer'))",
        )
        .bind("g-third")
        .bind(&demand.id)
        .bind(&third.consumer_department)
        .bind(&third.resource_code)
        .bind(serde_json::to_string(&third).expect("json"))
        .execute(&store.pool)
        .await;
        assert!(
            around.is_err(),
            "{backend}: a second standing grant for one purpose is refused by the store"
        );
    }
}

/// Across gateways: a demand answered here for a peer's department sends every grant version
/// to the peer, numbered in commit order; messages from a peer are applied once each, in
/// sequence; a mirror only moves to newer versions.
#[tokio::test]
async fn peer_messages_are_numbered_applied_once_and_mirrors_only_move_forward() {
    use crate::federation::{Crossing, GrantMirror, PeerMessage};
    use tongban_policy::grant::GrantStatus;
    use tongban_policy::workflow::Side;

    for (backend, store, _dir) in stores().await {
        // The supplier's side: a demand from the peer "guangdong", approved here.
        let mut filing = new_demand("11440000MB0000001X", "R-HOUSEHOLD");
        filing.crossing = Some(Crossing { peer: "guangdong".into(), side: Side::Supplier });
        let demand = store.create_demand(filing, at(3, 9)).await.expect("demand");
        assert_eq!(
            demand.filing.crossing.as_ref().map(|c| (c.peer.as_str(), c.side)),
            Some(("guangdong", Side::Supplier)),
            "{backend}"
        );
        let grant = tongban_policy::grant::Grant {
            demand_id: demand.id.clone(),
            ..grant_of("g-crossing", "-", "KSTB-GA-001", at(3, 9).date())
        };
        let step = PeerMessage::GrantChanged { grant: Box::new(grant.clone()) };
        store
            .update_demand(
                &demand.id,
                demand.version,
                &demand.filing.workflow,
                Some((&grant, "user:office")),
                Some(("guangdong", &step)),
                at(3, 10),
            )
            .await
            .expect("approved");
        let revoked = grant.change(&tongban_policy::grant::GrantChange::Revoke).expect("revoke");
        store.update_grant(&revoked, 1, "user:supplier", Some("停止共享"), at(3, 11)).await.expect("revoked");
        // The step first, then the approval's grant, then the revocation: 1, 2, 3.
        let depth = store.outbox_depths().await.expect("depths");
        assert_eq!(depth["guangdong"].pending, 3, "{backend}");
        let mut sent = Vec::new();
        while let Some((seq, message)) = store.next_outgoing("guangdong").await.expect("next") {
            sent.push((
                seq,
                message.kind(),
                match &message {
                    PeerMessage::GrantChanged { grant } => grant.version,
                    PeerMessage::DemandStep(_) => 0,
                },
            ));
            store.delivered("guangdong", seq, None, at(3, 12)).await.expect("delivered");
        }
        assert_eq!(
            sent,
            [(1, "grant_changed", 1), (2, "grant_changed", 1), (3, "grant_changed", 2)],
            "{backend}"
        );
        assert_eq!(store.outbox_depths().await.expect("depths")["guangdong"].delivered, 3, "{backend}");

        // The home side: a peer's mirror messages, applied in sequence and once each.
        let mut home = new_demand("11440000MB0000001X", "410000:R-HOUSEHOLD");
        home.crossing = Some(Crossing { peer: "henan".into(), side: Side::Home });
        let mirror_of = |grant: &tongban_policy::grant::Grant| GrantMirror {
            peer: "henan".into(),
            resource_id: "410000:R-HOUSEHOLD".into(),
            grant: grant.clone(),
            received_at: at(3, 12),
        };
        let (active, revoked) = (
            tongban_policy::grant::Grant { id: "g-remote".into(), ..grant.clone() },
            tongban_policy::grant::Grant { id: "g-remote".into(), ..revoked.clone() },
        );
        store.create_demand(home, at(3, 9)).await.expect("home demand");
        assert_eq!(store.inbox_position("henan").await.expect("position"), 0, "{backend}");
        let apply = |seq: i64, mirror: GrantMirror| {
            let store = store.clone();
            async move { store.receive_from_peer("henan", seq, PeerChange::Mirror(&mirror), at(3, 12)).await }
        };
        assert_eq!(apply(1, mirror_of(&active)).await.expect("1"), Received::Applied, "{backend}");
        assert_eq!(apply(2, mirror_of(&revoked)).await.expect("2"), Received::Applied, "{backend}");
        // A repeat changes nothing, and an older version never replaces a newer one.
        assert_eq!(apply(1, mirror_of(&active)).await.expect("repeat"), Received::Repeat, "{backend}");
        assert_eq!(apply(3, mirror_of(&active)).await.expect("3"), Received::Applied, "{backend}");
        assert_eq!(store.inbox_position("henan").await.expect("position"), 3, "{backend}");
        let mirrors = store.grant_mirrors(Some(&grant.consumer_department)).await.expect("mirrors");
        assert_eq!(
            mirrors.iter().map(|m| (m.grant.id.as_str(), m.grant.status)).collect::<Vec<_>>(),
            [("g-remote", GrantStatus::Revoked)],
            "{backend}"
        );
        assert!(store.grant_mirrors(Some("another")).await.expect("mirrors").is_empty(), "{backend}");
    }
}

/// A revocation is made once, with its action in the trail, and stands as first made on
/// either database.
#[tokio::test]
async fn a_licence_is_revoked_once_and_the_first_revocation_stands() {
    for (backend, store, _dir) in stores().await {
        let first = Acting { by: "system:anhui", at: at(3, 10) };
        assert_eq!(
            store.licence_revocation("E04", "340102400000001").await.expect("read"),
            None,
            "{backend}"
        );
        let revoked =
            store.revoke_licence("E04", "340102400000001", "更正后重新出具", first).await.expect("revoke");
        assert_eq!((revoked.actor.as_str(), revoked.revoked_at), ("system:anhui", at(3, 10)), "{backend}");
        let later = Acting { by: "user:other", at: at(4, 10) };
        let again = store.revoke_licence("E04", "340102400000001", "again", later).await.expect("revoke");
        assert_eq!(again, revoked, "{backend}: the first revocation stands");
        assert_eq!(store.licence_revocation("E04", "340102400000001").await.expect("read"), Some(revoked));
        assert_eq!(
            store.licence_revocation("E05", "340102400000001").await.expect("read"),
            None,
            "{backend}"
        );
        let trail =
            store.admin_actions(Some("340102400000001"), &PageRequest::default()).await.expect("trail");
        let actions: Vec<&str> = trail.items.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["licence.revoked"], "{backend}: one action, for the revocation made");
    }
}

/// A seal certificate is registered once per department, listed, retired for good, and a
/// department holds at most its limit in force, on either database.
#[tokio::test]
async fn seal_certificates_are_registered_once_retired_for_good_and_bounded() {
    use super::{MAX_SEAL_CERTIFICATES, NewSealCertificate};
    fn new(fingerprint: &str) -> NewSealCertificate<'_> {
        NewSealCertificate {
            department_code: "11340000MB0000000A",
            fingerprint,
            certificate: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            subject: "CN=seal",
            not_before: at(1, 0),
            not_after: at(20, 0),
        }
    }
    for (backend, store, _dir) in stores().await {
        let acting = Acting { by: "user:supplier", at: at(3, 10) };
        let registered = store.register_seal_certificate(new("aa"), acting).await.expect("register");
        assert_eq!(
            (registered.registered_by.as_str(), registered.retired_at),
            ("user:supplier", None),
            "{backend}"
        );
        let again = store.register_seal_certificate(new("aa"), acting).await;
        assert!(matches!(again, Err(StoreError::Duplicate(_))), "{backend}: {again:?}");
        // Another department's certificate of the same fingerprint is its own.
        let other = NewSealCertificate { department_code: "11410000MB0000000B", ..new("aa") };
        store.register_seal_certificate(other, acting).await.expect("another department's");
        let ours = store.seal_certificates(Some("11340000MB0000000A"), true).await.expect("list");
        assert_eq!(ours.len(), 1, "{backend}");
        assert_eq!(store.seal_certificates(None, true).await.expect("all").len(), 2, "{backend}");

        let later = Acting { by: "user:supplier", at: at(4, 10) };
        let retired = store.retire_seal_certificate("11340000MB0000000A", "aa", later).await.expect("retire");
        assert_eq!(retired.retired_at, Some(at(4, 10)), "{backend}");
        let again = store
            .retire_seal_certificate("11340000MB0000000A", "aa", Acting { by: "user:x", at: at(5, 10) })
            .await
            .expect("retire again");
        assert_eq!(again, retired, "{backend}: retired as first retired");
        assert!(store.seal_certificates(Some("11340000MB0000000A"), true).await.expect("list").is_empty());
        assert_eq!(store.seal_certificates(Some("11340000MB0000000A"), false).await.expect("list").len(), 1);
        let missing = store.retire_seal_certificate("11340000MB0000000A", "bb", later).await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))), "{backend}: {missing:?}");
        let reregistered = store.register_seal_certificate(new("aa"), acting).await;
        assert!(
            matches!(reregistered, Err(StoreError::Duplicate(_))),
            "{backend}: a retired seal stays retired"
        );

        let fingerprints: Vec<String> = (0..MAX_SEAL_CERTIFICATES).map(|i| format!("f{i:02}")).collect();
        for fingerprint in &fingerprints {
            store.register_seal_certificate(new(fingerprint), acting).await.expect("within the limit");
        }
        let over = store.register_seal_certificate(new("over"), acting).await;
        assert!(matches!(over, Err(StoreError::Conflict(_))), "{backend}: {over:?}");
        let trail = store.admin_actions(Some("aa"), &PageRequest::default()).await.expect("trail");
        let actions: Vec<&str> = trail.items.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions.iter().filter(|a| **a == "seal.registered").count(), 2, "{backend}: {actions:?}");
        assert_eq!(actions.iter().filter(|a| **a == "seal.retired").count(), 1, "{backend}: {actions:?}");
    }
}
