//! The versioned catalog and the service items it serves.

use chrono::NaiveDateTime;
use sqlx::Row;
use tongban_policy::catalog::Resource;
use tongban_policy::org::ServiceItem;

use super::{Keyset, Page, PageRequest, Result, Store, StoreError, duplicate, json_column, time, unique_as};

/// Which catalog resources to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Only resources this department supplies.
    pub supplier: Option<String>,
    /// Only resources of this share type.
    pub share_type: Option<tongban_policy::catalog::ShareType>,
    /// Only resources serving this service item.
    pub service_item: Option<String>,
    /// Only resources bound to this dataset.
    pub dataset: Option<String>,
}

impl Store {
    /// A page of the service items, by code.
    pub async fn service_items_page(&self, request: &PageRequest) -> Result<Page<ServiceItem>> {
        Keyset::new("SELECT body FROM service_items", "code")
            .page(&self.pool, request, |r| json_column(r, "body"))
            .await
    }

    /// A page of the catalog's resources at their newest versions, by code.
    pub async fn resources_page(
        &self,
        filter: &ResourceFilter,
        request: &PageRequest,
    ) -> Result<Page<Resource>> {
        Keyset::new("SELECT r.body FROM resource_versions r", "r.code")
            .condition_with(
                "r.version = (SELECT MAX(version) FROM resource_versions n WHERE n.code = r.code)",
                [],
            )
            .equal("r.supplier", filter.supplier.clone())
            // The rest is held in the resource's document, and is checked on it.
            .page_where(
                &self.pool,
                request,
                |r| json_column(r, "body"),
                |resource: &Resource| {
                    filter.share_type.is_none_or(|t| resource.share_type == t)
                        && filter.service_item.as_ref().is_none_or(|s| resource.service_items.contains(s))
                        && filter.dataset.as_ref().is_none_or(|d| &resource.dataset == d)
                },
            )
            .await
    }

    pub async fn create_service_item(&self, item: &ServiceItem) -> Result<()> {
        sqlx::query("INSERT INTO service_items (code, name, ministry, body) VALUES ($1, $2, $3, $4)")
            .bind(&item.code)
            .bind(&item.name)
            .bind(&item.ministry)
            .bind(serde_json::to_string(item)?)
            .execute(&self.pool)
            .await
            .map_err(duplicate(|| format!("service item {}", item.code)))?;
        Ok(())
    }

    /// Stores an imported list in one transaction: `created` as new items, `updated` over
    /// the stored ones of their codes. Either all of it is written or none.
    pub async fn import_service_items(&self, created: &[ServiceItem], updated: &[ServiceItem]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for item in created {
            sqlx::query("INSERT INTO service_items (code, name, ministry, body) VALUES ($1, $2, $3, $4)")
                .bind(&item.code)
                .bind(&item.name)
                .bind(&item.ministry)
                .bind(serde_json::to_string(item)?)
                .execute(&mut *tx)
                .await
                .map_err(duplicate(|| format!("service item {}", item.code)))?;
        }
        for item in updated {
            let done =
                sqlx::query("UPDATE service_items SET name = $1, ministry = $2, body = $3 WHERE code = $4")
                    .bind(&item.name)
                    .bind(&item.ministry)
                    .bind(serde_json::to_string(item)?)
                    .bind(&item.code)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound(format!("service item {}", item.code)));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn service_item(&self, code: &str) -> Result<ServiceItem> {
        let row = sqlx::query("SELECT body FROM service_items WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("service item {code}")))?;
        json_column(&row, "body")
    }

    pub async fn service_items(&self) -> Result<Vec<ServiceItem>> {
        let rows = sqlx::query("SELECT body FROM service_items ORDER BY code").fetch_all(&self.pool).await?;
        rows.iter().map(|r| json_column(r, "body")).collect()
    }

    /// Stores `resource` as a new version. Its version must be one more than the newest
    /// stored (1 for a new code); a concurrent edit that took the number first makes this one
    /// a conflict rather than a silent overwrite.
    pub async fn put_resource_version(
        &self,
        resource: &Resource,
        created_by: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let newest = self.newest_resource_version(&resource.code).await?;
        if i64::from(resource.version) != newest + 1 {
            return Err(if newest == 0 {
                StoreError::NotFound(format!("resource {}", resource.code))
            } else {
                StoreError::Conflict(format!("resource {} (now at version {newest})", resource.code))
            });
        }
        sqlx::query(
            "INSERT INTO resource_versions (code, version, supplier, name, body, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&resource.code)
        .bind(i64::from(resource.version))
        .bind(&resource.supplier)
        .bind(&resource.name)
        .bind(serde_json::to_string(resource)?)
        .bind(created_by)
        .bind(time(now))
        .execute(&self.pool)
        .await
        .map_err(unique_as(|| {
            StoreError::Conflict(format!("resource {} version {}", resource.code, resource.version))
        }))?;
        Ok(())
    }

    /// The newest version number of a resource, 0 when there is none.
    pub async fn newest_resource_version(&self, code: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM resource_versions WHERE code = $1")
            .bind(code)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("v")?)
    }

    /// A resource at `version`, or its newest version.
    pub async fn resource(&self, code: &str, version: Option<u32>) -> Result<Resource> {
        let version = match version {
            Some(v) => i64::from(v),
            None => self.newest_resource_version(code).await?,
        };
        let row = sqlx::query("SELECT body FROM resource_versions WHERE code = $1 AND version = $2")
            .bind(code)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("resource {code} version {version}")))?;
        json_column(&row, "body")
    }

    /// The newest version of every resource, optionally of one supplier only.
    pub async fn resources(&self, supplier: Option<&str>) -> Result<Vec<Resource>> {
        let mut sql = String::from(
            "SELECT r.body FROM resource_versions r \
             WHERE r.version = (SELECT MAX(version) FROM resource_versions n WHERE n.code = r.code)",
        );
        if supplier.is_some() {
            sql.push_str(" AND r.supplier = $1");
        }
        sql.push_str(" ORDER BY r.code");
        let mut query = sqlx::query(&sql);
        if let Some(supplier) = supplier {
            query = query.bind(supplier);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|r| json_column(r, "body")).collect()
    }
}
