//! Tongban's policy core: the catalog and workflow model, grants, decisions and masking.
//!
//! This crate is pure logic. It performs no I/O and knows nothing of HTTP, storage or query
//! engines, so every rule here can be tested exhaustively and reused by every data path.

pub mod calendar;
pub mod catalog;
pub mod credit_code;
pub mod decision;
pub mod division;
pub mod feedback;
pub mod grant;
pub mod id_number;
pub mod licence;
pub mod mask;
pub mod org;
pub mod time;
pub mod workflow;

pub use credit_code::{CreditCode, CreditCodeError};
pub use division::{Division, DivisionLevel};
pub use id_number::{Gender, IdNumber, IdNumberError};
