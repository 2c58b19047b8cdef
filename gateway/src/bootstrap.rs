//! `tongban bootstrap`: the first platform administrator of a new deployment.
//!
//! Every other account, department and system is made through the API by someone signed in,
//! so a new store needs one person to start from. This makes that person, in a data office
//! department, once: a store that already has a platform administrator is left alone.

use anyhow::Context;
use tongban_policy::org::{Department, DepartmentRole, UserRole};

use tongban_platform::Platform;
use tongban_platform::store::{StoreError, UserRecord};

/// The first administrator and the department they belong to.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    /// 统一社会信用代码 of the data office running the platform.
    pub department_code: String,
    pub department_name: String,
    /// GB/T 2260 division of the department's seat.
    pub region: String,
    pub username: String,
    pub display_name: String,
}

/// Makes `admin` a platform administrator with a new password, which is returned (and kept
/// only as its hash). The department is registered as a data office unless it exists. The
/// administrator, the department and the store's first-administrator slot are written in one
/// transaction, so of two bootstraps run at once only one makes an administrator.
pub async fn first_admin(platform: &Platform, admin: &FirstAdmin) -> anyhow::Result<String> {
    let users = platform.store.users(None).await?;
    if let Some(existing) = users.iter().find(|u| u.roles.contains(&UserRole::PlatformAdmin)) {
        anyhow::bail!(
            "the platform already has an administrator ({}); make further accounts in the console \
             or through POST /api/v1/users",
            existing.username
        );
    }
    let department = match platform.store.department(&admin.department_code).await {
        Ok(department) => department,
        Err(StoreError::NotFound(_)) => {
            let department = Department {
                code: admin.department_code.clone(),
                name: admin.department_name.clone(),
                region: admin.region.clone(),
                roles: vec![DepartmentRole::DataOffice],
            };
            department.validate().context("the department")?;
            department
        }
        Err(e) => return Err(e.into()),
    };
    let username = tongban_platform::users::valid_username(&admin.username)?;
    let password = tongban_platform::auth::new_password();
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || tongban_platform::auth::hash_password(&password)).await?
    };
    let now = platform.now();
    let user = UserRecord {
        username: username.to_owned(),
        display_name: admin.display_name.clone(),
        department_code: department.code.clone(),
        roles: vec![UserRole::PlatformAdmin],
        enabled: true,
        created_at: now,
    };
    match platform.store.create_first_admin(&department, &user, &hash, now).await {
        Ok(()) => Ok(password),
        Err(StoreError::Conflict(_)) => anyhow::bail!(
            "the platform already has an administrator, made by another bootstrap just now; \
             make further accounts in the console or through POST /api/v1/users"
        ),
        Err(e) => Err(anyhow::anyhow!("the administrator: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> FirstAdmin {
        FirstAdmin {
            department_code: tongban_policy::credit_code::CreditCode::compose('1', '1', "410000", "00410003"),
            department_name: "河南省数据局".into(),
            region: "410000".into(),
            username: "admin".into(),
            display_name: "平台管理员".into(),
        }
    }

    #[tokio::test]
    async fn the_first_administrator_signs_in_and_a_second_bootstrap_is_refused() {
        let platform = Platform::in_memory(Vec::new()).await.expect("platform");
        let password = first_admin(&platform, &admin()).await.expect("bootstrapped");
        let (user, hash) =
            platform.store.user_with_password("admin").await.expect("store").expect("the administrator");
        assert_eq!(user.roles, vec![UserRole::PlatformAdmin]);
        assert!(
            tongban_platform::auth::verify_password(&password, &hash),
            "the printed password is the one kept"
        );
        assert!(!hash.contains(&password));
        let department = platform.store.department(&admin().department_code).await.expect("department");
        assert_eq!(department.roles, vec![DepartmentRole::DataOffice]);

        let again = first_admin(&platform, &FirstAdmin { username: "admin2".into(), ..admin() })
            .await
            .expect_err("one first administrator");
        assert!(again.to_string().contains("already has an administrator (admin)"), "{again}");
        assert!(platform.store.user_with_password("admin2").await.expect("store").is_none());
    }

    #[tokio::test]
    async fn a_department_with_a_bad_credit_code_is_refused_and_nothing_is_made() {
        let platform = Platform::in_memory(Vec::new()).await.expect("platform");
        let bad = FirstAdmin { department_code: "91110000000000000X".into(), ..admin() };
        let refused = first_admin(&platform, &bad).await.expect_err("bad code");
        assert!(format!("{refused:#}").contains("credit code"), "{refused:#}");
        assert!(platform.store.users(None).await.expect("users").is_empty());
    }
}
