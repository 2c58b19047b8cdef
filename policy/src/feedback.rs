//! What consuming departments say back about the data they receive: objections to an item of
//! an answer (数据纠错) and ratings of a grant's service (好差评), with the supplier's answers
//! and the working-day deadlines they run against.
//!
//! Neither names a person. An objection points at an exchange; the gateway fills in the
//! resource, the item and a keyed digest of the record's key from the exchange's own record,
//! so the supplier can find the record while the objection holds no identity number.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;

/// Why a feedback step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("the objection was already answered ({0:?})")]
    AlreadyAnswered(ObjectionState),
    #[error("the rating opened no rectification task, or it was already answered")]
    NothingToAnswer,
    #[error("{0}")]
    Invalid(String),
}

/// Where an objection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ObjectionState {
    /// Waiting for the supplier's answer.
    Open,
    /// The supplier corrected the data.
    Corrected,
    /// The supplier checked the data and found it correct.
    ConfirmedCorrect,
    /// The supplier refused the objection, with a reason.
    Rejected,
}

impl ObjectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectionState::Open => "open",
            ObjectionState::Corrected => "corrected",
            ObjectionState::ConfirmedCorrect => "confirmed_correct",
            ObjectionState::Rejected => "rejected",
        }
    }
}

/// A supplier's answer to an objection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectionAnswer {
    /// The data was wrong and is corrected at the source; `note` says what was done.
    Corrected { note: String },
    /// The data was checked and is right.
    ConfirmedCorrect { note: String },
    /// The objection is refused; `reason` says why.
    Rejected { reason: String },
}

impl ObjectionAnswer {
    fn state(&self) -> ObjectionState {
        match self {
            ObjectionAnswer::Corrected { .. } => ObjectionState::Corrected,
            ObjectionAnswer::ConfirmedCorrect { .. } => ObjectionState::ConfirmedCorrect,
            ObjectionAnswer::Rejected { .. } => ObjectionState::Rejected,
        }
    }

    fn text(&self) -> &str {
        match self {
            ObjectionAnswer::Corrected { note } | ObjectionAnswer::ConfirmedCorrect { note } => note,
            ObjectionAnswer::Rejected { reason } => reason,
        }
    }
}

/// What the exchange log says of the call an objection names, as the gateway reads it from
/// the call's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectedExchange {
    pub exchange_id: String,
    pub consumer_department: String,
    pub consumer_system: Option<String>,
    pub resource: String,
    pub supplier: String,
    /// The service item the call named as its purpose.
    pub service_item: Option<String>,
    /// The keyed digest of the key the call looked up (an identity number, an account).
    pub key_digest: String,
    /// The items the answer held.
    pub items: Vec<String>,
}

/// An objection to one item of one answer (数据纠错).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Objection {
    pub id: String,
    /// The exchange whose answer is objected to.
    pub exchange_id: String,
    pub consumer_department: String,
    pub consumer_system: Option<String>,
    /// The actor who filed it (`user:…` or `system:…`).
    pub filed_by: String,
    pub resource: String,
    pub supplier: String,
    /// The service item the objected call served.
    #[serde(default)]
    pub service_item: Option<String>,
    /// The keyed digest of the record's key, from the exchange record; never the key.
    pub key_digest: String,
    /// The information item said to be wrong.
    pub item: String,
    /// What the consumer says is wrong, without personal data.
    pub description: String,
    pub state: ObjectionState,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub filed_at: NaiveDateTime,
    /// The last working day for the supplier's answer.
    pub deadline: NaiveDate,
    #[serde(default, with = "crate::time::rfc3339_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub answered_at: Option<NaiveDateTime>,
    pub answered_by: Option<String>,
    /// The supplier's note or reason.
    pub answer: Option<String>,
    /// Whether the answer came after the deadline.
    #[serde(default)]
    pub answered_late: bool,
}

/// The longest description or answer kept, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

fn check_text(field: &str, text: &str, required: bool) -> Result<(), FeedbackError> {
    if required && text.trim().is_empty() {
        return Err(FeedbackError::Invalid(format!("{field} must not be empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(FeedbackError::Invalid(format!("{field} is longer than {MAX_TEXT_CHARS} characters")));
    }
    if holds_identity_number(text) {
        return Err(FeedbackError::Invalid(format!(
            "{field} holds an identity number; feedback names no person (the exchange id finds the record)"
        )));
    }
    Ok(())
}

/// Whether `text` holds a valid citizen identity number (18 characters with a right check
/// digit), so feedback that would put one in the store is refused rather than kept.
pub fn holds_identity_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = start
            + bytes[start..].iter().take_while(|b| b.is_ascii_digit() || matches!(b, b'X' | b'x')).count();
        let run = &text[start..end];
        if run.len() >= 18 && (0..=run.len() - 18).any(|at| crate::IdNumber::parse(&run[at..at + 18]).is_ok())
        {
            return true;
        }
        start = end.max(start + 1);
    }
    false
}

/// A working-day deadline `days` after `at`: the clock starts on the next working day, as
/// the demand workflow's stages do.
pub fn deadline_after(at: NaiveDateTime, days: u32, calendar: &WorkingCalendar) -> NaiveDate {
    calendar.add_working_days(at.date(), days)
}

impl Objection {
    /// Files an objection to `item` of the answer `exchange` holds. The item must be one the
    /// answer held.
    pub fn file(
        id: String,
        exchange: ObjectedExchange,
        item: String,
        description: String,
        filed_by: String,
        at: NaiveDateTime,
        deadline: NaiveDate,
    ) -> Result<Objection, FeedbackError> {
        if !exchange.items.contains(&item) {
            return Err(FeedbackError::Invalid(format!(
                "item {item:?} was not in the answer of exchange {}; it held {:?}",
                exchange.exchange_id, exchange.items
            )));
        }
        check_text("description", &description, true)?;
        Ok(Objection {
            id,
            exchange_id: exchange.exchange_id,
            consumer_department: exchange.consumer_department,
            consumer_system: exchange.consumer_system,
            filed_by,
            resource: exchange.resource,
            supplier: exchange.supplier,
            service_item: exchange.service_item,
            key_digest: exchange.key_digest,
            item,
            description,
            state: ObjectionState::Open,
            filed_at: at,
            deadline,
            answered_at: None,
            answered_by: None,
            answer: None,
            answered_late: false,
        })
    }

    /// The supplier's answer. An objection is answered once.
    pub fn answer(
        &mut self,
        answer: &ObjectionAnswer,
        by: String,
        at: NaiveDateTime,
    ) -> Result<(), FeedbackError> {
        if self.state != ObjectionState::Open {
            return Err(FeedbackError::AlreadyAnswered(self.state));
        }
        check_text(
            if matches!(answer, ObjectionAnswer::Rejected { .. }) { "reason" } else { "note" },
            answer.text(),
            true,
        )?;
        self.state = answer.state();
        self.answer = Some(answer.text().to_owned());
        self.answered_by = Some(by);
        self.answered_at = Some(at);
        self.answered_late = at.date() > self.deadline;
        Ok(())
    }

    /// Whether the answer is overdue on `today`: open past its deadline.
    pub fn overdue(&self, today: NaiveDate) -> bool {
        self.state == ObjectionState::Open && today > self.deadline
    }
}

/// What a rating says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RatingTag {
    /// 响应慢
    Slow,
    /// 数据错误
    WrongData,
    /// 数据不全
    Incomplete,
    /// 更新不及时
    Stale,
    /// 服务不可用
    Unavailable,
    /// 其他
    Other,
}

/// The highest score that counts as poor (差评) and opens a rectification task.
pub const POOR_SCORE: u8 = 2;

/// A consuming department's rating of one grant's service in one month (好差评).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rating {
    pub id: String,
    pub grant_id: String,
    pub resource: String,
    pub supplier: String,
    pub consumer_department: String,
    /// The service item the grant serves.
    #[serde(default)]
    pub service_item: String,
    /// The month rated, `YYYY-MM`; one rating per grant and month.
    pub period: String,
    /// 1 (very poor) to 5 (very good).
    pub score: u8,
    pub tags: Vec<RatingTag>,
    pub comment: String,
    pub rated_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub rated_at: NaiveDateTime,
    /// The supplier's rectification (整改) task, opened by a poor score.
    pub rectification: Option<Rectification>,
}

/// A supplier's task to answer a poor rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rectification {
    pub deadline: NaiveDate,
    /// What the supplier did about it.
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub answered_at: Option<NaiveDateTime>,
    #[serde(default)]
    pub answered_late: bool,
}

/// The grant a rating is about, as the platform reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedGrant {
    pub grant_id: String,
    pub resource: String,
    pub supplier: String,
    pub consumer_department: String,
    pub service_item: String,
}

/// The month `at` falls in, as `YYYY-MM`.
pub fn period_of(at: NaiveDateTime) -> String {
    at.format("%Y-%m").to_string()
}

impl Rating {
    /// A rating of `grant` for the month of `at`. A poor score opens a rectification task due
    /// `deadline`, and must say what went wrong with at least one tag.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        grant: RatedGrant,
        score: u8,
        mut tags: Vec<RatingTag>,
        comment: String,
        rated_by: String,
        at: NaiveDateTime,
        deadline: NaiveDate,
    ) -> Result<Rating, FeedbackError> {
        if !(1..=5).contains(&score) {
            return Err(FeedbackError::Invalid(format!("score is 1 to 5, not {score}")));
        }
        tags.sort_unstable();
        tags.dedup();
        let poor = score <= POOR_SCORE;
        if poor && tags.is_empty() {
            return Err(FeedbackError::Invalid(
                "a poor rating names what went wrong with at least one tag".into(),
            ));
        }
        check_text("comment", &comment, false)?;
        Ok(Rating {
            id,
            grant_id: grant.grant_id,
            resource: grant.resource,
            supplier: grant.supplier,
            consumer_department: grant.consumer_department,
            service_item: grant.service_item,
            period: period_of(at),
            score,
            tags,
            comment,
            rated_by,
            rated_at: at,
            rectification: poor.then_some(Rectification {
                deadline,
                answer: None,
                answered_by: None,
                answered_at: None,
                answered_late: false,
            }),
        })
    }

    /// The supplier's answer to the rectification task.
    pub fn rectify(&mut self, answer: String, by: String, at: NaiveDateTime) -> Result<(), FeedbackError> {
        let Some(task) = self.rectification.as_mut().filter(|t| t.answer.is_none()) else {
            return Err(FeedbackError::NothingToAnswer);
        };
        check_text("answer", &answer, true)?;
        task.answered_late = at.date() > task.deadline;
        task.answer = Some(answer);
        task.answered_by = Some(by);
        task.answered_at = Some(at);
        Ok(())
    }

    /// Whether the rectification task is open past its deadline on `today`.
    pub fn overdue(&self, today: NaiveDate) -> bool {
        self.rectification.as_ref().is_some_and(|t| t.answer.is_none() && today > t.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, day).and_then(|d| d.and_hms_opt(hour, 0, 0)).expect("time")
    }

    fn exchange() -> ObjectedExchange {
        ObjectedExchange {
            exchange_id: "e1".into(),
            consumer_department: "c".into(),
            consumer_system: Some("s".into()),
            resource: "r".into(),
            supplier: "p".into(),
            service_item: Some("KSTB-GA-001".into()),
            key_digest: "d".into(),
            items: vec!["name".into(), "status".into()],
        }
    }

    #[test]
    fn an_objection_names_an_item_of_the_answer_and_is_answered_once() {
        let deadline = at(9, 0).date();
        let file = |item: &str, text: &str| {
            Objection::file(
                "o1".into(),
                exchange(),
                item.into(),
                text.into(),
                "user:d".into(),
                at(2, 9),
                deadline,
            )
        };
        assert!(
            matches!(file("address", "错"), Err(FeedbackError::Invalid(m)) if m.contains("not in the answer"))
        );
        assert!(matches!(file("status", " "), Err(FeedbackError::Invalid(_))));
        let with_number = "申请人11010519491231002X的户口状态有误";
        assert!(
            matches!(file("status", with_number), Err(FeedbackError::Invalid(m)) if m.contains("identity number"))
        );
        assert!(!holds_identity_number("办件编号 GD-2026-000731，电话 13800138000"));
        let mut objection = file("status", "户口状态应为迁出").expect("filed");
        assert!(!objection.overdue(deadline));
        assert!(objection.overdue(at(10, 0).date()));
        let empty = ObjectionAnswer::Rejected { reason: String::new() };
        assert!(
            matches!(objection.answer(&empty, "user:s".into(), at(3, 9)), Err(FeedbackError::Invalid(m)) if m.contains("reason"))
        );
        let corrected = ObjectionAnswer::Corrected { note: "已更正".into() };
        objection.answer(&corrected, "user:s".into(), at(10, 9)).expect("answered");
        assert_eq!((objection.state, objection.answered_late), (ObjectionState::Corrected, true));
        assert!(!objection.overdue(at(20, 0).date()), "an answered objection is not overdue");
        assert_eq!(
            objection.answer(&corrected, "user:s".into(), at(11, 9)),
            Err(FeedbackError::AlreadyAnswered(ObjectionState::Corrected))
        );
    }

    #[test]
    fn a_poor_rating_opens_a_task_and_needs_a_tag() {
        let grant = RatedGrant {
            grant_id: "g".into(),
            resource: "r".into(),
            supplier: "p".into(),
            consumer_department: "c".into(),
            service_item: "KSTB-GA-001".into(),
        };
        let rate = |score: u8, tags: Vec<RatingTag>| {
            Rating::new(
                "r1".into(),
                grant.clone(),
                score,
                tags,
                String::new(),
                "user:d".into(),
                at(30, 9),
                at(14, 0).date(),
            )
        };
        assert!(matches!(rate(0, vec![]), Err(FeedbackError::Invalid(_))));
        assert!(matches!(rate(6, vec![]), Err(FeedbackError::Invalid(_))));
        assert!(matches!(rate(2, vec![]), Err(FeedbackError::Invalid(m)) if m.contains("tag")));
        let mut good = rate(4, vec![]).expect("good");
        assert_eq!((good.period.as_str(), good.rectification.is_none()), ("2026-11", true));
        assert_eq!(
            good.rectify("x".into(), "user:s".into(), at(30, 10)),
            Err(FeedbackError::NothingToAnswer)
        );
        let mut poor = rate(1, vec![RatingTag::Slow, RatingTag::WrongData, RatingTag::Slow]).expect("poor");
        assert_eq!(poor.tags, [RatingTag::Slow, RatingTag::WrongData]);
        assert!(poor.overdue(at(15, 0).date()));
        poor.rectify("已扩容".into(), "user:s".into(), at(13, 9)).expect("answered");
        assert!(!poor.overdue(at(15, 0).date()));
        assert_eq!(poor.rectification.as_ref().map(|t| t.answered_late), Some(false));
        assert_eq!(
            poor.rectify("again".into(), "user:s".into(), at(13, 9)),
            Err(FeedbackError::NothingToAnswer)
        );
    }
}
