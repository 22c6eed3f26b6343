//! The attribute's arguments: parsed into [`Args`], every value kept with the span of the
//! token it came from, then checked against the limits SQS and the runtime set, so that a
//! compile error points at the offending literal.
//!
//! The keys that set a worker's settings come from spotq-settings' table: which keys
//! there are and how each value is written ([`SETTINGS`]), and each setting's check
//! (`for_each_setting!`, the same function `WorkerConfig::validate` runs). `queue`, `fifo`
//! and `crate` are the attribute's own.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use spotq_settings::{Checked, Invalid, Others, SETTINGS, Setting, Syntax, defaults, duration};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprCall, ExprLit, ExprTuple, Ident, Lit, LitStr, Token};

/// Every key the attribute knows, in the order the documentation lists them: `queue`,
/// the keys of the table's settings, then `fifo` and `crate`.
pub(crate) fn keys() -> impl Iterator<Item = &'static str> {
    let settings = SETTINGS
        .iter()
        .filter_map(|setting| setting.attribute)
        .map(|attribute| attribute.key);
    std::iter::once("queue")
        .chain(settings)
        .chain(["fifo", "crate"])
}

/// A value and the span of the tokens it was written with.
#[derive(Clone)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

/// Where the worker finds its queue.
#[derive(Clone)]
pub(crate) enum Queue {
    /// `queue = "orders"`: a queue name or URL.
    Literal(LitStr),
    /// `queue = env("ORDERS_QUEUE")`: read when the worker starts.
    Env(LitStr),
}

/// A value of [`Syntax::Heartbeat`]: `heartbeat = …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// `heartbeat = true`: every half visibility timeout (the runtime's default).
    Auto,
    /// `heartbeat = "20s"`.
    Every(Duration),
    /// `heartbeat = false`.
    Off,
}

/// A value of [`Syntax::Backoff`]: `retry_backoff = …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// `retry_backoff = ("1s", "5m")`: base and cap of the exponential backoff.
    Backoff { base: Duration, max: Duration },
    /// `retry_backoff = false`: leave a failed message until its visibility timeout lapses.
    VisibilityTimeout,
}

/// The value of a setting's key, as its [`Syntax`] writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// [`Syntax::Count`]; its type is the field's, which checks it.
    Count(u64),
    /// [`Syntax::Duration`].
    Duration(Duration),
    /// [`Syntax::Text`].
    Text(String),
    /// [`Syntax::Heartbeat`].
    Heartbeat(Heartbeat),
    /// [`Syntax::Backoff`].
    Backoff(Retry),
}

/// A setting of the table that the attribute sets.
#[derive(Clone)]
pub(crate) struct Given {
    pub setting: &'static Setting,
    pub value: Spanned<Value>,
}

/// The arguments of one `#[worker(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    pub queue: Option<Spanned<Queue>>,
    /// The settings given, in the order written.
    pub settings: Vec<Given>,
    pub fifo: Option<Spanned<bool>>,
    pub crate_path: Option<Spanned<syn::Path>>,
}

impl Args {
    /// Parses the attribute's tokens and checks every limit; all errors at once.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let pairs = syn::parse::Parser::parse2(parse_pairs, tokens)?;
        let mut args = Self::default();
        let mut errors = Errors::default();
        for (key, value) in pairs {
            if let Err(error) = args.set(&key, value) {
                errors.push(error);
            }
        }
        if errors.is_empty() {
            args.check(&mut errors);
        }
        errors.finish()?;
        Ok(args)
    }

    /// The value given for the setting `name` (the field's name: `retry`, not
    /// `retry_backoff`).
    pub(crate) fn given(&self, name: &str) -> Option<&Spanned<Value>> {
        self.settings
            .iter()
            .find(|given| given.setting.name == name)
            .map(|given| &given.value)
    }

    /// What the checks read of the other settings: the values given, or the defaults.
    fn others(&self) -> Others {
        let value = |name| self.given(name).map(|given| &given.value);
        Others {
            concurrency: value("concurrency")
                .and_then(Checked::checked)
                .unwrap_or(defaults::CONCURRENCY),
            visibility_timeout: value("visibility_timeout").and_then(Checked::checked),
            heartbeat_off: value("heartbeat") == Some(&Value::Heartbeat(Heartbeat::Off)),
        }
    }

    fn set(&mut self, key: &Ident, value: Expr) -> syn::Result<()> {
        let name = key.unraw().to_string();
        let span = value.span();
        let duplicate = || {
            syn::Error::new_spanned(
                key,
                format!("duplicate `{name}`: each key may be given once"),
            )
        };
        macro_rules! once {
            ($field:ident, $parse:expr) => {{
                if self.$field.is_some() {
                    return Err(duplicate());
                }
                self.$field = Some(Spanned::new($parse, span));
                Ok(())
            }};
        }
        match name.as_str() {
            "queue" => once!(queue, queue(&value)?),
            "fifo" => once!(fifo, boolean(&value, "fifo")?),
            "crate" => once!(crate_path, string(&value, "crate")?.parse::<syn::Path>()?),
            _ => {
                let Some((setting, syntax)) = SETTINGS.iter().find_map(|setting| {
                    let attribute = setting
                        .attribute
                        .filter(|attribute| attribute.key == name)?;
                    Some((setting, attribute.syntax))
                }) else {
                    return Err(unknown_key(key, &name));
                };
                if self.given(setting.name).is_some() {
                    return Err(duplicate());
                }
                let value = parse_value(&value, &name, syntax)?;
                self.settings.push(Given {
                    setting,
                    value: Spanned::new(value, span),
                });
                Ok(())
            }
        }
    }

    /// Checks the limits of each value and of values together.
    fn check(&self, errors: &mut Errors) {
        let Some(queue) = &self.queue else {
            errors.push(syn::Error::new(
                Span::call_site(),
                "missing `queue`: name the queue with `queue = \"orders\"` (a name or URL) \
                 or `queue = env(\"ORDERS_QUEUE\")`",
            ));
            return;
        };
        if let (Queue::Literal(literal), Some(fifo)) = (&queue.value, &self.fifo)
            && fifo.value
            && !literal.value().ends_with(".fifo")
        {
            errors.push(syn::Error::new_spanned(
                literal,
                format!(
                    "`fifo = true`, but `{}` is not a FIFO queue: FIFO queue names end in `.fifo`",
                    literal.value()
                ),
            ));
        }
        let others = self.others();
        for given in &self.settings {
            if let Err(invalid) = check_setting(given.setting.name, &given.value.value, &others) {
                errors.at(given.value.span, invalid);
            }
        }
    }
}

/// `check_setting`, from the table: the check of a setting on the value the attribute
/// gave it, with what it reads of the others.
macro_rules! checks {
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
        fn check_setting(name: &str, value: &Value, others: &Others) -> Result<(), Invalid> {
            $(
                check_key!(name, value, others, $name [$($key)?] $(, $check)?);
            )*
            Ok(())
        }
    };
}

/// One setting's part of `check_setting`: nothing for a setting that is not a key, or
/// has no check (the builder's settings may name the runtime's types).
macro_rules! check_key {
    ($name:expr, $value:expr, $others:expr, $setting:ident [] $(, $check:expr)?) => {};
    ($name:expr, $value:expr, $others:expr, $setting:ident [$key:ident]) => {};
    ($name:expr, $value:expr, $others:expr, $setting:ident [$key:ident], $check:expr) => {
        if $name == stringify!($setting) {
            let check: fn(_, &Others) -> Result<(), Invalid> = $check;
            return match Checked::checked($value) {
                Some(value) => check(value, $others),
                None => Ok(()),
            };
        }
    };
}

spotq_settings::for_each_setting!(checks);

/// A count's check takes the field's type; a number the type cannot hold is left to the
/// compiler, which refuses the literal in the expansion.
impl Checked<'_, usize> for Value {
    fn checked(&self) -> Option<usize> {
        match *self {
            Self::Count(count) => usize::try_from(count).ok(),
            _ => None,
        }
    }
}

impl Checked<'_, u32> for Value {
    fn checked(&self) -> Option<u32> {
        match *self {
            Self::Count(count) => u32::try_from(count).ok(),
            _ => None,
        }
    }
}

/// A duration, or a heartbeat's interval (`true` and `false` have nothing to check).
impl Checked<'_, Duration> for Value {
    fn checked(&self) -> Option<Duration> {
        match *self {
            Self::Duration(duration) | Self::Heartbeat(Heartbeat::Every(duration)) => {
                Some(duration)
            }
            _ => None,
        }
    }
}

impl<'a> Checked<'a, &'a str> for Value {
    fn checked(&'a self) -> Option<&'a str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A retry backoff's first delay and cap (`false` has nothing to check).
impl Checked<'_, (Duration, Duration)> for Value {
    fn checked(&self) -> Option<(Duration, Duration)> {
        match *self {
            Self::Backoff(Retry::Backoff { base, max }) => Some((base, max)),
            _ => None,
        }
    }
}

/// A value written as `syntax` says, for the key `key`.
fn parse_value(value: &Expr, key: &str, syntax: Syntax) -> syn::Result<Value> {
    Ok(match syntax {
        Syntax::Count => Value::Count(integer(value, key)?),
        Syntax::Duration => Value::Duration(duration_value(value, key)?),
        Syntax::Text => Value::Text(string(value, key)?.value()),
        Syntax::Heartbeat => Value::Heartbeat(heartbeat(value, key)?),
        Syntax::Backoff => Value::Backoff(retry(value, key)?),
    })
}

/// `key = value, key = value, ...`
fn parse_pairs(input: ParseStream<'_>) -> syn::Result<Vec<(Ident, Expr)>> {
    let mut pairs = Vec::new();
    while !input.is_empty() {
        // `parse_any`, so that `crate` is a key like the others.
        let key = Ident::parse_any(input)?;
        if !input.peek(Token![=]) {
            return Err(syn::Error::new_spanned(
                &key,
                format!("expected `{key} = ...`: every argument is a `key = value` pair"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse::<Expr>()?;
        pairs.push((key, value));
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(pairs)
}

fn unknown_key(key: &Ident, name: &str) -> syn::Error {
    let known = keys()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let closest = keys()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .min()
        .filter(|(distance, _)| *distance <= 2);
    let message = match closest {
        Some((_, candidate)) => {
            format!("unknown key `{name}`; did you mean `{candidate}`? The keys are {known}")
        }
        None => format!("unknown key `{name}`; the keys are {known}"),
    };
    syn::Error::new_spanned(key, message)
}

/// Levenshtein distance, for "did you mean" on a misspelt key.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(a_char != *b_char);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        // A value that came through a `macro_rules!` expansion is wrapped in an invisible
        // group; look through it.
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn string(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match literal(value) {
        Some(Lit::Str(text)) => Ok(text.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a string literal"),
        )),
    }
}

fn integer<N>(value: &Expr, key: &str) -> syn::Result<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    match literal(value) {
        Some(Lit::Int(int)) => int.base10_parse::<N>(),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a whole number, e.g. `{key} = 8`"),
        )),
    }
}

fn boolean(value: &Expr, key: &str) -> syn::Result<bool> {
    match literal(value) {
        Some(Lit::Bool(boolean)) => Ok(boolean.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes `true` or `false`"),
        )),
    }
}

fn duration_value(value: &Expr, key: &str) -> syn::Result<Duration> {
    match literal(value) {
        Some(Lit::Str(text)) => duration_literal(text),
        Some(Lit::Int(int)) => Err(syn::Error::new_spanned(
            int,
            format!(
                "`{key}` takes a duration with its unit, e.g. `{key} = \"{}s\"`",
                int.base10_digits()
            ),
        )),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a duration string, e.g. `{key} = \"30s\"`"),
        )),
    }
}

fn duration_literal(text: &LitStr) -> syn::Result<Duration> {
    duration::parse(&text.value()).map_err(|error| syn::Error::new_spanned(text, error))
}

fn queue(value: &Expr) -> syn::Result<Queue> {
    const EXPECTED: &str = "`queue` takes a queue name or URL (`queue = \"orders\"`) or an environment \
         variable that holds one (`queue = env(\"ORDERS_QUEUE\")`)";
    let queue = match value {
        Expr::Call(ExprCall { func, args, .. }) if matches!(&**func, Expr::Path(path) if path.path.is_ident("env")) =>
        {
            let mut args = args.iter();
            match (args.next().and_then(literal), args.next()) {
                (Some(Lit::Str(variable)), None) => Queue::Env(variable.clone()),
                _ => {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`env(...)` takes the name of one environment variable, \
                         e.g. `env(\"ORDERS_QUEUE\")`",
                    ));
                }
            }
        }
        _ => match literal(value) {
            Some(Lit::Str(text)) => Queue::Literal(text.clone()),
            _ => return Err(syn::Error::new_spanned(value, EXPECTED)),
        },
    };
    let (Queue::Literal(text) | Queue::Env(text)) = &queue;
    let content = text.value();
    if content.is_empty() {
        return Err(syn::Error::new_spanned(text, "the queue must not be empty"));
    }
    if content.trim() != content {
        return Err(syn::Error::new_spanned(
            text,
            "the queue has leading or trailing whitespace",
        ));
    }
    Ok(queue)
}

fn heartbeat(value: &Expr, key: &str) -> syn::Result<Heartbeat> {
    match literal(value) {
        Some(Lit::Str(text)) => Ok(Heartbeat::Every(duration_literal(text)?)),
        Some(Lit::Bool(boolean)) if boolean.value => Ok(Heartbeat::Auto),
        Some(Lit::Bool(_)) => Ok(Heartbeat::Off),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "`{key}` takes an interval (`{key} = \"20s\"`), `false` for none, \
                 or `true` for every half visibility timeout (the default)"
            ),
        )),
    }
}

fn retry(value: &Expr, key: &str) -> syn::Result<Retry> {
    let expected = || {
        format!(
            "`{key}` takes the first delay and the cap, e.g. `{key} = (\"1s\", \"5m\")`, or \
             `false` to leave a failed message until its visibility timeout lapses"
        )
    };
    if let Some(Lit::Bool(boolean)) = literal(value) {
        if boolean.value {
            return Err(syn::Error::new_spanned(boolean, expected()));
        }
        return Ok(Retry::VisibilityTimeout);
    }
    let Expr::Tuple(ExprTuple { elems, .. }) = value else {
        return Err(syn::Error::new_spanned(value, expected()));
    };
    let durations = elems
        .iter()
        .map(|element| match literal(element) {
            Some(Lit::Str(text)) => duration_literal(text),
            _ => Err(syn::Error::new_spanned(element, expected())),
        })
        .collect::<syn::Result<Vec<_>>>()?;
    match durations[..] {
        [base, max] => Ok(Retry::Backoff { base, max }),
        _ => Err(syn::Error::new_spanned(value, expected())),
    }
}

/// Errors gathered over all arguments, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> Result<Args, String> {
        Args::parse(tokens).map_err(|error| error.to_string())
    }

    fn error(tokens: TokenStream) -> String {
        match Args::parse(tokens) {
            Ok(_) => panic!("parsed"),
            Err(error) => error.to_string(),
        }
    }

    /// The value given for a setting (by its field's name).
    fn value(args: &Args, setting: &str) -> Option<Value> {
        args.given(setting).map(|given| given.value.clone())
    }

    #[test]
    fn every_key() {
        let args = parse(quote! {
            queue = env("ORDERS_QUEUE"),
            concurrency = 32,
            pollers = 4,
            batch_size = 5,
            wait_time = "10s",
            visibility_timeout = "2m",
            handler_timeout = "90s",
            heartbeat = "30s",
            retry_backoff = ("2s", "10m"),
            exit_after_empty_receives = 3,
            max_run_time = "1h",
            name = "orders",
            fifo = true,
            crate = "::my_spotq",
        })
        .expect("valid");
        assert!(
            matches!(&args.queue, Some(Spanned { value: Queue::Env(var), .. }) if var.value() == "ORDERS_QUEUE")
        );
        let secs = |secs| Value::Duration(Duration::from_secs(secs));
        let expected = [
            ("concurrency", Value::Count(32)),
            ("pollers", Value::Count(4)),
            ("batch_size", Value::Count(5)),
            ("wait_time", secs(10)),
            ("visibility_timeout", secs(120)),
            ("handler_timeout", secs(90)),
            (
                "heartbeat",
                Value::Heartbeat(Heartbeat::Every(Duration::from_secs(30))),
            ),
            (
                "retry",
                Value::Backoff(Retry::Backoff {
                    base: Duration::from_secs(2),
                    max: Duration::from_secs(600),
                }),
            ),
            ("exit_after_empty_receives", Value::Count(3)),
            ("max_run_time", secs(3600)),
            ("name", Value::Text("orders".to_owned())),
        ];
        for (setting, expected) in expected {
            assert_eq!(value(&args, setting), Some(expected), "{setting}");
        }
        assert_eq!(args.fifo.map(|c| c.value), Some(true));
        let path = args.crate_path.expect("crate").value;
        assert_eq!(quote!(#path).to_string(), ":: my_spotq");
    }

    /// Every key of the table's settings, and only those, besides the attribute's own.
    #[test]
    fn the_keys_are_the_table_s() {
        let keys: Vec<_> = keys().collect();
        assert_eq!(keys.first(), Some(&"queue"));
        assert_eq!(keys[keys.len() - 2..], ["fifo", "crate"]);
        let table: Vec<_> = SETTINGS
            .iter()
            .filter_map(|setting| setting.attribute.map(|attribute| attribute.key))
            .collect();
        assert_eq!(keys[1..keys.len() - 2], table);
        // A setting the builder alone sets is not a key.
        let message = error(quote!(queue = "q", stop_timeout = "2m"));
        assert!(
            message.starts_with("unknown key `stop_timeout`"),
            "{message}"
        );
    }

    #[test]
    fn only_the_queue_is_required() {
        let args = parse(quote!(queue = "orders")).expect("valid");
        assert!(
            matches!(&args.queue, Some(Spanned { value: Queue::Literal(name), .. }) if name.value() == "orders")
        );
        assert!(args.settings.is_empty());
        assert_eq!(args.others().concurrency, 16);
        // A trailing comma is fine.
        parse(quote!(
            queue = "https://sqs.eu-west-1.amazonaws.com/1/orders",
        ))
        .expect("valid");
        assert!(error(quote!()).contains("missing `queue`"));
        assert!(error(quote!(concurrency = 4)).contains("missing `queue`"));
    }

    #[test]
    fn switches() {
        let args = parse(quote!(
            queue = "q",
            heartbeat = false,
            retry_backoff = false
        ))
        .expect("valid");
        assert_eq!(
            value(&args, "heartbeat"),
            Some(Value::Heartbeat(Heartbeat::Off))
        );
        assert_eq!(
            value(&args, "retry"),
            Some(Value::Backoff(Retry::VisibilityTimeout))
        );
        let args = parse(quote!(queue = "q", heartbeat = true)).expect("valid");
        assert_eq!(
            value(&args, "heartbeat"),
            Some(Value::Heartbeat(Heartbeat::Auto))
        );
        assert!(error(quote!(queue = "q", retry_backoff = true)).contains("the first delay"));
    }

    #[test]
    fn unknown_and_duplicate_keys() {
        let message = error(quote!(queue = "q", concurency = 3));
        assert!(
            message.contains("unknown key `concurency`; did you mean `concurrency`?"),
            "{message}"
        );
        let message = error(quote!(queue = "q", colour = 3));
        assert!(
            message.starts_with("unknown key `colour`; the keys are `queue`"),
            "{message}"
        );
        assert!(error(quote!(queue = "q", queue = "r")).contains("duplicate `queue`"));
        assert!(
            error(quote!(queue = "q", pollers = 1, pollers = 2)).contains("duplicate `pollers`")
        );
        assert!(error(quote!(queue = "q", fifo)).contains("expected `fifo = ...`"));
    }

    #[test]
    fn value_types() {
        assert!(error(quote!(queue = orders)).contains("`queue` takes a queue name"));
        assert!(error(quote!(queue = env(ORDERS))).contains("`env(...)` takes"));
        assert!(error(quote!(queue = env("A", "B"))).contains("`env(...)` takes"));
        assert!(error(quote!(queue = "")).contains("must not be empty"));
        assert!(error(quote!(queue = "q", concurrency = "8")).contains("whole number"));
        assert!(error(quote!(queue = "q", concurrency = -1)).contains("whole number"));
        assert!(error(quote!(queue = "q", wait_time = 20)).contains("e.g. `wait_time = \"20s\"`"));
        assert!(error(quote!(queue = "q", wait_time = "20")).contains("has no unit"));
        assert!(error(quote!(queue = "q", fifo = "yes")).contains("`true` or `false`"));
        assert!(error(quote!(queue = "q", retry_backoff = ("1s"))).contains("the first delay"));
        assert!(
            error(quote!(queue = "q", retry_backoff = ("1s", "2s", "3s")))
                .contains("the first delay")
        );
        assert!(error(quote!(queue = "q", crate = "not a path")).contains("expected"));
    }

    #[test]
    fn limits() {
        let cases = [
            (quote!(queue = "q", concurrency = 0), "at least 1"),
            (
                quote!(queue = "q", pollers = 0),
                "`pollers` must be 1 to `concurrency` (16)",
            ),
            (quote!(queue = "q", concurrency = 4, pollers = 5), "(4)"),
            (quote!(queue = "q", batch_size = 0), "1 to 10"),
            (quote!(queue = "q", batch_size = 11), "1 to 10"),
            (quote!(queue = "q", wait_time = "21s"), "at most 20s"),
            (quote!(queue = "q", wait_time = "1500ms"), "whole seconds"),
            (
                quote!(queue = "q", visibility_timeout = "12h1s"),
                "1s to 12h",
            ),
            (
                quote!(queue = "q", visibility_timeout = "999ms"),
                "1s to 12h",
            ),
            (
                quote!(queue = "q", visibility_timeout = "1s500ms"),
                "whole seconds",
            ),
            (quote!(queue = "q", handler_timeout = "0s"), "above 0s"),
            (
                quote!(queue = "q", handler_timeout = "13h"),
                "at most 11h59m",
            ),
            (
                quote!(queue = "q", handler_timeout = "12h"),
                "at most 11h59m",
            ),
            (quote!(queue = "q", heartbeat = "0s"), "above 0s"),
            (
                quote!(queue = "q", visibility_timeout = "30s", heartbeat = "30s"),
                "shorter than the visibility timeout (30s)",
            ),
            (
                quote!(
                    queue = "q",
                    visibility_timeout = "30s",
                    handler_timeout = "30s",
                    heartbeat = false
                ),
                "when heartbeats are off",
            ),
            (
                quote!(queue = "q", retry_backoff = ("1m", "30s")),
                "at most the cap",
            ),
            (
                quote!(queue = "q", retry_backoff = ("1s", "13h")),
                "`retry_backoff.max` must be at most 12h",
            ),
            (quote!(queue = "q", name = ""), "`name` must be non-empty"),
            (quote!(queue = "orders", fifo = true), "not a FIFO queue"),
            (
                quote!(queue = "q", exit_after_empty_receives = 0),
                "`exit_after_empty_receives` must be at least 1",
            ),
            (
                quote!(queue = "q", max_run_time = "0s"),
                "`max_run_time` must be above 0s",
            ),
        ];
        for (tokens, expected) in cases {
            let text = tokens.to_string();
            let message = error(tokens);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn durations_take_a_fraction_on_their_last_part() {
        let args = parse(quote!(
            queue = "q",
            handler_timeout = "1.5s",
            heartbeat = "1m0.5s",
            retry_backoff = ("0.25s", "1.5m"),
        ))
        .expect("valid");
        assert_eq!(
            value(&args, "handler_timeout"),
            Some(Value::Duration(Duration::from_millis(1_500)))
        );
        assert_eq!(
            value(&args, "heartbeat"),
            Some(Value::Heartbeat(Heartbeat::Every(Duration::from_millis(
                60_500
            ))))
        );
        assert_eq!(
            value(&args, "retry"),
            Some(Value::Backoff(Retry::Backoff {
                base: Duration::from_millis(250),
                max: Duration::from_secs(90)
            }))
        );
        let message = error(quote!(queue = "q", handler_timeout = "1.0005s"));
        assert!(message.contains("finer than a millisecond"), "{message}");
        let message = error(quote!(queue = "q", handler_timeout = "1.5m30s"));
        assert!(message.contains("only the last part"), "{message}");
    }

    /// The attribute and `WorkerConfig::validate` run the table's one check of each
    /// setting; what is left to pin is that both read the other settings alike.
    #[test]
    fn the_runtime_refuses_what_the_attribute_refuses() {
        use spotq::config::{Heartbeat, WorkerConfig};

        let secs = Duration::from_secs;
        let cases = [
            (
                quote!(queue = "q", concurrency = 4, pollers = 5),
                WorkerConfig {
                    concurrency: 4,
                    pollers: Some(5),
                    ..WorkerConfig::default()
                },
                "1 to `concurrency` (4)",
            ),
            (
                quote!(
                    queue = "q",
                    visibility_timeout = "30s",
                    handler_timeout = "30s",
                    heartbeat = false
                ),
                WorkerConfig {
                    visibility_timeout: Some(secs(30)),
                    handler_timeout: Some(secs(30)),
                    heartbeat: Heartbeat::Off,
                    ..WorkerConfig::default()
                },
                "shorter than the visibility timeout (30s) when heartbeats are off",
            ),
        ];
        for (tokens, config, limit) in cases {
            let runtime = config.validate().expect_err("refused");
            let attribute = error(tokens);
            let rule = format!("`{}` must be {limit}", runtime.setting);
            assert!(attribute.starts_with(&rule), "{attribute}");
            assert!(runtime.allowed.starts_with(limit), "{runtime}");
        }
    }

    #[test]
    fn values_at_their_limits_are_fine() {
        parse(quote! {
            queue = "orders.fifo", fifo = true, concurrency = 1, pollers = 1, batch_size = 1,
            wait_time = "0s", visibility_timeout = "12h", handler_timeout = "11h59m",
            heartbeat = "11h59m59s", retry_backoff = ("0s", "12h"),
        })
        .expect("valid");
        parse(quote! {
            queue = "q", batch_size = 10, wait_time = "20s", visibility_timeout = "1s",
            handler_timeout = "999ms", heartbeat = false,
        })
        .expect("valid");
        // Without a visibility timeout in the attribute, the queue's own is checked at start.
        parse(quote!(
            queue = "q",
            handler_timeout = "1h",
            heartbeat = false
        ))
        .expect("valid");
        // An environment variable can name a FIFO queue: checked at start.
        parse(quote!(queue = env("Q"), fifo = true)).expect("valid");
        parse(quote!(queue = "orders", fifo = false)).expect("valid");
    }

    #[test]
    fn all_errors_at_once() {
        let Err(errors) = Args::parse(quote!(queue = "q", batch_size = 0, wait_time = "1m")) else {
            panic!("accepted");
        };
        assert_eq!(errors.into_iter().count(), 2);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("queue", "queue"), 0);
        assert_eq!(edit_distance("queu", "queue"), 1);
        assert_eq!(edit_distance("batchsize", "batch_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
