//! What kind of handler an `async fn` is, read from its signature alone.
//!
//! The macro runs before type checking, so it goes by how the types are written:
//!
//! - first argument `Vec<X>`: a batch handler, each `X` read as below;
//! - a type whose last path segment is `Message` (`Message`, `spotq::Message`): the raw
//!   message; `String`: the body as it is; `SqsMessage`
//!   (`aws_lambda_events::sqs::SqsMessage`): the Lambda event form; `Sns<T>` and
//!   `EventBridge<T>` (`spotq::handler::input::Sns`): the envelope of an SNS
//!   notification or an EventBridge event, `T` decoded from what it wraps; any other
//!   type: a JSON body deserialized into it;
//! - an optional second argument whose last path segment is `Context`, by reference or by
//!   value (per-message handlers only).
//!
//! A JSON body that is itself a list goes through an alias or a newtype
//! (`type Orders = Vec<Order>;`), since `Vec<Order>` as written means a batch.

use proc_macro2::Span;
use quote::ToTokens as _;
use syn::spanned::Spanned as _;
use syn::{FnArg, GenericArgument, PathArguments, ReturnType, Signature, Type, TypePath};

/// How one message (or each message of a batch) reaches the handler.
#[derive(Clone)]
pub(crate) enum Input {
    /// `Message`: as received.
    Raw(Type),
    /// `String`: the body as it is, not decoded.
    Text(Type),
    /// `SqsMessage`: the `aws_lambda_events` form, as a Lambda handler gets it.
    Lambda(Type),
    /// `Sns<T>`: an SNS notification (or a raw delivery), `T` from its message.
    Sns { ty: Type, inner: Type },
    /// `EventBridge<T>`: an EventBridge event, `T` from its `detail`.
    EventBridge { ty: Type, inner: Type },
    /// Any other type: the body, deserialized from JSON.
    Json(Type),
}

impl Input {
    /// The type as the user wrote it, for spans.
    pub(crate) fn ty(&self) -> &Type {
        let (Self::Raw(ty)
        | Self::Text(ty)
        | Self::Lambda(ty)
        | Self::Sns { ty, .. }
        | Self::EventBridge { ty, .. }
        | Self::Json(ty)) = self;
        ty
    }
}

/// How the handler takes the message's context.
#[derive(Clone, Copy)]
pub(crate) enum ContextArg {
    /// `cx: &Context`.
    Ref(Span),
    /// `cx: Context`.
    Value(Span),
}

/// The kinds of handler the macro supports.
#[derive(Clone)]
pub(crate) enum Kind {
    /// One message per call, with or without its context.
    PerMessage {
        input: Input,
        context: Option<ContextArg>,
    },
    /// A `Vec` of messages per call.
    Batch { input: Input },
}

/// A handler's signature, as far as the expansion needs it.
#[derive(Clone)]
pub(crate) struct Shape {
    pub kind: Kind,
    /// The return type as written, unless it is `()` by omission.
    pub output: Option<Type>,
}

/// Reads the handler's shape, or says with a span what does not fit.
pub(crate) fn read(sig: &Signature) -> syn::Result<Shape> {
    check_qualifiers(sig)?;
    let mut args = sig.inputs.iter();
    let Some(first) = args.next() else {
        return Err(syn::Error::new(
            sig.paren_token.span.join(),
            "a worker handler takes the message as its first argument, e.g. \
             `order: Order` (a JSON body), `message: spotq::Message` or `orders: Vec<Order>` \
             (a batch)",
        ));
    };
    let first = typed(first)?;
    let kind = match vec_element(first) {
        Some(element) => {
            if let Some(extra) = args.next() {
                return Err(syn::Error::new_spanned(
                    extra,
                    "a batch handler takes only the `Vec`: each message's context is \
                     `message.context()` on a `Vec<spotq::Message>`",
                ));
            }
            Kind::Batch {
                input: input(element)?,
            }
        }
        None => {
            let context = args.next().map(context).transpose()?;
            if let Some(extra) = args.next() {
                return Err(syn::Error::new_spanned(
                    extra,
                    "a worker handler takes at most two arguments: the message and its \
                     `&spotq::Context`",
                ));
            }
            Kind::PerMessage {
                input: input(first)?,
                context,
            }
        }
    };
    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    Ok(Shape { kind, output })
}

fn check_qualifiers(sig: &Signature) -> syn::Result<()> {
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "a worker handler cannot be `const`",
        ));
    }
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "`#[spotq::worker]` goes on an `async fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span,
            "a worker handler cannot be `unsafe`: the worker calls it like any safe function",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new_spanned(
            abi,
            "a worker handler cannot have an `extern` ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "a worker handler cannot be variadic",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics.params,
            "a worker handler cannot be generic: the worker must know the input type to \
             decode it; write a handler per type",
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        return Err(syn::Error::new_spanned(
            where_clause,
            "a worker handler cannot have a `where` clause",
        ));
    }
    Ok(())
}

/// The type of an argument; `self` is an error.
fn typed(arg: &FnArg) -> syn::Result<&Type> {
    match arg {
        FnArg::Typed(typed) => Ok(&typed.ty),
        FnArg::Receiver(receiver) => Err(syn::Error::new(
            receiver.self_token.span,
            "a worker handler cannot take `self`: use a free `async fn`, and reach shared \
             state through a `static` or a `std::sync::OnceLock`",
        )),
    }
}

/// The last path segment of a plain path type (`a::b::C<..>` → `C`).
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// `X` of `Vec<X>` (any path ending in `Vec` with one type argument).
fn vec_element(ty: &Type) -> Option<&Type> {
    let segment = last_segment(ty)?;
    if segment.ident != "Vec" {
        return None;
    }
    only_type_argument(segment)
}

/// `X` of `Name<X>`: the segment's one type argument.
fn only_type_argument(segment: &syn::PathSegment) -> Option<&Type> {
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    let mut types = arguments.args.iter().filter_map(|argument| match argument {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next()) {
        (Some(element), None) => Some(element),
        _ => None,
    }
}

fn input(ty: &Type) -> syn::Result<Input> {
    let unsupported = |what: &str| {
        Err(syn::Error::new_spanned(
            ty,
            format!(
                "{what}: a worker handler takes a type to deserialize from JSON, \
                 `spotq::Message`, `SqsMessage`, or a `Vec` of one of them (a batch)"
            ),
        ))
    };
    match ty {
        Type::Reference(reference) => {
            // What to take instead, in the user's words: `String` for `&str`.
            let owned = match &*reference.elem {
                Type::Path(path) if path.path.is_ident("str") => "String".to_owned(),
                Type::Slice(slice) => format!("Vec<{}>", slice.elem.to_token_stream()),
                element => element.to_token_stream().to_string(),
            };
            Err(syn::Error::new_spanned(
                ty,
                format!("a worker handler owns its input: take `{owned}`, not a reference"),
            ))
        }
        Type::ImplTrait(_) => unsupported("`impl Trait` is not an input type"),
        Type::TraitObject(_) => unsupported("a trait object is not an input type"),
        Type::Infer(_) => unsupported("`_` is not an input type"),
        Type::Never(_) => unsupported("`!` is not an input type"),
        Type::BareFn(_) => unsupported("a function pointer is not an input type"),
        Type::Ptr(_) => unsupported("a raw pointer is not an input type"),
        Type::Slice(_) => unsupported("a slice is not an input type"),
        Type::Macro(_) => unsupported("a type written by a macro cannot be read by `#[worker]`"),
        _ => Ok(match last_segment(ty) {
            Some(segment) if segment.ident == "Message" && segment.arguments.is_none() => {
                Input::Raw(ty.clone())
            }
            Some(segment) if segment.ident == "String" && segment.arguments.is_none() => {
                Input::Text(ty.clone())
            }
            Some(segment) if segment.ident == "SqsMessage" && segment.arguments.is_none() => {
                Input::Lambda(ty.clone())
            }
            Some(segment) if segment.ident == "Sns" || segment.ident == "EventBridge" => {
                return envelope(ty, segment);
            }
            _ => Input::Json(ty.clone()),
        }),
    }
}

/// `Sns<T>` or `EventBridge<T>`: the envelope and the type inside it.
fn envelope(ty: &Type, segment: &syn::PathSegment) -> syn::Result<Input> {
    let name = &segment.ident;
    let (what, example) = if name == "Sns" {
        ("the type of the SNS message", "Sns<Order>")
    } else {
        ("the type of the event's detail", "EventBridge<OrderPlaced>")
    };
    let Some(inner) = only_type_argument(segment) else {
        return Err(syn::Error::new_spanned(
            ty,
            format!("`{name}` takes one type argument, {what}: `{example}`"),
        ));
    };
    if let Type::Reference(_) = inner {
        return Err(syn::Error::new_spanned(
            inner,
            format!("`{name}` owns what it wraps: take `{example}`, not a reference inside"),
        ));
    }
    let (ty, inner) = (ty.clone(), inner.clone());
    Ok(if name == "Sns" {
        Input::Sns { ty, inner }
    } else {
        Input::EventBridge { ty, inner }
    })
}

fn context(arg: &FnArg) -> syn::Result<ContextArg> {
    let ty = typed(arg)?;
    let is_context = |ty: &Type| {
        last_segment(ty)
            .is_some_and(|segment| segment.ident == "Context" && segment.arguments.is_none())
    };
    match ty {
        Type::Reference(reference) if is_context(&reference.elem) => {
            if let Some(mutability) = &reference.mutability {
                return Err(syn::Error::new(
                    mutability.span,
                    "the context is shared: take `&spotq::Context`, not `&mut`",
                ));
            }
            Ok(ContextArg::Ref(ty.span()))
        }
        _ if is_context(ty) => Ok(ContextArg::Value(ty.span())),
        _ => Err(syn::Error::new_spanned(
            ty,
            "the second argument of a worker handler is the message's context: \
             `cx: &spotq::Context`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::ItemFn;

    use super::*;

    fn read_shape(item: proc_macro2::TokenStream) -> Result<Shape, String> {
        let item: ItemFn = syn::parse2(item).expect("a fn");
        read(&item.sig).map_err(|error| error.to_string())
    }

    fn input_of(kind: &Kind) -> (&'static str, String) {
        let (Kind::PerMessage { input, .. } | Kind::Batch { input, .. }) = kind;
        let name = match input {
            Input::Raw(_) => "raw",
            Input::Text(_) => "text",
            Input::Lambda(_) => "lambda",
            Input::Sns { .. } => "sns",
            Input::EventBridge { .. } => "eventbridge",
            Input::Json(_) => "json",
        };
        (name, input.ty().to_token_stream().to_string())
    }

    #[test]
    fn per_message_inputs() {
        let cases = [
            (
                quote!(
                    async fn f(order: Order) {}
                ),
                "json",
                "Order",
            ),
            (
                quote!(
                    async fn f(order: api::Order<u8>) {}
                ),
                "json",
                "api :: Order < u8 >",
            ),
            (
                quote!(
                    async fn f((a, b): (u8, u8)) {}
                ),
                "json",
                "(u8 , u8)",
            ),
            (quote! { async fn f(body: String) {} }, "text", "String"),
            (
                quote! { async fn f(body: std::string::String) {} },
                "text",
                "std :: string :: String",
            ),
            (
                quote! { async fn f(body: Option<String>) {} },
                "json",
                "Option < String >",
            ),
            (
                quote!(
                    async fn f(message: Message) {}
                ),
                "raw",
                "Message",
            ),
            (
                quote!(
                    async fn f(m: ::spotq::Message) {}
                ),
                "raw",
                ":: spotq :: Message",
            ),
            (
                quote!(
                    async fn f(m: SqsMessage) {}
                ),
                "lambda",
                "SqsMessage",
            ),
            (
                quote!(
                    async fn f(m: aws_lambda_events::sqs::SqsMessage) {}
                ),
                "lambda",
                "aws_lambda_events :: sqs :: SqsMessage",
            ),
            (
                quote!(
                    async fn f(order: Sns<Order>) {}
                ),
                "sns",
                "Sns < Order >",
            ),
            (
                quote!(
                    async fn f(order: spotq::handler::input::Sns<Vec<u8>>) {}
                ),
                "sns",
                "spotq :: handler :: input :: Sns < Vec < u8 > >",
            ),
            (
                quote!(
                    async fn f(event: EventBridge<Change>) {}
                ),
                "eventbridge",
                "EventBridge < Change >",
            ),
        ];
        for (item, kind, ty) in cases {
            let shape = read_shape(item).expect("valid");
            assert!(matches!(shape.kind, Kind::PerMessage { context: None, .. }));
            assert_eq!(input_of(&shape.kind), (kind, ty.to_owned()));
        }
    }

    #[test]
    fn batches() {
        let cases = [
            (
                quote! { async fn f(bodies: Vec<String>) {} },
                "text",
                "String",
            ),
            (
                quote!(
                    async fn f(orders: Vec<Order>) {}
                ),
                "json",
                "Order",
            ),
            (
                quote!(
                    async fn f(m: Vec<spotq::Message>) {}
                ),
                "raw",
                "spotq :: Message",
            ),
            (
                quote!(
                    async fn f(m: std::vec::Vec<SqsMessage>) {}
                ),
                "lambda",
                "SqsMessage",
            ),
            (
                quote!(
                    async fn f(orders: Vec<Sns<Order>>) {}
                ),
                "sns",
                "Sns < Order >",
            ),
            (
                quote!(
                    async fn f(events: Vec<EventBridge<Change>>) {}
                ),
                "eventbridge",
                "EventBridge < Change >",
            ),
        ];
        for (item, kind, ty) in cases {
            let shape = read_shape(item).expect("valid");
            assert!(matches!(shape.kind, Kind::Batch { .. }));
            assert_eq!(input_of(&shape.kind), (kind, ty.to_owned()));
        }
        // A list body goes through an alias.
        let shape = read_shape(quote!(
            async fn f(orders: Orders) {}
        ))
        .expect("valid");
        assert!(matches!(shape.kind, Kind::PerMessage { .. }));
    }

    #[test]
    fn context_by_reference_or_value() {
        let shape = read_shape(quote!(
            async fn f(o: Order, cx: &spotq::Context) {}
        ))
        .expect("valid");
        assert!(matches!(
            shape.kind,
            Kind::PerMessage {
                context: Some(ContextArg::Ref(_)),
                ..
            }
        ));
        let shape = read_shape(quote!(
            async fn f(o: Order, _: Context) {}
        ))
        .expect("valid");
        assert!(matches!(
            shape.kind,
            Kind::PerMessage {
                context: Some(ContextArg::Value(_)),
                ..
            }
        ));
    }

    #[test]
    fn unsupported_signatures() {
        let cases = [
            (
                quote!(
                    fn f(o: Order) {}
                ),
                "goes on an `async fn`",
            ),
            (
                quote!(
                    async unsafe fn f(o: Order) {}
                ),
                "cannot be `unsafe`",
            ),
            (
                quote!(
                    async extern "C" fn f(o: Order) {}
                ),
                "`extern` ABI",
            ),
            (
                quote!(
                    async fn f<T>(o: T) {}
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    async fn f(o: Order)
                    where
                        Order: Send,
                    {
                    }
                ),
                "`where` clause",
            ),
            (
                quote!(
                    async fn f() {}
                ),
                "takes the message as its first argument",
            ),
            (
                quote!(
                    async fn f(&self) {}
                ),
                "cannot take `self`",
            ),
            (
                quote!(
                    async fn f(o: &Order) {}
                ),
                "take `Order`,",
            ),
            (
                quote!(
                    async fn f(o: &str) {}
                ),
                "take `String`,",
            ),
            (
                quote!(
                    async fn f(o: &[u8]) {}
                ),
                "take `Vec<u8>`,",
            ),
            (
                quote!(
                    async fn f(o: impl Send) {}
                ),
                "`impl Trait` is not an input type",
            ),
            (
                quote!(
                    async fn f(o: Order, cx: &mut Context) {}
                ),
                "not `&mut`",
            ),
            (
                quote!(
                    async fn f(o: Order, n: u32) {}
                ),
                "`cx: &spotq::Context`",
            ),
            (
                quote!(
                    async fn f(o: Order, cx: &Context, n: u32) {}
                ),
                "at most two arguments",
            ),
            (
                quote!(
                    async fn f(o: Vec<Order>, cx: &Context) {}
                ),
                "takes only the `Vec`",
            ),
        ];
        for (item, expected) in cases {
            let text = item.to_string();
            let Err(error) = read_shape(item) else {
                panic!("{text}: accepted");
            };
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
