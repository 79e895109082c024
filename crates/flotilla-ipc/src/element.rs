//! The plain-data types a shared [`Value`](crate::Value) or [`Array`](crate::Array) may
//! hold — the Rust types behind Python's `ctypes` typecodes — and how each is read and
//! written in shared memory: through the atomic type of the same size, never through a
//! plain reference, so a write by another process is never undefined behaviour here.

use std::fmt::Debug;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering,
};

pub(crate) mod sealed {
    use std::sync::atomic::Ordering;

    /// A std atomic integer, by its operations.
    pub trait Atomic: Sync + 'static {
        /// The integer it holds.
        type Repr: Copy;
        fn load(&self, order: Ordering) -> Self::Repr;
        fn store(&self, value: Self::Repr, order: Ordering);
        fn swap(&self, value: Self::Repr, order: Ordering) -> Self::Repr;
        fn fetch_add(&self, value: Self::Repr, order: Ordering) -> Self::Repr;
        fn fetch_sub(&self, value: Self::Repr, order: Ordering) -> Self::Repr;
        fn compare_exchange(
            &self,
            current: Self::Repr,
            new: Self::Repr,
            success: Ordering,
            failure: Ordering,
        ) -> Result<Self::Repr, Self::Repr>;
    }

    /// How an element is stored: as the integer of an atomic type of its size.
    pub trait Element: Copy + 'static {
        /// The atomic type of the same size and alignment.
        type Atomic: Atomic;
        /// A tag that travels with a shared value, so a `Value<u32>` is not received as
        /// a `Value<f32>`.
        const CODE: u8;
        fn into_repr(self) -> <Self::Atomic as Atomic>::Repr;
        /// Any bit pattern another process wrote must give a valid value.
        fn from_repr(repr: <Self::Atomic as Atomic>::Repr) -> Self;
    }

    /// An element that is its own atomic representation.
    pub trait Integer: Element<Atomic: Atomic<Repr = Self>> {}
}

/// A type that a shared [`Value`](crate::Value) or [`Array`](crate::Array) can hold:
/// `i8` to `i64`, `u8` to `u64`, `isize`, `usize`, `f32`, `f64` and `bool` (Python's
/// `b h i q B H I Q n N f d ?` typecodes). Sealed: every bit pattern another process may
/// write must be readable as one, which only these types guarantee here (a `bool` is
/// stored as a byte, read as `byte != 0`).
///
/// ```
/// fn zero<T: flotilla_ipc::Element>() -> flotilla_ipc::Value<T> {
///     flotilla_ipc::Value::new(T::default()).unwrap()
/// }
/// assert_eq!(zero::<f64>().get().unwrap(), 0.0);
/// ```
pub trait Element: sealed::Element + Debug + Default + PartialEq + Send + Sync {}

/// An integer [`Element`]: a [`Value`](crate::Value) of one also offers atomic
/// operations (`fetch_add`, `compare_exchange`, ...), which need no lock.
///
/// ```
/// let counter = flotilla_ipc::Value::new(0u64).unwrap();
/// counter.fetch_add(2);
/// assert_eq!(counter.load(), 2);
/// ```
pub trait Integer: Element + sealed::Integer {}

macro_rules! atomic {
    ($($atomic:ty => $int:ty),* $(,)?) => {$(
        impl sealed::Atomic for $atomic {
            type Repr = $int;
            #[inline]
            fn load(&self, order: Ordering) -> $int {
                <$atomic>::load(self, order)
            }
            #[inline]
            fn store(&self, value: $int, order: Ordering) {
                <$atomic>::store(self, value, order)
            }
            #[inline]
            fn swap(&self, value: $int, order: Ordering) -> $int {
                <$atomic>::swap(self, value, order)
            }
            #[inline]
            fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                <$atomic>::fetch_add(self, value, order)
            }
            #[inline]
            fn fetch_sub(&self, value: $int, order: Ordering) -> $int {
                <$atomic>::fetch_sub(self, value, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                <$atomic>::compare_exchange(self, current, new, success, failure)
            }
        }
    )*};
}

atomic! {
    AtomicI8 => i8, AtomicI16 => i16, AtomicI32 => i32, AtomicI64 => i64, AtomicIsize => isize,
    AtomicU8 => u8, AtomicU16 => u16, AtomicU32 => u32, AtomicU64 => u64, AtomicUsize => usize,
}

macro_rules! integer {
    ($($int:ty => $atomic:ty, $code:literal);* $(;)?) => {$(
        impl sealed::Element for $int {
            type Atomic = $atomic;
            const CODE: u8 = $code;
            #[inline]
            fn into_repr(self) -> $int {
                self
            }
            #[inline]
            fn from_repr(repr: $int) -> $int {
                repr
            }
        }
        impl sealed::Integer for $int {}
        impl Element for $int {}
        impl Integer for $int {}
    )*};
}

integer! {
    i8 => AtomicI8, 1; i16 => AtomicI16, 2; i32 => AtomicI32, 3; i64 => AtomicI64, 4;
    isize => AtomicIsize, 5;
    u8 => AtomicU8, 6; u16 => AtomicU16, 7; u32 => AtomicU32, 8; u64 => AtomicU64, 9;
    usize => AtomicUsize, 10;
}

impl sealed::Element for f32 {
    type Atomic = AtomicU32;
    const CODE: u8 = 11;
    #[inline]
    fn into_repr(self) -> u32 {
        self.to_bits()
    }
    #[inline]
    fn from_repr(repr: u32) -> f32 {
        f32::from_bits(repr)
    }
}
impl Element for f32 {}

impl sealed::Element for f64 {
    type Atomic = AtomicU64;
    const CODE: u8 = 12;
    #[inline]
    fn into_repr(self) -> u64 {
        self.to_bits()
    }
    #[inline]
    fn from_repr(repr: u64) -> f64 {
        f64::from_bits(repr)
    }
}
impl Element for f64 {}

impl sealed::Element for bool {
    type Atomic = AtomicU8;
    const CODE: u8 = 13;
    #[inline]
    fn into_repr(self) -> u8 {
        u8::from(self)
    }
    #[inline]
    fn from_repr(repr: u8) -> bool {
        repr != 0
    }
}
impl Element for bool {}
