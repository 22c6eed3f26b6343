//! A worker's settings and how it is put together: [`WorkerConfig`](crate::WorkerConfig)
//! and its validation, the [`Worker`](crate::Worker) builder, and
//! [`WorkerSpec`](crate::WorkerSpec) with [`run`](crate::run) for several workers in
//! one process.

pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod drain;
pub(crate) mod fields;
pub(crate) mod spec;
