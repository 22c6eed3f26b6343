//! How a worker is put together: the [`Worker`](crate::Worker) builder, and
//! [`WorkerSpec`](crate::WorkerSpec) with [`run`](crate::run) for several workers in
//! one process.

pub(crate) mod builder;
pub(crate) mod spec;
