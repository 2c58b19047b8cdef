//! Service-item lists (事项清单) as CSV files: the format national and provincial lists are
//! imported from and exported to, described in `docs/service-items.md`.
//!
//! A list is UTF-8 text (a leading byte-order mark, as spreadsheet programs write, is
//! accepted and written), comma-separated with RFC 4180 quoting, one item per row after a
//! header. Columns are named by the header, in English or in Chinese, in any order:
//!
//! | column        | 中文      | content                                           |
//! |---------------|-----------|---------------------------------------------------|
//! | `code`        | 事项编码  | the item's code in its list                       |
//! | `name`        | 事项名称  |                                                   |
//! | `item_type`   | 事项类型  | one of `tongban_policy::org::SERVICE_ITEM_TYPES`  |
//! | `ministry`    | 主管部门  | the responsible ministry                          |
//! | `legal_basis` | 设定依据  | may be empty                                      |
//! | `needs`       | 所需数据  | dataset names separated by `;` or `；`            |
//! | `list`        | 所属清单  | the list the item belongs to                      |

use tongban_policy::org::{ServiceItem, ServiceItemInput};

/// The columns, with their English and Chinese names, in the order exports write them.
const COLUMNS: [(&str, &str); 7] = [
    ("code", "事项编码"),
    ("name", "事项名称"),
    ("item_type", "事项类型"),
    ("ministry", "主管部门"),
    ("legal_basis", "设定依据"),
    ("needs", "所需数据"),
    ("list", "所属清单"),
];

/// The most rows one list may hold: the national lists have a few hundred items.
pub const MAX_ROWS: usize = 10_000;

/// What is wrong with a list, row by row, so its author can fix it in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ListError {
    pub problems: Vec<String>,
}

impl ListError {
    fn one(problem: impl Into<String>) -> ListError {
        ListError { problems: vec![problem.into()] }
    }
}

/// Reads a list. Nothing is returned unless every row is good; the problems of the first 50
/// bad rows are named with their line numbers.
pub fn parse(text: &str) -> Result<Vec<ServiceItemInput>, ListError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| ListError::one(format!("header: {e}")))?.clone();
    let mut positions = [None; COLUMNS.len()];
    for (index, header) in headers.iter().enumerate() {
        let Some(column) = COLUMNS.iter().position(|(en, zh)| header == *en || header == *zh) else {
            return Err(ListError::one(format!(
                "header: unknown column {header:?}; the columns are {}",
                COLUMNS.iter().map(|(en, zh)| format!("{en} ({zh})")).collect::<Vec<_>>().join(", ")
            )));
        };
        if positions[column].replace(index).is_some() {
            return Err(ListError::one(format!("header: column {header:?} appears twice")));
        }
    }
    let missing: Vec<&str> = COLUMNS
        .iter()
        .zip(positions)
        .filter(|((en, _), at)| at.is_none() && *en != "legal_basis")
        .map(|((en, _), _)| *en)
        .collect();
    if !missing.is_empty() {
        return Err(ListError::one(format!("header: missing columns {}", missing.join(", "))));
    }
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let mut codes = std::collections::HashMap::new();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let line = row.position().map_or(0, |p| p.line());
        if items.len() + problems.len() >= MAX_ROWS {
            return Err(ListError::one(format!("a list holds at most {MAX_ROWS} items")));
        }
        let field = |column: usize| positions[column].and_then(|at| row.get(at)).unwrap_or("").to_owned();
        let item = ServiceItemInput {
            code: field(0),
            name: field(1),
            item_type: field(2),
            ministry: field(3),
            legal_basis: field(4),
            needs: field(5)
                .split([';', '；'])
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            list: field(6),
        };
        let mut row_problems = item.problems();
        if let Some(first) = codes.insert(item.code.clone(), line) {
            row_problems.push(format!("code {} already appears on line {first}", item.code));
        }
        if row_problems.is_empty() {
            items.push(item);
        } else {
            problems.push(format!("line {line}: {}", row_problems.join(", ")));
        }
    }
    if !problems.is_empty() {
        problems.truncate(50);
        return Err(ListError { problems });
    }
    if items.is_empty() {
        return Err(ListError::one("the list has no items"));
    }
    Ok(items)
}

/// Writes `items` as a list that `parse` reads back, with Chinese headers and a byte-order
/// mark so that spreadsheet programs open it as UTF-8.
pub fn write(items: &[ServiceItem]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = COLUMNS.iter().map(|(_, zh)| *zh).collect();
    // Writing to memory cannot fail.
    let _ = writer.write_record(&header);
    for item in items {
        let input = item.input();
        let needs = input.needs.join(";");
        let _ = writer.write_record([
            &input.code,
            &input.name,
            &input.item_type,
            &input.ministry,
            &input.legal_basis,
            &needs,
            &input.list,
        ]);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    format!("\u{feff}{}", String::from_utf8_lossy(&bytes))
}

#[cfg(test)]
mod tests {
    use tongban_policy::org::ItemOrigin;

    use super::*;

    const LIST: &str = "\u{feff}事项编码,事项名称,事项类型,主管部门,设定依据,所需数据,所属清单\n\
        KSTB-GA-001,工作调动户口迁移,行政许可,公安部,《中华人民共和国户口登记条例》,household,全国清单\n\
        KSTB-RS-001,社会保障卡申领,公共服务,人力资源社会保障部,\"《社会保险法》, 第五十八条\",social_insurance；household,全国清单\n";

    #[test]
    fn a_list_is_read_with_chinese_headers_and_written_back_the_same() {
        let items = parse(LIST).expect("a good list");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].needs, ["social_insurance", "household"]);
        assert_eq!(items[1].legal_basis, "《社会保险法》, 第五十八条");
        let stored: Vec<ServiceItem> = items
            .iter()
            .map(|i| ServiceItem::new(i.clone(), ItemOrigin::Import, "user:admin".into(), String::new()))
            .collect();
        let written = write(&stored);
        assert_eq!(parse(&written).expect("reads back"), items);
    }

    #[test]
    fn english_headers_in_any_order_are_read() {
        let items = parse("list,needs,ministry,item_type,name,code\n省清单,housing_fund,住房和城乡建设部,公共服务,公积金提取,P-1\n")
            .expect("a good list");
        assert_eq!((items[0].code.as_str(), items[0].legal_basis.as_str()), ("P-1", ""));
    }

    #[test]
    fn every_bad_row_is_named_by_its_line_and_nothing_is_read() {
        let list = "code,name,item_type,ministry,needs,list\n\
            A-1,事项一,行政许可,公安部,household,清单\n\
            A-2,,许可,公安部,,清单\n\
            A-1,事项三,公共服务,公安部,household,清单\n\
            A 4,事项四,公共服务,公安部,household,清单\n";
        let error = parse(list).expect_err("bad rows");
        assert_eq!(error.problems.len(), 3, "{error}");
        assert!(
            error.problems[0].starts_with("line 3: ") && error.problems[0].contains("name must not be empty"),
            "{error}"
        );
        assert!(error.problems[0].contains("item_type \"许可\""), "{error}");
        assert!(error.problems[0].contains("needs"), "{error}");
        assert!(error.problems[1].contains("already appears on line 2"), "{error}");
        assert!(error.problems[2].starts_with("line 5: code \"A 4\""), "{error}");
    }

    #[test]
    fn headers_must_be_known_unique_and_complete() {
        assert!(
            parse("code,name,colour\n")
                .expect_err("unknown")
                .to_string()
                .contains("unknown column \"colour\"")
        );
        assert!(parse("code,事项编码\n").expect_err("twice").to_string().contains("appears twice"));
        let missing = parse("code,name\n").expect_err("missing").to_string();
        assert!(missing.contains("item_type, ministry, needs, list"), "{missing}");
        assert!(
            parse("code,name,item_type,ministry,needs,list\n")
                .expect_err("empty")
                .to_string()
                .contains("no items")
        );
        let ragged = parse("code,name,item_type,ministry,needs,list\nA,B\n").expect_err("ragged").to_string();
        assert!(ragged.starts_with("line 2: "), "{ragged}");
    }
}
