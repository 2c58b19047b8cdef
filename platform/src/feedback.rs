//! Objections (数据纠错) and ratings (好差评): who may file, answer and read them, and the
//! working-day deadlines they run against. The rules of each step are in
//! `tongban_policy::feedback`; this adds the parties and the store.

use tongban_policy::feedback::{
    ObjectedExchange, Objection, ObjectionAnswer, RatedGrant, Rating, RatingTag, deadline_after,
};
use tongban_policy::org::{DepartmentRole, UserRole};

use crate::store::{FeedbackFilter, Page, PageRequest};
use crate::{Caller, Platform, PlatformError};

impl From<tongban_policy::feedback::FeedbackError> for PlatformError {
    fn from(e: tongban_policy::feedback::FeedbackError) -> Self {
        use tongban_policy::feedback::FeedbackError as E;
        match e {
            E::AlreadyAnswered(_) | E::NothingToAnswer => PlatformError::new(
                crate::ErrorKind::Conflict,
                "already_answered",
                "Already answered",
                e.to_string(),
            ),
            E::Invalid(detail) => PlatformError::invalid(detail),
        }
    }
}

/// A rating as a consuming department gives it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingInput {
    pub grant_id: String,
    /// 1 (very poor) to 5 (very good); 2 or less opens a rectification task for the supplier.
    pub score: u8,
    /// What went wrong; a poor score names at least one.
    #[serde(default)]
    pub tags: Vec<RatingTag>,
    #[serde(default)]
    pub comment: String,
}

impl Platform {
    /// Files an objection to `item` of the answer of `exchange`, as the gateway read it from
    /// the exchange log. Only the department that received the answer may object to it: a
    /// demander of that department, or one of its systems.
    pub async fn file_objection(
        &self,
        caller: &Caller,
        exchange: ObjectedExchange,
        item: String,
        description: String,
    ) -> Result<Objection, PlatformError> {
        let allowed = match caller {
            Caller::System(_) => true,
            Caller::User { .. } => caller.has_role(UserRole::Demander),
        };
        if !allowed || caller.department().code != exchange.consumer_department {
            // The same answer whether the exchange is another department's or the caller
            // lacks the role, so a caller cannot learn which exchanges exist.
            return Err(PlatformError::not_found(format!(
                "exchange {} is not an answer your department received",
                exchange.exchange_id
            )));
        }
        let now = self.now();
        let deadline = deadline_after(now, self.limits.objection, &self.calendar);
        let objection = Objection::file(
            uuid::Uuid::now_v7().to_string(),
            exchange,
            item,
            description,
            caller.actor(),
            now,
            deadline,
        )?;
        self.store.insert_objection(&objection).await?;
        Ok(objection)
    }

    /// The supplier's answer to an objection: an administrator of the supplying department.
    pub async fn answer_objection(
        &self,
        caller: &Caller,
        id: &str,
        answer: &ObjectionAnswer,
    ) -> Result<Objection, PlatformError> {
        let (mut objection, version) = self.readable_objection(caller, id).await?;
        if !(caller.has_role(UserRole::SupplierAdmin) && caller.department().code == objection.supplier) {
            return Err(PlatformError::new(
                crate::ErrorKind::Forbidden,
                "wrong_role",
                "Wrong role",
                "objections are answered by an administrator of the supplying department",
            ));
        }
        objection.answer(answer, caller.actor(), self.now())?;
        self.store.update_objection(&objection, version).await?;
        Ok(objection)
    }

    /// One objection, for its parties, the reviewers of the supplier's province and those who
    /// oversee the platform; anyone else is told it does not exist.
    pub async fn objection(&self, caller: &Caller, id: &str) -> Result<Objection, PlatformError> {
        Ok(self.readable_objection(caller, id).await?.0)
    }

    async fn readable_objection(&self, caller: &Caller, id: &str) -> Result<(Objection, i64), PlatformError> {
        let (objection, version) = self.store.objection(id).await?;
        if !self.may_read_feedback(caller, &objection.consumer_department, &objection.supplier).await? {
            return Err(PlatformError::not_found(format!("objection {id} does not exist")));
        }
        Ok((objection, version))
    }

    /// A page of the objections `caller` may read within `asked`.
    pub async fn objections(
        &self,
        caller: &Caller,
        asked: FeedbackFilter,
        page: &PageRequest,
    ) -> Result<Page<Objection>, PlatformError> {
        let filter = self.feedback_scope(caller, asked)?;
        Ok(self.store.objections_page(&filter, page).await?)
    }

    /// Rates a grant's service for the current month: a demander of the grant's consuming
    /// department, once per grant and month. A poor score opens a rectification task for
    /// the supplier.
    pub async fn rate(&self, caller: &Caller, input: RatingInput) -> Result<Rating, PlatformError> {
        let record = self.store.grant(&input.grant_id).await?;
        let grant = &record.grant;
        if !caller.has_role(UserRole::Demander) || caller.department().code != grant.consumer_department {
            return Err(PlatformError::not_found(format!(
                "grant {} is not one of your department's",
                input.grant_id
            )));
        }
        let resource = self.store.resource(&grant.resource_code, None).await?;
        let now = self.now();
        let rating = Rating::new(
            uuid::Uuid::now_v7().to_string(),
            RatedGrant {
                grant_id: grant.id.clone(),
                resource: grant.resource_code.clone(),
                supplier: resource.supplier,
                consumer_department: grant.consumer_department.clone(),
                service_item: grant.service_item.clone(),
            },
            input.score,
            input.tags,
            input.comment,
            caller.actor(),
            now,
            deadline_after(now, self.limits.rectification, &self.calendar),
        )?;
        self.store.insert_rating(&rating).await?;
        Ok(rating)
    }

    /// The supplier's answer to a poor rating (整改): an administrator of the supplier.
    pub async fn rectify(&self, caller: &Caller, id: &str, answer: String) -> Result<Rating, PlatformError> {
        let (mut rating, version) = self.readable_rating(caller, id).await?;
        if !(caller.has_role(UserRole::SupplierAdmin) && caller.department().code == rating.supplier) {
            return Err(PlatformError::new(
                crate::ErrorKind::Forbidden,
                "wrong_role",
                "Wrong role",
                "rectification tasks are answered by an administrator of the supplying department",
            ));
        }
        rating.rectify(answer, caller.actor(), self.now())?;
        self.store.update_rating(&rating, version).await?;
        Ok(rating)
    }

    pub async fn rating(&self, caller: &Caller, id: &str) -> Result<Rating, PlatformError> {
        Ok(self.readable_rating(caller, id).await?.0)
    }

    async fn readable_rating(&self, caller: &Caller, id: &str) -> Result<(Rating, i64), PlatformError> {
        let (rating, version) = self.store.rating(id).await?;
        if !self.may_read_feedback(caller, &rating.consumer_department, &rating.supplier).await? {
            return Err(PlatformError::not_found(format!("rating {id} does not exist")));
        }
        Ok((rating, version))
    }

    /// A page of the ratings `caller` may read within `asked` (whose state is the task's).
    pub async fn ratings(
        &self,
        caller: &Caller,
        asked: FeedbackFilter,
        page: &PageRequest,
    ) -> Result<Page<Rating>, PlatformError> {
        let filter = self.feedback_scope(caller, asked)?;
        Ok(self.store.ratings_page(&filter, page).await?)
    }

    /// The feedback `caller` may list, as a filter narrowing `asked`: departments their own
    /// (filed or to answer), reviewers that on their province's suppliers, those who oversee
    /// the platform all. Systems file objections but do not browse them.
    pub fn feedback_scope(
        &self,
        caller: &Caller,
        mut asked: FeedbackFilter,
    ) -> Result<FeedbackFilter, PlatformError> {
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
            asked.supplier_province = Some(department.province().to_owned());
        } else {
            if asked.party.as_ref().is_some_and(|p| p != &department.code) {
                return Err(PlatformError::forbidden("departments list their own feedback"));
            }
            asked.party = Some(department.code.clone());
        }
        Ok(asked)
    }

    async fn may_read_feedback(
        &self,
        caller: &Caller,
        consumer: &str,
        supplier: &str,
    ) -> Result<bool, PlatformError> {
        if caller.oversees() {
            return Ok(true);
        }
        let department = caller.department();
        if department.code == consumer || department.code == supplier {
            return Ok(true);
        }
        if caller.has_role(UserRole::DataOfficeReviewer) && department.has_role(DepartmentRole::DataOffice) {
            let supplier = self.store.department(supplier).await?;
            return Ok(supplier.province() == department.province());
        }
        Ok(false)
    }
}
