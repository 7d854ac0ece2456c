//! The function registry: plain `fn(A) -> R` functions under stable names, so a worker process or
//! another machine can be told *which* function to run without sending a code address.
//!
//! [`register!`](crate::register) places one [`Registration`] per function in a link-time
//! distributed slice (`linkme`): every registration in every crate linked into the binary ends up
//! in one static array, with no life-before-main constructor and no central list to keep in sync.
//! The first lookup builds the indexes below from it, once.
//!
//! Lookups go both ways:
//! - the submitting side has the function and needs its name. [`name_of_item`] /
//!   [`index_of_item`] key on the `TypeId` of the function's *item type* (every `fn` item has a
//!   unique zero-sized type): exact, whatever the optimizer does. [`index_of`], for callers that
//!   only have a `fn` pointer, key on the address *and* the `TypeId` of the
//!   signature, so two functions LLVM merged into one body (identical code folding) are never
//!   confused. Addresses are best effort: Rust does not promise a function one address, and an
//!   optimized build may give a small function a private copy per codegen unit, so a pointer can
//!   miss; the error then says how to fix it;
//! - the executing side has a name (or an index) and argument bytes: [`invoke`] (or
//!   [`invoke_index`]) deserializes the argument with postcard, calls the function with panics
//!   caught, and serializes whatever it returned (a plain `R`, or a whole `Result<R, E>` for
//!   fallible functions, so the caller decides what `Err` means).
//!
//! [`build_id`] fingerprints the registry (names and signatures, in name order), so two processes
//! that agree on it also agree on every index.

use std::any::{type_name, TypeId};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{Panic, Reason};
use crate::executor::Payload;

/// One `register!`ed function, as placed in the link-time slice. Not public API.
#[doc(hidden)]
pub struct Registration {
    /// `module::path::function`, as `register!` spelled it.
    pub name: &'static str,
    /// Builds the type-erased function; called once, when the registry is first used.
    pub describe: fn() -> Function,
}

/// Every registration linked into this binary.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static REGISTRATIONS: [Registration];

type Invoker = Box<dyn Fn(&[u8], &mut Vec<u8>) -> Result<(), InvokeError> + Send + Sync>;

/// A registered function with its types erased. Not public API.
#[doc(hidden)]
pub struct Function {
    item: TypeId,
    address: usize,
    signature: TypeId,
    signature_name: &'static str,
    invoke: Invoker,
}

/// Erases `f`'s types; what `register!` stores. Not public API.
#[doc(hidden)]
pub fn describe<F, A, R>(_item: F, f: fn(A) -> R) -> Function
where
    F: Fn(A) -> R + 'static,
    A: Payload,
    R: Payload,
{
    Function {
        item: TypeId::of::<F>(),
        address: f as usize,
        signature: TypeId::of::<fn(A) -> R>(),
        signature_name: type_name::<fn(A) -> R>(),
        invoke: Box::new(move |arg_bytes, out| {
            let start = out.len();
            // Every step below runs user code — the argument's `Deserialize`, the function, the
            // `Drop` of its argument, the result's `Serialize` and `Drop` — on a thread that
            // serves other calls after this one (a pool's worker process, a cluster worker). A
            // panic in any of them fails this call alone, as `Panicked` with its message and
            // location; only a panic *while unwinding* (a second panic) can still abort.
            let result = crate::panic::catch(|| {
                // Every byte must belong to the argument: bytes left over mean they were written
                // for another type (a foreign or forged entry) and the value would be misread.
                let arg: A = match postcard::take_from_bytes(arg_bytes) {
                    Ok((arg, [])) => arg,
                    Ok((_, rest)) => {
                        return Err(InvokeError::BadArgument(format!(
                            "cannot decode a `{}` from {} bytes: {} bytes are left over",
                            type_name::<A>(),
                            arg_bytes.len(),
                            rest.len()
                        )))
                    }
                    Err(e) => {
                        return Err(InvokeError::BadArgument(format!(
                            "cannot decode a `{}` from {} bytes: {e}{}",
                            type_name::<A>(),
                            arg_bytes.len(),
                            crate::wire::postcard_hint(&e)
                        )))
                    }
                };
                let value = f(arg);
                postcard::serialize_with_flavor(&value, crate::wire::AppendTo(&mut *out)).map_err(
                    |e| {
                        InvokeError::Unserializable(format!(
                            "the `{}` it returned cannot be serialized: {e}{}",
                            type_name::<R>(),
                            crate::wire::postcard_hint(&e)
                        ))
                    },
                )?;
                drop(value);
                Ok(())
            })
            .unwrap_or_else(|panic| Err(InvokeError::Panicked(panic)));
            if result.is_err() {
                out.truncate(start);
            }
            result
        }),
    }
}

/// Why [`invoke`] produced no result bytes. Each case is distinct so the caller can tell the
/// user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvokeError {
    /// No function is registered under this name in this binary.
    #[error("no function named `{0}` is registered in this binary (add it to `futurepool::register!`, and run the same build everywhere)")]
    UnknownFunction(String),
    /// The argument bytes do not decode as the function's argument type.
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// The function's return value could not be serialized.
    #[error("unserializable result: {0}")]
    Unserializable(String),
    /// The function panicked.
    #[error("panicked: {0}")]
    Panicked(Panic),
}

struct Registry {
    /// Sorted by name, so an index means the same function in every process with the same
    /// [`build_id`].
    functions: Vec<(&'static str, Function)>,
    by_name: HashMap<&'static str, u32>,
    by_item: HashMap<TypeId, u32>,
    by_address: HashMap<(usize, TypeId), u32>,
    build_id: u64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut functions: Vec<(&'static str, Function)> = REGISTRATIONS
            .iter()
            .map(|r| (r.name, (r.describe)()))
            .collect();
        functions.sort_by(|a, b| a.0.cmp(b.0));
        // `register!(f, f)` registers the same function twice under one name: keep one.
        functions.dedup_by(|a, b| a.0 == b.0);
        let mut by_name = HashMap::with_capacity(functions.len());
        let mut by_address = HashMap::with_capacity(functions.len());
        let mut by_item = HashMap::with_capacity(functions.len());
        let mut build_id = Fnv1a::new();
        build_id.write(env!("CARGO_PKG_VERSION").as_bytes());
        for (index, (name, function)) in functions.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 4 billion registered functions");
            by_name.insert(*name, index);
            by_item.entry(function.item).or_insert(index);
            by_address
                .entry((function.address, function.signature))
                .or_insert(index);
            build_id.write(name.as_bytes());
            build_id.write(&[0]);
            build_id.write(function.signature_name.as_bytes());
            build_id.write(&[0]);
        }
        Registry {
            functions,
            by_name,
            by_item,
            by_address,
            build_id: build_id.finish(),
        }
    })
}

fn not_registered(what: &str, pointer: bool) -> Reason {
    let hint = if pointer {
        " (it was passed as a `fn` pointer, which an optimized build may not map back to the \
         registered function: pass the function itself, e.g. `submit(my_fn, arg)`, or mark it \
         `#[inline(never)]`)"
    } else {
        ""
    };
    // A closure's type name ends in `{{closure}}`; `register!` takes only named functions.
    let what_to_do = if what.contains("{{closure}}") {
        "a closure cannot be registered: make it a named `fn(A) -> R`, pass what it captured in \
         its argument (a tuple for several values), and add that function to a \
         `futurepool::register!(...)` list (any module of the binary)"
    } else {
        "add it to a `futurepool::register!(...)` list (any module of the binary) so worker \
         processes can find it by name"
    };
    Reason::new(format!(
        "the function `{what}` that was submitted is not registered: {what_to_do}{hint}"
    ))
}

/// The stable name the function `f` was registered under, exactly (by its item type; a `fn`
/// pointer falls back to its address, best effort). The cluster's entry point.
///
/// # Errors
///
/// A [`Reason`] naming `f`'s type and telling the user to add `futurepool::register!` when `f`
/// is not found.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn name_of_item<F, A, R>(f: F) -> Result<&'static str, Reason>
where
    F: Fn(A) -> R + 'static,
    A: 'static,
    R: 'static,
{
    let index = index_of_item(f)?;
    Ok(registry().functions[index as usize].0)
}

/// The position of `f` in this binary's registry, which is the same in every process with the
/// same [`build_id`]: a cheaper identifier than the name for a local worker process. By address
/// and signature; see the module docs.
///
/// # Errors
///
/// A [`Reason`] naming `f`'s type and telling the user to add `futurepool::register!`.
pub(crate) fn index_of<A: 'static, R: 'static>(f: fn(A) -> R) -> Result<u32, Reason> {
    registry()
        .by_address
        .get(&(f as usize, TypeId::of::<fn(A) -> R>()))
        .copied()
        .ok_or_else(|| not_registered(type_name::<fn(A) -> R>(), true))
}

/// [`index_of`] for the function itself: exact, by its item type. A `fn` pointer (whose type is
/// shared by every function of its signature) falls back to the address.
///
/// # Errors
///
/// As [`name_of_item`].
pub(crate) fn index_of_item<F, A, R>(f: F) -> Result<u32, Reason>
where
    F: Fn(A) -> R + 'static,
    A: 'static,
    R: 'static,
{
    if let Some(&index) = registry().by_item.get(&TypeId::of::<F>()) {
        return Ok(index);
    }
    match (&f as &dyn std::any::Any).downcast_ref::<fn(A) -> R>() {
        Some(pointer) => index_of(*pointer),
        None => Err(not_registered(type_name::<F>(), false)),
    }
}

/// Runs the function registered as `name` on the postcard bytes of its argument and returns the
/// postcard bytes of what it returned.
///
/// # Errors
///
/// A distinct [`InvokeError`] for an unknown name, argument bytes that do not decode, a return
/// value that does not serialize, and a panic (with its message and location).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // The cluster's entry point; the process pool uses `invoke_index`.
pub(crate) fn invoke(name: &str, arg: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let index = *registry()
        .by_name
        .get(name)
        .ok_or_else(|| InvokeError::UnknownFunction(name.to_string()))?;
    invoke_index(index, arg)
}

/// The registry index of the function registered as `name` (see [`index_of`]): how the
/// cluster's process-mode workers hand a delivered task to their local process pool.
#[cfg(all(feature = "cluster", target_os = "linux"))]
pub(crate) fn index_of_name(name: &str) -> Option<u32> {
    registry().by_name.get(name).copied()
}

/// [`invoke`] by registry index (see [`index_of`]).
///
/// # Errors
///
/// As [`invoke`]; an index out of range is an unknown function.
pub(crate) fn invoke_index(index: u32, arg: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let mut out = Vec::new();
    invoke_index_into(index, arg, &mut out)?;
    Ok(out)
}

/// [`invoke_index`], appending the result's bytes to `out` (left as it was on error), so a
/// worker can answer a whole chunk from one buffer.
///
/// # Errors
///
/// As [`invoke`].
pub(crate) fn invoke_index_into(
    index: u32,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), InvokeError> {
    let (_, function) = registry()
        .functions
        .get(index as usize)
        .ok_or_else(|| InvokeError::UnknownFunction(format!("#{index}")))?;
    (function.invoke)(arg, out)
}

/// A fingerprint of this binary's registry (futurepool's version, every registered name and
/// signature). Two processes that agree on it agree on every name and index.
pub(crate) fn build_id() -> u64 {
    registry().build_id
}

/// The signature (`fn(A) -> R`, with full type paths) of the function registered as `name`, and a
/// short fingerprint of it (16 hex digits). The cluster sends the fingerprint with each task, so a
/// worker whose function of that name has other argument, result or error types refuses the task
/// instead of decoding its bytes as something else. Type names come from
/// `std::any::type_name`, so both sides must be built by the same compiler version.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn signature_of(name: &str) -> Option<(&'static str, &'static str)> {
    static SIGNATURES: OnceLock<HashMap<&'static str, (String, &'static str)>> = OnceLock::new();
    let signatures = SIGNATURES.get_or_init(|| {
        registry()
            .functions
            .iter()
            .map(|(name, function)| {
                let mut hash = Fnv1a::new();
                hash.write(function.signature_name.as_bytes());
                (
                    *name,
                    (format!("{:016x}", hash.finish()), function.signature_name),
                )
            })
            .collect()
    });
    signatures
        .get(name)
        .map(|(fingerprint, signature)| (fingerprint.as_str(), *signature))
}

/// The name of the function at registry index `index` (see [`index_of`]), for messages.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // The process pool's worker names its panics.
pub(crate) fn name_at(index: u32) -> Option<&'static str> {
    registry()
        .functions
        .get(index as usize)
        .map(|(name, _)| *name)
}

/// FNV-1a, 64 bits: tiny, and stable across Rust releases (std's hashers promise neither).
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Registers plain functions so process pools and clusters can run them by name.
///
/// Each function must have the shape `fn(A) -> R` (use a tuple for several arguments), where the
/// argument and the return value are serde-serializable ([`Payload`](crate::Payload)). A fallible
/// function returns `Result<R, E>`; submit it with `submit_fallible` to get `E` as the task's own
/// error. Each is registered under `module::path::name`, which must be the same in the submitting
/// and the executing binary (a worker process re-runs the same executable, so it always is).
///
/// Put the `register!` anywhere in the binary (or in a library it links): registrations are
/// collected at link time, so no list needs to be kept in `main`.
///
/// # Examples
///
/// ```
/// fn square(n: u64) -> u64 {
///     n * n
/// }
/// fn parse(text: String) -> Result<u32, String> {
///     text.parse().map_err(|_| format!("not a number: {text}"))
/// }
///
/// futurepool::register!(square, parse);
/// ```
#[macro_export]
macro_rules! register {
    ($($function:path),+ $(,)?) => {
        $(
            const _: () = {
                #[$crate::__private::linkme::distributed_slice($crate::__private::REGISTRATIONS)]
                #[linkme(crate = $crate::__private::linkme)]
                static REGISTRATION: $crate::__private::Registration = $crate::__private::Registration {
                    name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!($function)),
                    describe: || $crate::__private::describe($function, $function as fn(_) -> _),
                };
            };
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(n: u64) -> u64 {
        n * 2
    }
    fn checked_half(n: u64) -> Result<u64, String> {
        if n.is_multiple_of(2) {
            Ok(n / 2)
        } else {
            Err(format!("{n} is odd"))
        }
    }
    fn explode(_: ()) -> u8 {
        panic!("kaboom")
    }
    fn not_registered_fn(n: u64) -> u64 {
        n
    }
    /// A value whose serialization always fails, like a map with non-string keys in JSON.
    #[derive(serde::Deserialize)]
    struct Refuses;
    impl serde::Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused on purpose"))
        }
    }
    fn failing_result(_: ()) -> Refuses {
        Refuses
    }

    /// Panics when the worker side drops it: after the function returned and it was encoded.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct DropBomb;
    impl Drop for DropBomb {
        fn drop(&mut self) {
            panic!("dropped a bomb");
        }
    }
    fn returns_a_drop_bomb(_: ()) -> DropBomb {
        DropBomb
    }
    /// Encodes as a `u8`, but its `Serialize` panics.
    #[derive(serde::Deserialize)]
    struct PanicsWhenEncoded;
    impl serde::Serialize for PanicsWhenEncoded {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("will not encode")
        }
    }
    fn unencodable(_: ()) -> PanicsWhenEncoded {
        PanicsWhenEncoded
    }

    crate::register!(
        double,
        checked_half,
        explode,
        failing_result,
        returns_a_drop_bomb,
        unencodable
    );

    #[test]
    fn a_panic_in_serialize_or_drop_of_the_result_fails_only_that_call() {
        for (function, message) in [
            (
                index_of_item(returns_a_drop_bomb).unwrap(),
                "dropped a bomb",
            ),
            (index_of_item(unencodable).unwrap(), "will not encode"),
        ] {
            let mut out = vec![1, 2, 3];
            match invoke_index_into(function, &[], &mut out) {
                Err(InvokeError::Panicked(panic)) => assert_eq!(panic.message(), message),
                other => panic!("expected a panic, got {other:?}"),
            }
            assert_eq!(out, [1, 2, 3], "nothing of the failed call is left behind");
        }
    }

    #[test]
    fn names_are_module_path_and_function() {
        assert_eq!(
            name_of_item(double),
            Ok("futurepool::registry::tests::double")
        );
    }

    #[test]
    fn invoke_round_trips_plain_and_fallible_results() {
        let name = name_of_item(double).unwrap();
        let out = invoke(name, &postcard::to_allocvec(&21u64).unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<u64>(&out).unwrap(), 42);

        let name = name_of_item(checked_half).unwrap();
        let out = invoke(name, &postcard::to_allocvec(&3u64).unwrap()).unwrap();
        assert_eq!(
            postcard::from_bytes::<Result<u64, String>>(&out).unwrap(),
            Err("3 is odd".to_string())
        );
    }

    #[test]
    fn unregistered_function_is_a_clear_error() {
        let reason = name_of_item(not_registered_fn as fn(u64) -> u64).unwrap_err();
        assert!(reason.as_str().contains("fn(u64) -> u64"), "{reason}");
        assert!(
            reason.as_str().contains("futurepool::register!"),
            "{reason}"
        );
    }

    #[test]
    fn each_invoke_failure_is_distinct() {
        assert!(matches!(
            invoke("no::such::function", &[]),
            Err(InvokeError::UnknownFunction(_))
        ));
        let double = name_of_item(double).unwrap();
        assert!(matches!(
            invoke(double, &[]),
            Err(InvokeError::BadArgument(_))
        ));
        let explode = name_of_item(explode).unwrap();
        match invoke(explode, &[]) {
            Err(InvokeError::Panicked(panic)) => {
                assert_eq!(panic.message(), "kaboom");
                assert!(panic.location().unwrap().contains("registry"));
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        let failing = name_of_item(failing_result).unwrap();
        assert!(matches!(
            invoke(failing, &[]),
            Err(InvokeError::Unserializable(_))
        ));
    }

    #[test]
    fn build_id_is_stable_within_a_process() {
        assert_eq!(build_id(), build_id());
        let index = index_of_item(double).unwrap();
        assert_eq!(
            registry().functions[index as usize].0,
            name_of_item(double).unwrap()
        );
    }

    #[test]
    fn items_are_found_by_type_and_pointers_by_address() {
        assert_eq!(
            name_of_item(double),
            Ok("futurepool::registry::tests::double")
        );
        let pointer: fn(u64) -> u64 = double;
        assert_eq!(index_of_item(pointer), index_of(pointer));
    }
}
