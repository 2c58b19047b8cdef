//! Arrow schemas of the shared datasets (the licence registers' are in `licences`), with the catalog's Chinese item names kept as
//! field metadata so the files describe themselves.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub(crate) fn field(name: &str, label: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
        .with_metadata(HashMap::from([("label".to_owned(), label.to_owned())]))
}

const MONEY: DataType = DataType::Decimal128(14, 2);
const RATE: DataType = DataType::Decimal128(5, 2);

/// 户籍 (household registration), one row per person.
pub fn household() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("id_number", "公民身份号码", DataType::Utf8, false),
        field("name", "姓名", DataType::Utf8, true),
        field("gender", "性别", DataType::Utf8, true),
        field("ethnicity", "民族", DataType::Utf8, true),
        field("birth_date", "出生日期", DataType::Date32, true),
        field("household_number", "户号", DataType::Utf8, true),
        field("relation_to_head", "与户主关系", DataType::Utf8, true),
        field("division_code", "户籍地址区划代码", DataType::Utf8, true),
        field("address", "户籍详细地址", DataType::Utf8, true),
        field("registration_authority", "登记机关", DataType::Utf8, true),
        field("marital_status", "婚姻状况", DataType::Utf8, true),
        field("status", "户口状态", DataType::Utf8, true),
        field("moved_in_date", "迁入日期", DataType::Date32, true),
        field("updated_on", "更新日期", DataType::Date32, false),
    ]))
}

/// 社保 (social insurance), one row per person and insurance type.
pub fn social_insurance() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("id_number", "公民身份号码(AAC002)", DataType::Utf8, false),
        field("name", "姓名(AAC003)", DataType::Utf8, true),
        field("personal_number", "个人编号(AAC001)", DataType::Utf8, true),
        field("insured_division_code", "参保地区划", DataType::Utf8, true),
        field("insurance_type", "险种类型(AAE140)", DataType::Utf8, true),
        field("status", "参保状态", DataType::Utf8, true),
        field("first_insured_on", "首次参保日期", DataType::Date32, true),
        field("contribution_base", "缴费基数", MONEY, true),
        field("employer_contribution", "单位缴费", MONEY, true),
        field("personal_contribution", "个人缴费", MONEY, true),
        field("last_paid_month", "最近缴费月份", DataType::Utf8, true),
        field("paid_months", "累计缴费月数", DataType::Int32, true),
        field("employer_credit_code", "单位统一社会信用代码", DataType::Utf8, true),
        field("employer_name", "单位名称", DataType::Utf8, true),
        field("updated_on", "更新日期", DataType::Date32, false),
    ]))
}

/// 住房公积金 (housing provident fund), one row per account.
pub fn housing_fund() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("id_number", "证件号码", DataType::Utf8, false),
        field("name", "姓名", DataType::Utf8, true),
        field("account_number", "个人账号", DataType::Utf8, true),
        field("employer_name", "单位名称", DataType::Utf8, true),
        field("employer_credit_code", "单位统一社会信用代码", DataType::Utf8, true),
        field("contribution_base", "缴存基数", MONEY, true),
        field("employer_rate_pct", "单位缴存比例(%)", RATE, true),
        field("personal_rate_pct", "个人缴存比例(%)", RATE, true),
        field("monthly_deposit", "月缴存额", MONEY, true),
        field("balance", "账户余额", MONEY, true),
        field("opened_on", "开户日期", DataType::Date32, true),
        field("paid_through_month", "缴至年月", DataType::Utf8, true),
        field("account_status", "账户状态", DataType::Utf8, true),
        field("consecutive_months", "连续缴存月数", DataType::Int32, true),
        field("loan_count", "贷款笔数", DataType::Int32, true),
        field("loan_status", "贷款状态", DataType::Utf8, true),
        field("updated_on", "更新日期", DataType::Date32, false),
    ]))
}
