//! The expansion: the user's function as written, and beside it `<name>_worker()`, which
//! builds a `WorkerSpec` through spotq's public API only.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, ItemFn};

use crate::args::{Args, Heartbeat, Queue, Retry};
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
            let mut errors = None::<syn::Error>;
            for error in [args.err(), shape.err()].into_iter().flatten() {
                match &mut errors {
                    Some(errors) => errors.combine(error),
                    None => errors = Some(error),
                }
            }
            let stand_in = stand_in(&function);
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
fn stand_in(function: &ItemFn) -> TokenStream {
    let vis = &function.vis;
    let ident = spec_ident(function);
    let attrs = shared_attrs(function);
    quote! {
        #(#attrs)*
        #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
        #vis fn #ident() -> ::spotq::WorkerSpec {
            ::core::unreachable!("`#[spotq::worker]` failed to expand")
        }
    }
}

/// `#vis fn <name>_worker() -> WorkerSpec { ... }`.
fn spec_fn(function: &ItemFn, args: &Args, shape: &Shape) -> TokenStream {
    let krate = match &args.crate_path {
        Some(path) => {
            let path = &path.value;
            quote!(#path)
        }
        None => quote!(::spotq),
    };
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
    let spec = match &shape.kind {
        Kind::PerMessage { input, context } => per_message(
            &krate,
            handler,
            input,
            *context,
            shape.output_span,
            (&queue, &config),
        ),
        Kind::Batch { input, .. } => {
            batch(&krate, handler, input, shape.output_span, (&queue, &config))
        }
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
        Some(Queue::Literal(name)) => quote!(#krate::QueueSource::name(#name)),
        Some(Queue::Env(variable)) => quote!(#krate::QueueSource::env(#variable)),
        // `Args::parse` requires a queue; this is never reached.
        None => quote!(::core::unreachable!("`queue` is required")),
    }
}

fn duration(value: Duration) -> TokenStream {
    if value.subsec_nanos() == 0 {
        let seconds = value.as_secs();
        quote!(::core::time::Duration::from_secs(#seconds))
    } else {
        // `duration::parse` yields whole milliseconds, at most `u64::MAX` of them.
        let millis = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
        quote!(::core::time::Duration::from_millis(#millis))
    }
}

/// `WorkerConfig { key: value, ..Default::default() }` with the keys the attribute set.
fn config(krate: &TokenStream, args: &Args) -> TokenStream {
    let mut fields = Vec::new();
    if let Some(concurrency) = &args.concurrency {
        let value = concurrency.value;
        fields.push(quote_spanned!(concurrency.span=> concurrency: #value));
    }
    if let Some(pollers) = &args.pollers {
        let value = pollers.value;
        fields.push(quote_spanned!(pollers.span=> pollers: ::core::option::Option::Some(#value)));
    }
    if let Some(batch_size) = &args.batch_size {
        let value = batch_size.value;
        fields.push(quote_spanned!(batch_size.span=> batch_size: #value));
    }
    if let Some(wait) = &args.wait_time {
        let value = duration(wait.value);
        fields.push(quote_spanned!(wait.span=> wait_time: #value));
    }
    if let Some(visibility) = &args.visibility_timeout {
        let value = duration(visibility.value);
        fields.push(quote_spanned!(visibility.span=>
            visibility_timeout: ::core::option::Option::Some(#value)
        ));
    }
    if let Some(timeout) = &args.handler_timeout {
        let value = duration(timeout.value);
        fields.push(quote_spanned!(timeout.span=>
            handler_timeout: ::core::option::Option::Some(#value)
        ));
    }
    if let Some(heartbeat) = &args.heartbeat {
        let value = match heartbeat.value {
            Heartbeat::Auto => quote!(#krate::Heartbeat::Auto),
            Heartbeat::Every(interval) => {
                let interval = duration(interval);
                quote!(#krate::Heartbeat::Every(#interval))
            }
            Heartbeat::Off => quote!(#krate::Heartbeat::Off),
        };
        fields.push(quote_spanned!(heartbeat.span=> heartbeat: #value));
    }
    if let Some(retry) = &args.retry {
        let value = match retry.value {
            Retry::Backoff { base, max } => {
                let (base, max) = (duration(base), duration(max));
                quote!(#krate::RetryPolicy::Backoff(#krate::Backoff::new(#base, #max)))
            }
            Retry::VisibilityTimeout => quote!(#krate::RetryPolicy::VisibilityTimeout),
        };
        fields.push(quote_spanned!(retry.span=> retry: #value));
    }
    if let Some(name) = &args.name {
        let value = &name.value;
        fields.push(quote_spanned!(name.span=>
            name: ::core::option::Option::Some(::std::string::String::from(#value))
        ));
    }
    if fields.is_empty() {
        return quote!(<#krate::WorkerConfig as ::core::default::Default>::default());
    }
    quote! {
        #krate::WorkerConfig {
            #(#fields,)*
            ..::core::default::Default::default()
        }
    }
}

/// The decoder of one message: `fn(Message) -> Result<(X, Context), HandlerError>`,
/// spanned at the input type so that "`Order` does not implement `Deserialize`" points
/// there.
fn decoder(krate: &TokenStream, input: &Input) -> TokenStream {
    let span = syn::spanned::Spanned::span(input.ty());
    match input {
        Input::Raw(_) => quote_spanned!(span=> #krate::input::raw),
        Input::Lambda(_) => quote_spanned!(span=> #krate::input::lambda),
        Input::Json(ty) => quote_spanned!(span=> #krate::input::json::<#ty>),
    }
}

/// `WorkerSpec::new(queue, config, closure)`: the closure decodes each message and calls
/// the handler.
///
/// Local names carry the `__spotq_` prefix: they resolve at the call site, where a
/// `const input` of the user's would otherwise turn a binding into a pattern.
fn per_message(
    krate: &TokenStream,
    handler: &Ident,
    input: &Input,
    context: Option<ContextArg>,
    output_span: Span,
    (queue, config): (&TokenStream, &TokenStream),
) -> TokenStream {
    // Spanned at the return type: "`X` is not a spotq outcome" points there.
    let into_outcome = |call: TokenStream| {
        quote_spanned! {output_span=>
            #krate::IntoOutcome::into_outcome(#call.await)
        }
    };
    let body = match (input, context) {
        // Nothing to decode: the message goes straight to the handler.
        (Input::Raw(_), None) => into_outcome(quote!(#handler(__spotq_message))),
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
            let outcome = into_outcome(call);
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
/// `spotq::input::batch`, which fails only the messages that do not decode and hands the
/// rest to the handler.
fn batch(
    krate: &TokenStream,
    handler: &Ident,
    input: &Input,
    output_span: Span,
    (queue, config): (&TokenStream, &TokenStream),
) -> TokenStream {
    let decode = decoder(krate, input);
    // Spanned at the return type: "`X` is not a batch outcome" points there.
    let run = quote_spanned! {output_span=>
        #krate::input::batch(__spotq_messages, #decode, #handler).await
    };
    quote! {
        #krate::WorkerSpec::batch(
            #queue,
            #config,
            |__spotq_messages: ::std::vec::Vec<#krate::Message>| async move { #run },
        )
    }
}
