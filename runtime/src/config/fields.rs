//! [`WorkerConfig`](crate::config::WorkerConfig) made from spotq-settings' table of
//! settings: `declare!` is the callback `spotq_settings::for_each_setting!` hands the
//! table to, and yields
//!
//! - the struct, one field per setting with its doc, ended by its default and what it
//!   allows (the cells of the README's settings table);
//! - its `Default`, the table's defaults;
//! - `check_each`, which runs every field's check from the table (`validate` adds the
//!   shutdown contract's check of `stop_timeout` and `shutdown_grace` together);
//! - `config_setters!`, which expands, inside an `impl` of any type with a
//!   `config: WorkerConfig` field, to one builder method per field carrying the field's
//!   doc. A field's setter takes the field's type, or, after `=> Some(...)` in the table,
//!   the type inside the `Option` it sets: `pollers: Option<usize> => Some(usize)` gives
//!   `fn pollers(self, pollers: usize)`, and `=> Some(impl Into<String>)` takes anything
//!   that converts.
//!
//! The table's types, defaults and checks name what is in scope where they expand: the
//! config module, where `declare!` expands, has them (and `ConfigError` and `Heartbeat`,
//! which `check_each` names), and the file of the `impl` that invokes `config_setters!`
//! imports them for the setters (`Duration`, `Heartbeat`, …).

/// Declares `WorkerConfig`, its `Default`, `check_each` and `config_setters!` from the
/// table of settings.
macro_rules! declare {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty $(=> Some($($setter:tt)+))? {
            $(feature: $feature:literal,)?
            default: $default:expr, shown as $shown:literal,
            allowed: $allowed:literal,
            $(check: $check:expr,)?
            $(attribute: $key:ident = $example:tt as $syntax:ident,)?
        }
    )*) => {
        /// The settings of one worker. Build it through
        /// [`Worker::builder`](crate::Worker::builder), whose setters carry the docs below,
        /// or write it with `..Default::default()`.
        ///
        /// Every field is a setting of spotq-settings' table, which gives its default, its
        /// limits and its check: the checks the `#[spotq::worker]` attribute runs on its
        /// arguments, so [`validate`](Self::validate) refuses what the attribute refuses,
        /// with the same words.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct WorkerConfig {
            $(
                $(#[doc = $doc])*
                ///
                #[doc = concat!(" Default: ", $shown, ". Allowed: ", $allowed, ".")]
                $(
                    #[cfg(feature = $feature)]
                    #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
                )?
                pub $name: $ty,
            )*
        }

        impl Default for WorkerConfig {
            fn default() -> Self {
                Self {
                    $(
                        $(#[cfg(feature = $feature)])?
                        $name: $default,
                    )*
                }
            }
        }

        impl WorkerConfig {
            /// Runs the table's check of every field that has one.
            fn check_each(&self) -> Result<(), ConfigError> {
                let others = spotq_settings::Others {
                    concurrency: self.concurrency,
                    visibility_timeout: self.visibility_timeout,
                    heartbeat_off: self.heartbeat == Heartbeat::Off,
                };
                $(
                    $(#[cfg(feature = $feature)])?
                    crate::config::fields::check!(&self.$name, &others $(, $check)?);
                )*
                Ok(())
            }
        }

        /// One builder method per field of the settings, for an `impl` block of a type
        /// with a `config` field holding them.
        macro_rules! config_setters {
            () => {
                $(
                    crate::config::fields::setter!(
                        [
                            $(#[doc = $doc])*
                            ///
                            #[doc = concat!(" Default: ", $shown, ". Allowed: ", $allowed, ".")]
                            $(
                                #[cfg(feature = $feature)]
                                #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
                            )?
                        ]
                        $name: $ty $(=> Some($($setter)+))?
                    );
                )*
            };
        }
        pub(crate) use config_setters;
    };
}

/// One field's check from the table, if it has one: the field's value as
/// [`Checked`](spotq_settings::Checked) gives it (nothing to check for an unset option),
/// and what it reads of the other settings.
macro_rules! check {
    ($field:expr, $others:expr) => {};
    ($field:expr, $others:expr, $check:expr) => {{
        let check: fn(_, &spotq_settings::Others) -> Result<(), _> = $check;
        if let Some(value) = spotq_settings::Checked::checked($field) {
            check(value, $others)?;
        }
    }};
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

pub(crate) use {check, declare, setter};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{EmbeddedQueue, Message, Worker, config::Heartbeat, config::WorkerConfig};

    /// Each form of setter the table gives: the field's type, the type inside the
    /// `Option` it fills, and anything that converts into it.
    #[test]
    fn each_form_of_setter_sets_its_field() {
        let worker = Worker::builder(EmbeddedQueue::new("jobs"))
            .concurrency(3)
            .heartbeat(Heartbeat::Off)
            .pollers(2)
            .running_tasks(5)
            .name("orders")
            .backlog_interval(None)
            .handler(|_: Message| async {});
        assert_eq!(
            worker.config(),
            &WorkerConfig {
                concurrency: 3,
                heartbeat: Heartbeat::Off,
                pollers: Some(2),
                running_tasks: Some(5),
                name: Some("orders".to_owned()),
                backlog_interval: None,
                ..WorkerConfig::default()
            }
        );
        assert_eq!(
            WorkerConfig::default().backlog_interval,
            Some(Duration::from_secs(20))
        );
    }
}
