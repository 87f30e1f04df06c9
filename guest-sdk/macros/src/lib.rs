//! Export macros for factline plugins. Use them through `factline_guest` (`factline_guest::aggregate!`),
//! which re-exports them; the generated code names only `::factline_guest`.
//!
//! Each macro checks the trait bound on every target (so a wrong type fails natively too) and,
//! for `wasm32` only, runs `wit_bindgen::generate!` for the kind's world with the WIT embedded
//! here, implements the generated `Guest` trait by converting WIT types to SDK types, and hands
//! the work to `factline_guest::__private`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

/// The contract, embedded when the macro crate is compiled (a WIT change rebuilds it).
const WIT: &str = include_str!("../../../wit/factline.wit");

#[derive(Clone, Copy)]
enum Kind {
    Aggregate,
    Projector,
    Policy,
    Saga,
}

/// `factline_guest::aggregate!(MyAggregate);` exports an `Aggregate` (world `aggregate`).
#[proc_macro]
pub fn aggregate(input: TokenStream) -> TokenStream {
    export_kind(Kind::Aggregate, input)
}

/// `factline_guest::projector!(MyProjector);` exports a `Projector` (world `projector`).
#[proc_macro]
pub fn projector(input: TokenStream) -> TokenStream {
    export_kind(Kind::Projector, input)
}

/// `factline_guest::policy!(MyPolicy);` exports a `Policy` (world `policy`).
#[proc_macro]
pub fn policy(input: TokenStream) -> TokenStream {
    export_kind(Kind::Policy, input)
}

/// `factline_guest::saga!(MySaga);` exports a `Saga` (world `saga`).
#[proc_macro]
pub fn saga(input: TokenStream) -> TokenStream {
    export_kind(Kind::Saga, input)
}

fn export_kind(kind: Kind, input: TokenStream) -> TokenStream {
    let (name, world) = match kind {
        // The optional `schema-evolution` export rides along with every SDK aggregate.
        Kind::Aggregate => ("aggregate", "evolving-aggregate"),
        // Likewise the optional `read-model-evolution` export with every SDK projector.
        Kind::Projector => ("projector", "versioned-projector"),
        Kind::Policy => ("policy", "policy"),
        Kind::Saga => ("saga", "saga"),
    };
    let ty: syn::Type = match syn::parse(input) {
        Ok(ty) => ty,
        Err(e) => {
            let message = format!("expected the plugin type: `factline_guest::{name}!(MyType);`");
            return syn::Error::new(e.span(), message).to_compile_error().into();
        }
    };
    let assert = syn::Ident::new(&format!("assert_{name}"), Span::call_site());
    let check = quote_spanned! {ty.span()=>
        const _: () = ::factline_guest::__private::#assert::<#ty>();
    };
    let glue = match kind {
        Kind::Aggregate => aggregate_glue(),
        Kind::Projector => projector_glue(),
        Kind::Policy => policy_glue(),
        Kind::Saga => saga_glue(),
    };
    let common = common_glue();
    quote! {
        #check

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __FactlinePlugin = #ty;

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code, dead_code, unused_imports, missing_docs, clippy::all)]
        mod __factline_export {
            ::factline_guest::__private::wit_bindgen::generate!({
                inline: #WIT,
                world: #world,
                runtime_path: "::factline_guest::__private::wit_bindgen::rt",
            });

            use ::factline_guest::__private as rt;
            use self::factline::plugin::types as wit;

            type Plugin = super::__FactlinePlugin;

            struct Component;

            #common
            #glue

            export!(Component);
        }
    }
    .into()
}

/// Logging and the event and failure conversions every world uses.
fn common_glue() -> TokenStream2 {
    quote! {
        fn setup() {
            rt::set_log_sink(log_to_host);
        }

        fn log_to_host(level: rt::Level, message: &str) {
            use self::factline::plugin::logging::{Level, log};
            let level = match level {
                rt::Level::Trace => Level::Trace,
                rt::Level::Debug => Level::Debug,
                rt::Level::Info => Level::Info,
                rt::Level::Warn => Level::Warn,
                rt::Level::Error => Level::Error,
            };
            log(level, message);
        }

        fn event_in(e: wit::Event) -> rt::RawEvent {
            rt::RawEvent {
                event_type: e.event_type,
                payload: e.payload,
                meta: rt::EventMeta {
                    event_id: e.event_id,
                    stream: e.stream,
                    stream_version: e.stream_version,
                    occurred_at: e.occurred_at,
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    schema_version: e.schema_version,
                    topic: e.topic,
                    partition: e.partition,
                    offset: e.offset,
                    metadata: e.metadata,
                },
            }
        }

        fn failure_out(f: rt::Failure) -> wit::Failure {
            wit::Failure { message: f.message, event_index: f.event_index }
        }
    }
}

fn outgoing_glue() -> TokenStream2 {
    quote! {
        fn command_out(c: rt::OutgoingCommand) -> wit::OutgoingCommand {
            wit::OutgoingCommand {
                aggregate: c.aggregate,
                stream: c.stream,
                command_type: c.command_type,
                command_id: c.command_id,
                payload: c.payload,
            }
        }
    }
}

fn aggregate_glue() -> TokenStream2 {
    quote! {
        fn event_out(e: rt::RawEvent) -> wit::Event {
            let m = e.meta;
            wit::Event {
                event_id: m.event_id,
                event_type: e.event_type,
                stream: m.stream,
                stream_version: m.stream_version,
                topic: m.topic,
                partition: m.partition,
                offset: m.offset,
                occurred_at: m.occurred_at,
                correlation_id: m.correlation_id,
                causation_id: m.causation_id,
                schema_version: m.schema_version,
                payload: e.payload,
                metadata: m.metadata,
            }
        }

        impl self::exports::factline::plugin::schema_evolution::Guest for Component {
            fn state_schema() -> u32 {
                setup();
                rt::aggregate::state_schema::<Plugin>()
            }

            fn upcasts() -> Vec<(String, u32)> {
                setup();
                rt::aggregate::upcasts::<Plugin>()
            }

            fn upcast(events: Vec<wit::Event>) -> Result<Vec<wit::Event>, wit::Failure> {
                setup();
                let events = events.into_iter().map(event_in).collect();
                match rt::aggregate::upcast::<Plugin>(events) {
                    Ok(events) => Ok(events.into_iter().map(event_out).collect()),
                    Err(f) => Err(failure_out(f)),
                }
            }
        }

        impl self::exports::factline::plugin::aggregate_handler::Guest for Component {
            fn event_types() -> Vec<String> {
                setup();
                rt::aggregate::event_types::<Plugin>()
            }

            fn initial_state() -> Vec<u8> {
                setup();
                rt::aggregate::initial_state::<Plugin>()
            }

            fn evolve(state: Vec<u8>, events: Vec<wit::Event>) -> Result<Vec<u8>, wit::Failure> {
                setup();
                let events = events.into_iter().map(event_in).collect();
                rt::aggregate::evolve::<Plugin>(&state, events).map_err(failure_out)
            }

            fn decide(state: Vec<u8>, c: wit::Command) -> Result<Vec<wit::NewEvent>, wit::DecideError> {
                setup();
                let command = rt::RawCommand {
                    command_type: c.command_type,
                    payload: c.payload,
                    ctx: rt::CommandContext {
                        command_id: c.command_id,
                        stream: c.stream,
                        issued_at: c.issued_at,
                        correlation_id: c.correlation_id,
                        causation_id: c.causation_id,
                        metadata: c.metadata,
                    },
                };
                match rt::aggregate::decide::<Plugin>(&state, command) {
                    Ok(events) => Ok(events
                        .into_iter()
                        .map(|e| wit::NewEvent {
                            event_type: e.event_type,
                            schema_version: e.schema_version,
                            payload: e.payload,
                            metadata: e.metadata,
                        })
                        .collect()),
                    Err(rt::DecideError::Rejected(r)) => Err(wit::DecideError::Rejected(wit::Rejection {
                        code: r.code,
                        message: r.message,
                    })),
                    Err(rt::DecideError::Failed(f)) => Err(wit::DecideError::Failed(failure_out(f))),
                }
            }
        }
    }
}

fn projector_glue() -> TokenStream2 {
    quote! {
        /// The host's `read-model` interface, scoped by the host to this projector.
        struct HostStore;

        impl rt::ReadModelStore for HostStore {
            fn get(&self, key: &str) -> Option<Vec<u8>> {
                self::factline::plugin::read_model::get(key)
            }

            fn put(&mut self, key: &str, value: &[u8]) {
                self::factline::plugin::read_model::put(key, value)
            }

            fn delete(&mut self, key: &str) {
                self::factline::plugin::read_model::delete(key)
            }

            fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
                self::factline::plugin::read_model::scan_prefix(prefix, start_after, limit)
            }
        }

        impl self::exports::factline::plugin::read_model_evolution::Guest for Component {
            fn read_model_version() -> u32 {
                setup();
                rt::projector::read_model_version::<Plugin>()
            }
        }

        impl self::exports::factline::plugin::projector_handler::Guest for Component {
            fn event_types() -> Vec<String> {
                setup();
                rt::projector::event_types::<Plugin>()
            }

            fn project(events: Vec<wit::Event>) -> Result<(), wit::Failure> {
                setup();
                let events = events.into_iter().map(event_in).collect();
                rt::projector::project::<Plugin>(events, &mut HostStore).map_err(failure_out)
            }
        }
    }
}

fn policy_glue() -> TokenStream2 {
    let outgoing = outgoing_glue();
    quote! {
        #outgoing

        impl self::exports::factline::plugin::policy_handler::Guest for Component {
            fn event_types() -> Vec<String> {
                setup();
                rt::policy::event_types::<Plugin>()
            }

            fn react(events: Vec<wit::Event>) -> Result<Vec<Vec<wit::OutgoingCommand>>, wit::Failure> {
                setup();
                let events = events.into_iter().map(event_in).collect();
                match rt::policy::react::<Plugin>(events) {
                    Ok(lists) => Ok(lists
                        .into_iter()
                        .map(|commands| commands.into_iter().map(command_out).collect())
                        .collect()),
                    Err(f) => Err(failure_out(f)),
                }
            }
        }
    }
}

fn saga_glue() -> TokenStream2 {
    let outgoing = outgoing_glue();
    quote! {
        #outgoing

        use self::exports::factline::plugin::saga_handler as saga;

        impl saga::Guest for Component {
            fn definition() -> saga::SagaDefinition {
                setup();
                let d = rt::saga::definition::<Plugin>();
                saga::SagaDefinition {
                    name: d.name,
                    trigger_types: d.trigger_types,
                    answer_types: d.answer_types,
                    steps: d
                        .steps
                        .into_iter()
                        .map(|s| saga::StepDefinition {
                            name: s.name,
                            timeout_ms: s.timeout_ms,
                            compensable: s.compensable,
                        })
                        .collect(),
                }
            }

            fn start(trigger: wit::Event) -> Result<Option<saga::Started>, wit::Failure> {
                setup();
                match rt::saga::start::<Plugin>(event_in(trigger)) {
                    Ok(started) => Ok(started.map(|(instance_id, data)| saga::Started { instance_id, data })),
                    Err(f) => Err(failure_out(f)),
                }
            }

            fn execute(step: String, data: Vec<u8>) -> Result<wit::OutgoingCommand, wit::Failure> {
                setup();
                rt::saga::execute::<Plugin>(&step, &data).map(command_out).map_err(failure_out)
            }

            fn compensate(step: String, data: Vec<u8>) -> Result<Option<wit::OutgoingCommand>, wit::Failure> {
                setup();
                match rt::saga::compensate::<Plugin>(&step, &data) {
                    Ok(command) => Ok(command.map(command_out)),
                    Err(f) => Err(failure_out(f)),
                }
            }

            fn judge(step: String, data: Vec<u8>, answer: wit::Event) -> Result<saga::Verdict, wit::Failure> {
                setup();
                match rt::saga::judge::<Plugin>(&step, &data, event_in(answer)) {
                    Ok(rt::RawVerdict::Succeeded(data)) => Ok(saga::Verdict::Succeeded(data)),
                    Ok(rt::RawVerdict::Failed(reason)) => Ok(saga::Verdict::Failed(reason)),
                    Ok(rt::RawVerdict::NotMine) => Ok(saga::Verdict::NotMine),
                    Err(f) => Err(failure_out(f)),
                }
            }
        }
    }
}

/// `#[factline_guest::export]` exports a small plugin without spelling out its trait:
///
/// - on a function `fn totals(event: Event, meta: &EventMeta, model: &mut ReadModel) -> Result`,
///   a projector: it defines the unit struct `Totals` (the name in UpperCamelCase, for the
///   testing harness) implementing `Projector` by calling the function, and exports it;
/// - on an inherent `impl State { fn decide(..); fn evolve(..) }`, an aggregate: `decide(&self,
///   command: Command[, ctx: &CommandContext])` and `evolve(&mut self, event: Event[, meta:
///   &EventMeta])`, with the context optional; it implements `Aggregate` for `State` by calling
///   them and exports it.
///
/// The item stays as written, so native tests call it directly. Anything more (schema versions,
/// upcasters, a read-model version, policies, sagas) is the trait and its export macro.
#[proc_macro_attribute]
pub fn export(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = TokenStream2::from(attr);
        return syn::Error::new(
            attr.span(),
            "`#[factline_guest::export]` takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let item = match syn::parse::<syn::Item>(item) {
        Ok(syn::Item::Fn(f)) => export_projector_fn(&f).map(|glue| quote! { #f #glue }),
        Ok(syn::Item::Impl(i)) => export_aggregate_impl(&i).map(|glue| quote! { #i #glue }),
        Ok(other) => Err(syn::Error::new(other.span(), EXPORT_USAGE)),
        Err(e) => Err(syn::Error::new(e.span(), EXPORT_USAGE)),
    };
    item.unwrap_or_else(syn::Error::into_compile_error).into()
}

const EXPORT_USAGE: &str = "`#[factline_guest::export]` goes on a projector function \
    `fn name(event: Event, meta: &EventMeta, model: &mut ReadModel) -> Result` or on an \
    aggregate's `impl State { fn decide(..) ..; fn evolve(..) .. }`";

/// The types of a function's parameters after `self`, with their spans for errors.
fn typed_params(sig: &syn::Signature) -> Vec<&syn::Type> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            syn::FnArg::Typed(p) => Some(&*p.ty),
            syn::FnArg::Receiver(_) => None,
        })
        .collect()
}

fn export_projector_fn(f: &syn::ItemFn) -> syn::Result<TokenStream2> {
    let params = typed_params(&f.sig);
    let [event, _, _] = params[..] else {
        return Err(syn::Error::new(
            f.sig.inputs.span(),
            "a projector function takes `(event: Event, meta: &EventMeta, model: &mut ReadModel)`",
        ));
    };
    let name = &f.sig.ident;
    let camel: String = name
        .to_string()
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect();
    let ty = syn::Ident::new(&camel, name.span());
    let vis = &f.vis;
    let doc = format!("The projector [`{name}`] exports (`#[factline_guest::export]`).");
    Ok(quote! {
        #[doc = #doc]
        #[derive(Debug, Default, Clone, Copy)]
        #vis struct #ty;

        impl ::factline_guest::Projector for #ty {
            type Event = #event;

            fn project(
                &mut self,
                event: #event,
                meta: &::factline_guest::EventMeta,
                model: &mut ::factline_guest::ReadModel<'_>,
            ) -> ::core::result::Result<(), ::factline_guest::Failure> {
                #name(event, meta, model)
            }
        }

        ::factline_guest::projector!(#ty);
    })
}

fn export_aggregate_impl(i: &syn::ItemImpl) -> syn::Result<TokenStream2> {
    if let Some((_, path, _)) = &i.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "`#[factline_guest::export]` goes on an inherent `impl State`; a trait impl is \
             exported with `factline_guest::aggregate!(State)`",
        ));
    }
    let method = |wanted: &str| {
        i.items.iter().find_map(|item| match item {
            syn::ImplItem::Fn(f) if f.sig.ident == wanted => Some(&f.sig),
            _ => None,
        })
    };
    let (Some(decide), Some(evolve)) = (method("decide"), method("evolve")) else {
        return Err(syn::Error::new(
            i.self_ty.span(),
            "an aggregate's impl has `fn decide(&self, command: Command)` and \
             `fn evolve(&mut self, event: Event)`",
        ));
    };
    let (command, decide_call) = optional_context(
        decide,
        "command",
        "ctx",
        "`decide` takes `(&self, command: Command)` or `(&self, command: Command, ctx: &CommandContext)`",
    )?;
    let (event, evolve_call) = optional_context(
        evolve,
        "event",
        "meta",
        "`evolve` takes `(&mut self, event: Event)` or `(&mut self, event: Event, meta: &EventMeta)`",
    )?;
    let ty = &i.self_ty;
    Ok(quote! {
        impl ::factline_guest::Aggregate for #ty {
            type Command = #command;
            type Event = #event;

            // `Self::decide` is the inherent method above: inherent methods take precedence.
            #[allow(unused_variables)]
            fn decide(
                &self,
                command: #command,
                ctx: &::factline_guest::CommandContext,
            ) -> ::core::result::Result<::std::vec::Vec<#event>, ::factline_guest::Rejection> {
                #decide_call
            }

            #[allow(unused_variables)]
            fn evolve(&mut self, event: #event, meta: &::factline_guest::EventMeta) {
                #evolve_call
            }
        }

        ::factline_guest::aggregate!(#ty);
    })
}

/// The type of a method's parameter after `self`, and the call of the method with `arg`, and with
/// `context` only when the method takes it as well (the context parameter is optional).
fn optional_context<'a>(
    sig: &'a syn::Signature,
    arg: &str,
    context: &str,
    usage: &str,
) -> syn::Result<(&'a syn::Type, TokenStream2)> {
    let method = &sig.ident;
    let arg = syn::Ident::new(arg, Span::call_site());
    let context = syn::Ident::new(context, Span::call_site());
    match typed_params(sig)[..] {
        [ty] => Ok((ty, quote! { Self::#method(self, #arg) })),
        [ty, _] => Ok((ty, quote! { Self::#method(self, #arg, #context) })),
        _ => Err(syn::Error::new(sig.inputs.span(), usage)),
    }
}
