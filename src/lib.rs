//! The `stele` package: the local runner (`stele dev`) and operator tools. The
//! pipeline itself lives in `crates/` (shared logic) and `functions/` (Lambdas).

pub mod local;
pub mod verify;
