//! [`Target`]: what a process, a pool task or a `starmap` may run — a function of one
//! argument, or of two to eight arguments spread from a tuple.

use std::marker::PhantomData;

/// A function a process or pool can run in another process: `F: Fn(A) -> R` (marker
/// [`One<A>`], `Args = A`) or `F: Fn(A1, .., An) -> R` for n = 2 to 8 (marker
/// [`Spread<(A1, .., An)>`], `Args = (A1, .., An)`): Python's
/// `Process(target=f, args=(a, b))`.
///
/// Implemented for every such function type; there is nothing to implement by hand. The
/// marker type `M` only lets one function type implement the trait once per arity; the
/// compiler infers it from the function, so a caller never writes it. A target is a fn
/// item, a fn pointer, or a closure that captures nothing — a closure's argument types
/// must be written out (`|a: u32, b: u32| a + b`), since nothing else tells the compiler
/// how many arguments it takes. `map` and `imap` stay one-argument (`Fn(A) -> R`).
///
/// ```
/// use flotilla_process::{StartMethod, get_context};
///
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// fn add_pair((a, b): (u32, u32)) -> u32 {
///     a + b
/// }
///
/// let ctx = get_context(Some(StartMethod::Spawn));
/// // Two arguments, spread from the tuple:
/// assert_eq!(ctx.process(add, (2, 3)).start()?.join()?, 5);
/// // One argument that is a tuple: the one-argument form, as before.
/// assert_eq!(ctx.process(add_pair, (2, 3)).start()?.join()?, 5);
/// # Ok::<(), flotilla_process::Error>(())
/// ```
pub trait Target<M>: 'static {
    /// What the caller passes: the one argument, or the tuple of the arguments.
    type Args: 'static;
    /// What the function returns.
    type Output: 'static;
    /// The fn pointer type of this shape (`fn(A) -> R`, `fn(A1, A2) -> R`, ...): a
    /// target of that type travels as its place in the binary.
    #[doc(hidden)]
    type Pointer: 'static;

    /// Calls the function with `args`, spread when there are several.
    fn call(&self, args: Self::Args) -> Self::Output;
}

/// The marker of a one-argument [`Target`] `Fn(A) -> R`.
#[derive(Debug)]
pub struct One<A>(PhantomData<fn(A)>);

/// The marker of a [`Target`] of several arguments, `Fn(A1, .., An) -> R`, given as the
/// tuple `T = (A1, .., An)`.
#[derive(Debug)]
pub struct Spread<T>(PhantomData<fn(T)>);

impl<F, A, R> Target<One<A>> for F
where
    F: Fn(A) -> R + 'static,
    A: 'static,
    R: 'static,
{
    type Args = A;
    type Output = R;
    type Pointer = fn(A) -> R;

    fn call(&self, args: A) -> R {
        self(args)
    }
}

macro_rules! spread {
    ($($a:ident),+) => {
        impl<F, $($a,)+ R> Target<Spread<($($a,)+)>> for F
        where
            F: Fn($($a),+) -> R + 'static,
            $($a: 'static,)+
            R: 'static,
        {
            type Args = ($($a,)+);
            type Output = R;
            type Pointer = fn($($a),+) -> R;

            #[allow(non_snake_case, reason = "the arguments are named after their types")]
            fn call(&self, ($($a,)+): ($($a,)+)) -> R {
                self($($a),+)
            }
        }
    };
}

spread!(A1, A2);
spread!(A1, A2, A3);
spread!(A1, A2, A3, A4);
spread!(A1, A2, A3, A4, A5);
spread!(A1, A2, A3, A4, A5, A6);
spread!(A1, A2, A3, A4, A5, A6, A7);
spread!(A1, A2, A3, A4, A5, A6, A7, A8);
