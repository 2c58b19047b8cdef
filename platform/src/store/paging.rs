//! The one way every list is paged: by key, in the store. A page is read as the rows whose key
//! follows the previous page's last, in key order, so a page costs the same wherever it is in
//! the list and a row added meanwhile neither repeats nor hides another.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::Result;

/// Which page of a list to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The `next` of the previous page; the first page when absent.
    pub after: Option<String>,
    /// At most this many items (1–500, default 100).
    pub limit: Option<u32>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 500;

    /// The first page of at most `limit` items.
    pub fn first(limit: u32) -> PageRequest {
        PageRequest { after: None, limit: Some(limit) }
    }

    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT).clamp(1, Self::MAX_LIMIT)
    }
}

/// A page of a list, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A list query paged by key: a `SELECT … FROM …`, its conditions with their bound values,
/// and the key expression it is ordered and resumed by.
pub(crate) struct Keyset {
    sql: String,
    binds: Vec<String>,
    key: &'static str,
}

impl Keyset {
    /// Rows of `select` (a `SELECT … FROM …` without `WHERE`) in the order of `key`, a column
    /// or an expression over columns whose values are unique.
    pub(crate) fn new(select: &str, key: &'static str) -> Keyset {
        Keyset { sql: format!("{select} WHERE 1 = 1"), binds: Vec::new(), key }
    }

    /// Adds a condition in which `$?` stands for `value` (as often as it appears).
    pub(crate) fn condition(self, condition: &str, value: impl Into<String>) -> Keyset {
        self.condition_with(&condition.replace("$?", "$?1"), [value.into()])
    }

    /// Adds a condition in which `$?1`, `$?2`, … stand for the values in turn.
    pub(crate) fn condition_with<const N: usize>(mut self, condition: &str, values: [String; N]) -> Keyset {
        let mut condition = condition.to_owned();
        // From the last, so that `$?1` is not taken for the start of `$?12`.
        for (index, value) in values.into_iter().enumerate().rev() {
            self.binds.push(value);
            condition = condition.replace(&format!("$?{}", index + 1), &format!("${}", self.binds.len()));
        }
        self.sql.push_str(" AND (");
        self.sql.push_str(&condition);
        self.sql.push(')');
        self
    }

    /// Adds `column = value` when a value is given.
    pub(crate) fn equal(self, column: &str, value: Option<impl Into<String>>) -> Keyset {
        match value {
            Some(value) => self.condition(&format!("{column} = $?"), value),
            None => self,
        }
    }

    /// The query's conditions and bound values, for a caller that orders and bounds it itself.
    pub(crate) fn into_parts(self) -> (String, Vec<String>) {
        (self.sql, self.binds)
    }

    /// Reads the page `request` asks for: one row more than the page, so that the extra row
    /// tells there is a next page, which starts after the last item's key.
    pub(crate) async fn page<T>(
        self,
        pool: &AnyPool,
        request: &PageRequest,
        decode: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Page<T>> {
        self.page_where(pool, request, decode, |_| true).await
    }

    /// Like [`Keyset::page`], keeping only the items `keep` accepts: for conditions on what a
    /// row holds as a JSON document. Rows are read in chunks until the page is full or the
    /// list ends, so a page is full whatever `keep` drops.
    pub(crate) async fn page_where<T>(
        self,
        pool: &AnyPool,
        request: &PageRequest,
        decode: impl Fn(&AnyRow) -> Result<T>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let limit = request.limit() as usize;
        let key_column = "page_key";
        let select = self.sql.replacen(" FROM ", &format!(", {} AS {key_column} FROM ", self.key), 1);
        let mut after = request.after.clone().unwrap_or_default();
        let mut kept: Vec<(String, T)> = Vec::new();
        loop {
            let sql = format!(
                "{select} AND {} > ${} ORDER BY {} LIMIT {}",
                self.key,
                self.binds.len() + 1,
                self.key,
                limit + 1
            );
            let mut query = sqlx::query(&sql);
            for bind in &self.binds {
                query = query.bind(bind);
            }
            let rows = query.bind(&after).fetch_all(pool).await?;
            let exhausted = rows.len() <= limit;
            for row in &rows {
                let key: String = row.try_get(key_column)?;
                let item = decode(row)?;
                after.clone_from(&key);
                if keep(&item) {
                    kept.push((key, item));
                }
            }
            if kept.len() > limit || exhausted {
                break;
            }
        }
        let next = if kept.len() > limit {
            kept.truncate(limit);
            kept.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        Ok(Page { items: kept.into_iter().map(|(_, item)| item).collect(), next })
    }
}

/// `text` with the characters `LIKE` treats specially escaped, for a pattern used with
/// `ESCAPE '\'`.
pub(crate) fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A `LIKE` pattern matching values that start with `prefix`, whatever characters it holds;
/// used with `ESCAPE '\'`.
pub(crate) fn starts_with_pattern(prefix: &str) -> String {
    format!("{}%", like_escaped(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_their_text_literally() {
        assert_eq!(starts_with_pattern("44"), "44%");
        assert_eq!(starts_with_pattern("4%_\\"), "4\\%\\_\\\\%");
        assert_eq!(like_escaped("\"data_office\""), "\"data\\_office\"");
    }
}
