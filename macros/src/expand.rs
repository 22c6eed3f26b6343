//! The expansion: the user's function as written, and beside it `<name>_worker()`, which
//! builds a `WorkerSpec` through spotq's public API only.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens as _, format_ident, quote, quote_spanned};
use spotq_settings::SETTINGS;
use syn::spanned::Spanned as _;
use syn::{Ident, ItemFn, Type};

use crate::args::{Args, Heartbeat, Queue, Retry, Value};
use crate::shape::{self, ContextArg, Input, Kind, Shape};

/// The whole expansion of `#[worker(args)] item`; on any error, the item as written, a
/// stand-in `<name>_worker()` and the errors, so that the rest of the crate still checks
/// and the IDE keeps working.
pub(crate) fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[spotq::worker]` goes on an `async fn`",
            );
            return with_error(item, error);
        }
    };
    let args = Args::parse(args);
    let shape = shape::read(&function.sig);
    match (args, shape) {
        (Ok(args), Ok(shape)) => {
            let spec = spec_fn(&function, &args, &shape);
            quote!(#function #spec)
        }
        (args, shape) => {
            let krate = args.as_ref().map_or_else(|_| quote!(::spotq), crate_path);
            let mut errors = None::<syn::Error>;
            for error in [args.err(), shape.err()].into_iter().flatten() {
                match &mut errors {
                    Some(errors) => errors.combine(error),
                    None => errors = Some(error),
                }
            }
            let stand_in = stand_in(&function, &krate);
            let errors = errors.map(|error| error.into_compile_error());
            quote!(#function #stand_in #errors)
        }
    }
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

/// `handle_order` → `handle_order_worker`, spanned at the handler's name.
fn spec_ident(function: &ItemFn) -> Ident {
    let ident = &function.sig.ident;
    format_ident!("{}_worker", ident, span = ident.span())
}

/// The attributes the generated fn shares with the handler: `#[cfg]`, so that both exist
/// under the same configuration.
fn shared_attrs(function: &ItemFn) -> impl Iterator<Item = &syn::Attribute> {
    function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
}

/// What the expansion emits in place of the spec fn when the attribute has an error:
/// the same signature, so that callers report nothing more.
fn stand_in(function: &ItemFn, krate: &TokenStream) -> TokenStream {
    let vis = &function.vis;
    let ident = spec_ident(function);
    let attrs = shared_attrs(function);
    quote! {
        #(#attrs)*
        #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
        #vis fn #ident() -> #krate::WorkerSpec {
            ::core::unreachable!("`#[spotq::worker]` failed to expand")
        }
    }
}

/// The path to spotq: `::spotq`, or the `crate` argument.
fn crate_path(args: &Args) -> TokenStream {
    match &args.crate_path {
        Some(path) => {
            let path = &path.value;
            quote!(#path)
        }
        None => quote!(::spotq),
    }
}

/// `#vis fn <name>_worker() -> WorkerSpec { ... }`.
fn spec_fn(function: &ItemFn, args: &Args, shape: &Shape) -> TokenStream {
    let krate = crate_path(args);
    let vis = &function.vis;
    let handler = &function.sig.ident;
    let ident = spec_ident(function);
    let attrs = shared_attrs(function);
    let doc = doc(handler, args);
    let queue = queue(&krate, args);
    let config = config(&krate, args);
    let fifo = args.fifo.as_ref().map(|fifo| {
        let value = fifo.value;
        quote_spanned!(fifo.span=> .fifo(#value))
    });
    let output = shape.output.as_ref();
    let spec = match &shape.kind {
        Kind::PerMessage { input, context } => per_message(
            &krate,
            handler,
            (input, *context),
            output,
            (&queue, &config),
        ),
        Kind::Batch { input } => batch(&krate, handler, input, output, (&queue, &config)),
    };
    quote! {
        #(#attrs)*
        #[doc = #doc]
        #[must_use]
        #vis fn #ident() -> #krate::WorkerSpec {
            #spec #fifo
        }
    }
}

fn doc(handler: &Ident, args: &Args) -> String {
    let queue = match args.queue.as_ref().map(|queue| &queue.value) {
        Some(Queue::Literal(name)) => format!("queue `{}`", name.value()),
        Some(Queue::Env(variable)) => format!(
            "the queue named by the environment variable `{}` (read when the worker starts)",
            variable.value()
        ),
        None => "its queue".to_owned(),
    };
    format!(
        " The spotq worker that runs [`{handler}`] on {queue}, as set by its \
         `#[spotq::worker]` attribute.\n\n Run it with `spotq::run([{handler}_worker()])`, \
         beside other workers in the same process."
    )
}

fn queue(krate: &TokenStream, args: &Args) -> TokenStream {
    match args.queue.as_ref().map(|queue| &queue.value) {
        Some(Queue::Literal(name)) => quote!(#krate::config::QueueSource::name(#name)),
        Some(Queue::Env(variable)) => quote!(#krate::config::QueueSource::env(#variable)),
        // `Args::parse` requires a queue; this is never reached.
        None => quote!(::core::unreachable!("`queue` is required")),
    }
}

fn duration(value: Duration) -> TokenStream {
    if value.subsec_nanos() == 0 {
        let seconds = value.as_secs();
        quote!(::core::time::Duration::from_secs(#seconds))
    } else {
        // A parsed duration is whole milliseconds, at most `u64::MAX` of them.
        let millis = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
        quote!(::core::time::Duration::from_millis(#millis))
    }
}

/// `WorkerConfig { field: value, ..Default::default() }` with the settings the attribute
/// set, in the table's order, each spanned at its value.
fn config(krate: &TokenStream, args: &Args) -> TokenStream {
    let fields = SETTINGS.iter().filter_map(|setting| {
        let given = args.given(setting.name)?;
        let field = Ident::new(setting.name, given.span);
        let value = value(krate, &given.value, given.span);
        Some(if setting.optional {
            quote_spanned!(given.span=> #field: ::core::option::Option::Some(#value))
        } else {
            quote_spanned!(given.span=> #field: #value)
        })
    });
    let fields: Vec<TokenStream> = fields.collect();
    if fields.is_empty() {
        return quote!(<#krate::config::WorkerConfig as ::core::default::Default>::default());
    }
    quote! {
        #krate::config::WorkerConfig {
            #(#fields,)*
            ..::core::default::Default::default()
        }
    }
}

/// A value as the field holds it: a count as a literal of the field's type, a duration,
/// a `String`, the runtime's `Heartbeat` or `RetryPolicy`.
fn value(krate: &TokenStream, value: &Value, span: Span) -> TokenStream {
    match value {
        Value::Count(count) => {
            let mut literal = Literal::u64_unsuffixed(*count);
            literal.set_span(span);
            literal.into_token_stream()
        }
        Value::Duration(value) => duration(*value),
        Value::Text(text) => quote!(::std::string::String::from(#text)),
        Value::Heartbeat(Heartbeat::Auto) => quote!(#krate::config::Heartbeat::Auto),
        Value::Heartbeat(Heartbeat::Every(interval)) => {
            let interval = duration(*interval);
            quote!(#krate::config::Heartbeat::Every(#interval))
        }
        Value::Heartbeat(Heartbeat::Off) => quote!(#krate::config::Heartbeat::Off),
        Value::Backoff(Retry::Backoff { base, max }) => {
            let (base, max) = (duration(*base), duration(*max));
            quote!(#krate::config::RetryPolicy::Backoff(#krate::config::Backoff::new(#base, #max)))
        }
        Value::Backoff(Retry::VisibilityTimeout) => {
            quote!(#krate::config::RetryPolicy::VisibilityTimeout)
        }
    }
}

/// The decoder of one message: `fn(Message) -> Result<(X, Context), HandlerError>`,
/// spanned at the input type so that "`Order` does not implement `Deserialize`" points
/// there.
fn decoder(krate: &TokenStream, input: &Input) -> TokenStream {
    let span = input.ty().span();
    match input {
        Input::Raw(_) => quote_spanned!(span=> #krate::handler::input::raw),
        // No decoder of its own: the raw message's body.
        Input::Text(_) => quote_spanned! {span=>
            (|__spotq_message: #krate::Message| {
                #krate::handler::input::raw(__spotq_message).map(|(__spotq_message, __spotq_cx)| {
                    (#krate::Message::into_body(__spotq_message), __spotq_cx)
                })
            })
        },
        Input::Lambda(_) => quote_spanned!(span=> #krate::handler::input::lambda),
        Input::Sns { inner, .. } => quote_spanned!(span=> #krate::handler::input::sns::<#inner>),
        Input::EventBridge { inner, .. } => {
            quote_spanned!(span=> #krate::handler::input::event_bridge::<#inner>)
        }
        Input::Json(ty) => quote_spanned!(span=> #krate::handler::input::json::<#ty>),
    }
}

/// `<Output as Trait>::method(__spotq_output)`: the conversion of what the handler
/// returned, written with the user's own return type, so that "`u32` is not a handler's
/// result" underlines the whole type in the signature. An `impl Trait` return type cannot
/// be named there; its conversion is left to inference.
fn convert(output: Option<&Type>, trait_path: TokenStream, method: Ident) -> TokenStream {
    match output {
        Some(ty) if !mentions_impl(ty.to_token_stream()) => {
            quote!(<#ty as #trait_path>::#method(__spotq_output))
        }
        Some(ty) => quote_spanned!(ty.span()=> #trait_path::#method(__spotq_output)),
        None => quote!(#trait_path::#method(__spotq_output)),
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}

/// `WorkerSpec::new(queue, config, closure)`: the closure decodes each message and calls
/// the handler.
///
/// Local names carry the `__spotq_` prefix: they resolve at the call site, where a
/// `const input` of the user's would otherwise turn a binding into a pattern.
fn per_message(
    krate: &TokenStream,
    handler: &Ident,
    (input, context): (&Input, Option<ContextArg>),
    output: Option<&Type>,
    (queue, config): (&TokenStream, &TokenStream),
) -> TokenStream {
    let convert = convert(
        output,
        quote!(#krate::handler::IntoOutcome),
        format_ident!("into_outcome"),
    );
    let outcome = |call: TokenStream| {
        quote! {{
            let __spotq_output = #call.await;
            #convert
        }}
    };
    let body = match (input, context) {
        // Nothing to decode: the message goes straight to the handler.
        (Input::Raw(_), None) => outcome(quote!(#handler(__spotq_message))),
        (Input::Text(_), None) => {
            outcome(quote!(#handler(#krate::Message::into_body(__spotq_message))))
        }
        (_, context) => {
            let decode = decoder(krate, input);
            let (binding, call) = match context {
                None => (quote!(_), quote!(#handler(__spotq_input))),
                Some(ContextArg::Ref(span)) => {
                    let cx = quote_spanned!(span=> &__spotq_cx);
                    (quote!(__spotq_cx), quote!(#handler(__spotq_input, #cx)))
                }
                Some(ContextArg::Value(span)) => {
                    let cx = quote_spanned!(span=> __spotq_cx);
                    (quote!(__spotq_cx), quote!(#handler(__spotq_input, #cx)))
                }
            };
            let outcome = outcome(call);
            quote! {
                match #decode(__spotq_message) {
                    ::core::result::Result::Ok((__spotq_input, #binding)) => #outcome,
                    ::core::result::Result::Err(__spotq_error) => {
                        #krate::Outcome::Fail(__spotq_error)
                    }
                }
            }
        }
    };
    quote! {
        #krate::WorkerSpec::new(
            #queue,
            #config,
            |__spotq_message: #krate::Message| async move { #body },
        )
    }
}

/// `WorkerSpec::batch(queue, config, closure)`: the closure decodes the messages through
/// `spotq::handler::input::batch`, which fails only the messages that do not decode and hands the
/// rest to the handler.
fn batch(
    krate: &TokenStream,
    handler: &Ident,
    input: &Input,
    output: Option<&Type>,
    (queue, config): (&TokenStream, &TokenStream),
) -> TokenStream {
    let decode = decoder(krate, input);
    let convert = convert(
        output,
        quote!(#krate::handler::IntoBatchOutcome),
        format_ident!("into_batch_outcome"),
    );
    quote! {
        #krate::WorkerSpec::batch(
            #queue,
            #config,
            |__spotq_messages: ::std::vec::Vec<#krate::Message>| async move {
                #krate::handler::input::batch(__spotq_messages, #decode, |__spotq_inputs| async move {
                    let __spotq_output = #handler(__spotq_inputs).await;
                    #convert
                })
                .await
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> String {
        worker(args, item).to_string()
    }

    #[test]
    fn keeps_the_function_and_adds_the_spec_fn() {
        let text = expand(
            quote!(queue = "orders", concurrency = 32),
            quote!(
                pub async fn handle_order(order: Order, cx: &Context) {}
            ),
        );
        assert!(text.starts_with("pub async fn handle_order (order : Order , cx : & Context) { }"));
        assert!(
            text.contains("# [must_use] pub fn handle_order_worker () -> :: spotq :: WorkerSpec")
        );
        assert!(text.contains(":: spotq :: config :: QueueSource :: name (\"orders\")"));
        assert!(text.contains("concurrency : 32 ,"), "{text}");
        assert!(
            text.contains(":: spotq :: handler :: input :: json :: < Order > (__spotq_message)")
        );
        assert!(text.contains(
            "let __spotq_output = handle_order (__spotq_input , & __spotq_cx) . await ;"
        ));
        assert!(
            text.contains(":: spotq :: handler :: IntoOutcome :: into_outcome (__spotq_output)")
        );
        assert!(!text.contains("compile_error"));
    }

    #[test]
    fn raw_message_without_context_goes_straight_through() {
        let text = expand(
            quote!(queue = "raw"),
            quote!(
                async fn handle(m: Message) {}
            ),
        );
        assert!(
            text.contains("let __spotq_output = handle (__spotq_message) . await ;"),
            "{text}"
        );
        assert!(!text.contains("input ::"), "{text}");
        assert!(text.contains(
            "< :: spotq :: config :: WorkerConfig as :: core :: default :: Default > :: default ()"
        ));
    }

    #[test]
    fn a_string_is_the_body_as_it_is() {
        let text = expand(
            quote!(queue = "t"),
            quote!(
                async fn handle(body: String) {}
            ),
        );
        assert!(
            text.contains("let __spotq_output = handle (:: spotq :: Message :: into_body (__spotq_message)) . await ;"),
            "{text}"
        );
        let text = expand(
            quote!(queue = "t"),
            quote!(
                async fn handle(body: String, cx: &Context) {}
            ),
        );
        assert!(
            text.contains(":: spotq :: handler :: input :: raw (__spotq_message) . map"),
            "{text}"
        );
        assert!(
            text.contains("(:: spotq :: Message :: into_body (__spotq_message) , __spotq_cx)"),
            "{text}"
        );
        assert!(!text.contains("json"), "{text}");
    }

    #[test]
    fn batches_go_through_input_batch() {
        let text = expand(
            quote!(queue = "b.fifo", fifo = true, crate = "my::spotq"),
            quote!(
                async fn handle(records: Vec<SqsMessage>) {}
            ),
        );
        assert!(
            text.contains("my :: spotq :: WorkerSpec :: batch ("),
            "{text}"
        );
        assert!(text.contains(
            "my :: spotq :: handler :: input :: batch (__spotq_messages , my :: spotq :: handler :: input :: lambda , | __spotq_inputs |"
        ));
        assert!(text.contains(". fifo (true)"));
    }

    #[test]
    fn converts_with_the_return_type_as_written() {
        let text = expand(
            quote!(queue = "q"),
            quote!(
                async fn handle(b: String) -> Result<(), MyError> {}
            ),
        );
        assert!(text.contains("< Result < () , MyError > as :: spotq :: handler :: IntoOutcome > :: into_outcome (__spotq_output)"), "{text}");
        // `impl Trait` cannot be named: left to inference.
        let text = expand(
            quote!(queue = "q"),
            quote!(
                async fn handle(b: Vec<u8>) -> Result<(), impl Into<BoxError>> {}
            ),
        );
        assert!(
            text.contains(
                ":: spotq :: handler :: IntoBatchOutcome :: into_batch_outcome (__spotq_output)"
            ),
            "{text}"
        );
    }

    #[test]
    fn on_error_keeps_the_function_and_a_stand_in() {
        let text = expand(
            quote!(queue = "q", batch_size = 11),
            quote!(
                pub(crate) async fn handle(body: String) {}
            ),
        );
        assert!(text.starts_with("pub (crate) async fn handle (body : String) { }"));
        assert!(text.contains("pub (crate) fn handle_worker () -> :: spotq :: WorkerSpec"));
        assert!(text.contains("compile_error ! { \"`batch_size` must be 1 to 10"));
        // Errors in both the arguments and the signature are reported together.
        let text = expand(
            quote!(queue = "q", batch_size = 11),
            quote!(
                fn handle(b: String) {}
            ),
        );
        assert_eq!(text.matches("compile_error").count(), 2, "{text}");
        // Not a function: the item as it was, and the error.
        let text = expand(
            quote!(queue = "q"),
            quote!(
                struct Handler;
            ),
        );
        assert!(text.starts_with("struct Handler ;"));
        assert!(text.contains("goes on an `async fn`"));
    }
}
