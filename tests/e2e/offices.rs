//! What data offices run besides the demand workflow, end to end over HTTP against the demo:
//! service-item lists imported and exported, data objections (纠错), ratings (好差评) and
//! the monthly report.

use serde_json::{Value, json};
use tongban_e2e::{Demo, RawAnswer};

const NATIONAL_LIST: &str = "全国高频政务服务“跨省通办”事项清单（国办发〔2020〕35号）";

/// Reads a CSV export with the `csv`-free rules the format keeps: no field of the demo's
/// list holds a comma or a quote, so a split is exact.
fn rows(answer: &RawAnswer) -> Vec<Vec<String>> {
    let text = String::from_utf8(answer.body.clone()).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark for spreadsheet programs");
    text.lines().map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

#[tokio::test]
async fn service_item_lists_are_imported_exported_and_show_where_each_item_came_from() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let admin = demo.sign_in("admin").await?;

    // The demo registered its items through the import: each names its list and origin.
    let (status, item) = admin.get("/service-items/KSTB-GA-001").await?;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["item_type"], "行政许可");
    assert_eq!(item["legal_basis"], "《中华人民共和国户口登记条例》");
    assert_eq!(item["source"]["list"], NATIONAL_LIST);
    assert_eq!(
        (item["source"]["origin"].as_str(), item["source"]["by"].as_str()),
        (Some("import"), Some("user:admin"))
    );
    assert!(item["source"]["at"].as_str().is_some_and(|at| at.ends_with("+08:00")), "{item}");

    let export = admin.send(reqwest::Method::GET, "/service-items/export", None, None).await?;
    assert_eq!(export.status, 200);
    assert!(export.content_type.starts_with("text/csv"), "{}", export.content_type);
    let exported = rows(&export);
    assert_eq!(
        exported[0],
        ["事项编码", "事项名称", "事项类型", "主管部门", "设定依据", "所需数据", "所属清单"]
    );
    assert_eq!(exported.len(), 1 + 14, "the header and the demo's 14 items");
    let social_card = exported.iter().find(|r| r[0] == "KSTB-RS-001").expect("KSTB-RS-001 exported");
    assert_eq!(social_card[5], "social_insurance;household");

    // A provincial list: one new item, one restated with a new legal basis, one as it is.
    let provincial = "code,name,item_type,ministry,legal_basis,needs,list\n\
        HN-GA-101,户口迁移证明补办,公共服务,公安部,《中华人民共和国户口登记条例》,household,河南省“跨省通办”事项清单\n\
        KSTB-GA-005,开具户籍类证明,公共服务,公安部,《公安部关于规范户籍证明的通知》,household,河南省“跨省通办”事项清单\n";
    let unchanged = exported.iter().find(|r| r[0] == "KSTB-GA-001").expect("KSTB-GA-001").join(",");
    let list = format!("{provincial}{unchanged}\n");
    let (status, summary) =
        admin.post_raw("/service-items/import", "text/csv; charset=utf-8", list.clone()).await?;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary, json!({"created": ["HN-GA-101"], "updated": ["KSTB-GA-005"], "unchanged": 1}));
    let (_, restated) = admin.get("/service-items/KSTB-GA-005").await?;
    assert_eq!(restated["legal_basis"], "《公安部关于规范户籍证明的通知》");
    assert_eq!(restated["source"]["list"], "河南省“跨省通办”事项清单");
    // Importing the same list again changes nothing.
    let (_, again) = admin.post_raw("/service-items/import", "text/csv", list).await?;
    assert_eq!(again, json!({"created": [], "updated": [], "unchanged": 3}));

    // A list with a bad row is refused whole, naming the row; its good rows are not written.
    let bad = "code,name,item_type,ministry,needs,list\n\
        HN-GA-102,居住证签注,公共服务,公安部,household,河南省清单\n\
        HN-GA-103,,审批,公安部,household,河南省清单\n";
    let (status, problem) = admin.post_raw("/service-items/import", "text/csv", bad).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_service_item_list")), "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("line 3: ")
            && detail.contains("name must not be empty")
            && detail.contains("审批"),
        "{detail}"
    );
    let (status, _) = admin.get("/service-items/HN-GA-102").await?;
    assert_eq!(status, 404, "nothing of a refused list is written");

    // Only platform administrators import; the body must be CSV, and UTF-8.
    let demander = demo.sign_in("demander.guangdong-police").await?;
    let (status, problem) = demander.post_raw("/service-items/import", "text/csv", provincial).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "{problem}");
    let (status, problem) = admin.post_raw("/service-items/import", "application/json", "{}").await?;
    assert_eq!((status, problem["code"].as_str()), (415, Some("unsupported_media_type")), "{problem}");
    let gbk = vec![b'c', b'o', b'd', b'e', b'\n', 0xca, 0xc2, b'\n'];
    let (status, problem) = admin.post_raw("/service-items/import", "text/csv", gbk).await?;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_encoding")), "{problem}");
    // Registering one item records it as registered, by its registrar.
    let (status, item) = admin
        .post(
            "/service-items",
            &json!({"code": "HN-GA-104", "name": "临时身份证明", "item_type": "公共服务", "ministry": "公安部",
                    "needs": ["household"]}),
        )
        .await?;
    assert_eq!(status, 201, "{item}");
    assert_eq!(
        (item["source"]["origin"].as_str(), item["source"]["list"].as_str()),
        (Some("registered"), Some(""))
    );
    let (status, problem) = admin
        .post("/service-items", &json!({"code": "HN-GA-105", "name": "x", "item_type": "审批", "ministry": "公安部", "needs": ["household"]}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    Ok(())
}

#[tokio::test]
async fn catalog_resources_carry_format_open_attribute_class_relations_and_legal_basis() -> anyhow::Result<()>
{
    let demo = Demo::start().await?;
    let admin = demo.sign_in("admin").await?;
    let (_, fund) = admin.get("/catalog/resources/C03-340000-0001").await?;
    assert_eq!(
        (fund["format"].as_str(), fund["open_type"].as_str(), fund["class"].as_str()),
        (Some("database"), Some("not_open"), Some("department"))
    );
    assert_eq!(fund["related_resources"], json!(["A01-410000-0001", "B02-440000-0001"]));
    assert!(fund["legal_basis"].as_str().is_some_and(|b| b.contains("住房公积金管理条例")), "{fund}");
    let (_, household) = admin.get("/catalog/resources/A01-410000-0001").await?;
    assert_eq!(household["class"], "base");

    // A relation must name a resource in the catalog, and a resource not shared its basis.
    let supplier = demo.sign_in("supplier.anhui-housing").await?;
    let mut edit: Value = fund.clone();
    for key in ["version", "supplier"] {
        edit.as_object_mut().map(|o| o.remove(key));
    }
    edit["related_resources"] = json!(["Z99-000000-0001"]);
    let (status, problem) = supplier
        .put("/catalog/resources/C03-340000-0001", &json!({"version": fund["version"], "resource": edit}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("unknown_resource")), "{problem}");
    edit["related_resources"] = json!([]);
    edit["share_type"] = json!("not_shared");
    edit["legal_basis"] = json!("");
    let (status, problem) = supplier
        .put("/catalog/resources/C03-340000-0001", &json!({"version": fund["version"], "resource": edit}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("legal_basis")), "{problem}");
    Ok(())
}
