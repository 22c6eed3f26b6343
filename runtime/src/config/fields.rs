//! [`WorkerConfig`](crate::config::WorkerConfig)'s fields, declared once: `config_fields!` takes
//! the struct as it is written, each field with its doc, and yields the struct and
//! `config_setters!`, which expands, inside an `impl` of any type with a
//! `config: WorkerConfig` field, to one builder method per field carrying the field's doc.
//!
//! A field's setter takes the field's type, or, after `=> Some(...)`, the type inside the
//! `Option` it sets: `pub pollers: Option<usize> => Some(usize)` gives
//! `fn pollers(self, pollers: usize)`, and `=> Some(impl Into<String>)` takes anything
//! that converts.
//!
//! The setters expand where `config_setters!` is invoked, and the field types are named
//! there: the file of that `impl` imports them (`Duration`, `Heartbeat`, …).

/// Declares the settings struct and `config_setters!` from one list of fields.
macro_rules! config_fields {
    (
        $(#[$struct_attr:meta])*
        pub struct $name:ident {
            $(
                $(#[$attr:meta])*
                pub $field:ident : $ty:ty $(=> Some($($setter:tt)+))?
            ),* $(,)?
        }
    ) => {
        $(#[$struct_attr])*
        pub struct $name {
            $(
                $(#[$attr])*
                pub $field: $ty,
            )*
        }

        /// One builder method per field of the settings, for an `impl` block of a type
        /// with a `config` field holding them.
        macro_rules! config_setters {
            () => {
                $(
                    crate::config::fields::setter!(
                        [$(#[$attr])*] $field: $ty $(=> Some($($setter)+))?
                    );
                )*
            };
        }
        pub(crate) use config_setters;
    };
}

/// One setter: the field's doc and `cfg`, the value as the field holds it or wrapped in
/// `Some`.
macro_rules! setter {
    ([$(#[$attr:meta])*] $field:ident : $ty:ty) => {
        $(#[$attr])*
        pub fn $field(mut self, $field: $ty) -> Self {
            self.config.$field = $field;
            self
        }
    };
    ([$(#[$attr:meta])*] $field:ident : $ty:ty => Some(impl Into<$inner:ty>)) => {
        $(#[$attr])*
        pub fn $field(mut self, $field: impl Into<$inner>) -> Self {
            self.config.$field = Some($field.into());
            self
        }
    };
    ([$(#[$attr:meta])*] $field:ident : $ty:ty => Some($inner:ty)) => {
        $(#[$attr])*
        pub fn $field(mut self, $field: $inner) -> Self {
            self.config.$field = Some($field);
            self
        }
    };
}

pub(crate) use {config_fields, setter};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{
        EmbeddedQueue, Message, Worker, config::Heartbeat, config::RetryPolicy,
        config::WorkerConfig,
    };

    #[test]
    fn each_setter_sets_its_field() {
        let secs = Duration::from_secs;
        let builder = Worker::builder(EmbeddedQueue::new("jobs"))
            .concurrency(3)
            .pollers(2)
            .batch_size(4)
            .wait_time(secs(5))
            .visibility_timeout(secs(6))
            .handler_timeout(secs(7))
            .heartbeat(Heartbeat::Off)
            .retry(RetryPolicy::VisibilityTimeout)
            .flush_interval(Duration::from_millis(8))
            .stop_timeout(secs(9))
            .shutdown_grace(secs(4))
            .release_jitter(secs(1))
            .exit_after_empty_receives(2)
            .max_run_time(secs(3600))
            .name("orders")
            .backlog_interval(None)
            .running_tasks(5);
        #[cfg(feature = "ecs")]
        let builder = builder.task_protection(None);
        let worker = builder.handler(|_: Message| async {});
        assert_eq!(
            worker.config(),
            &WorkerConfig {
                concurrency: 3,
                pollers: Some(2),
                batch_size: 4,
                wait_time: secs(5),
                visibility_timeout: Some(secs(6)),
                handler_timeout: Some(secs(7)),
                heartbeat: Heartbeat::Off,
                retry: RetryPolicy::VisibilityTimeout,
                flush_interval: Duration::from_millis(8),
                stop_timeout: secs(9),
                shutdown_grace: Some(secs(4)),
                release_jitter: secs(1),
                exit_after_empty_receives: Some(2),
                max_run_time: Some(secs(3600)),
                #[cfg(feature = "ecs")]
                task_protection: None,
                name: Some("orders".to_owned()),
                backlog_interval: None,
                running_tasks: Some(5),
            }
        );
    }
}
