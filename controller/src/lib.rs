//! The scale-to-zero controller for spotq workers.

pub mod decision;
