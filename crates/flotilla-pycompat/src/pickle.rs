//! Pickles without code: a reader that accepts only plain data (and a short allow-list of
//! classes), and the bridge between pickles and serde values.
//!
//! # What the reader accepts
//!
//! Every opcode of pickle protocols 0 to 5 that builds plain data: `None`, booleans,
//! integers of any size, floats, `str`, `bytes` (and `bytearray`), lists, tuples, dicts,
//! sets and frozensets, with the memo (`PUT`/`GET`/`MEMOIZE`) and `FRAME`s. A class is
//! named only by `GLOBAL` / `STACK_GLOBAL`, and the name is looked up in a fixed
//! allow-list ([`PyClass`]): the manager's `Token`, the builtin exceptions, `queue.Empty`
//! and `queue.Full`, plus `set`, `frozenset`, `list`, `bytearray` and `_codecs.encode`
//! as old protocols (and a manager's dict views) spell plain data. An allow-listed class is never *called*: `REDUCE`,
//! `NEWOBJ` and `BUILD` on it only record its arguments and state in a [`PyObject`].
//! Any other name is refused with [`UnpickleError::Refused`] before anything else
//! happens, and the opcodes that exist only to run code or reach outside the pickle
//! (`INST`, `OBJ`, `PERSID`, `EXT*`, out-of-band buffers) are refused by name.
//!
//! # Limits
//!
//! Lengths are checked against the bytes present before anything is allocated; nesting
//! deeper than [`MAX_DEPTH`] and self-referencing structures are refused; a pickle whose
//! shared references (`GET` of one object many times) would expand into more than
//! [`MAX_EXPANDED`] units (values plus bytes of text) is refused, so a small pickle
//! cannot grow into a huge value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use num_bigint::BigInt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::{HashableValue, SerOptions, Value};

/// The deepest nesting of containers accepted.
pub const MAX_DEPTH: usize = 200;
/// The most units (one per value, plus one per byte of `str`/`bytes`) a decoded pickle
/// may expand into, whatever its size.
pub const MAX_EXPANDED: usize = 64 << 20;

/// The longest decimal integer (protocol 0's `INT`/`LONG`) read, as CPython's default
/// `sys.get_int_max_str_digits()`.
const MAX_INT_DIGITS: usize = 4300;

/// A Python value read from a pickle: plain data, or an instance of an allow-listed
/// class.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in an `i64`.
    Int(i64),
    /// A larger `int`.
    BigInt(BigInt),
    /// A `float`.
    Float(f64),
    /// `bytes` (and `bytearray`).
    Bytes(Vec<u8>),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// A `set`.
    Set(Vec<PyValue>),
    /// A `frozenset`.
    FrozenSet(Vec<PyValue>),
    /// A `dict`, in the pickle's order.
    Dict(Vec<(PyValue, PyValue)>),
    /// An instance of an allow-listed class (a manager `Token`, an exception).
    Object(PyObject),
}

/// An instance of an allow-listed class, as the pickle describes it; nothing was run
/// to make it.
#[derive(Debug, Clone, PartialEq)]
pub struct PyObject {
    /// Its class.
    pub class: PyClass,
    /// The arguments the pickle would call the class with (an exception's `args`).
    pub args: Vec<PyValue>,
    /// The state the pickle would set on it (`BUILD`): a `Token`'s
    /// `(typeid, address, id)`, an exception's `__dict__`.
    pub state: Option<Box<PyValue>>,
}

/// A class on the allow-list, by its canonical module and name (`_queue.Empty` reads
/// as `queue.Empty`, Python 2's `exceptions` and `__builtin__` as `builtins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyClass {
    /// The module, such as `builtins`.
    pub module: &'static str,
    /// The name, such as `KeyError`.
    pub name: &'static str,
}

impl fmt::Display for PyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// The builtin exception classes a pickle may name.
const BUILTIN_EXCEPTIONS: &[&str] = &[
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "EOFError",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "ImportError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "RuntimeError",
    "StopIteration",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
];

/// What an allow-listed global may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A class whose instances are recorded as [`PyObject`]s.
    Class(PyClass),
    /// `set(iterable)` / `frozenset(iterable)`, as protocols 0–3 spell sets.
    Set { frozen: bool },
    /// `list(iterable)`, as a manager sends a dict's `keys()` view.
    List,
    /// `bytearray(bytes)`.
    ByteArray,
    /// `_codecs.encode(text, 'latin1')`, as protocol 2 spells `bytes`.
    Encode,
}

/// Looks a global up in the allow-list.
fn resolve(module: &str, name: &str) -> Option<Kind> {
    let module = match module {
        "__builtin__" | "exceptions" => "builtins",
        "_queue" | "Queue" => "queue",
        m => m,
    };
    let class =
        |module: &'static str, name: &'static str| Some(Kind::Class(PyClass { module, name }));
    match (module, name) {
        ("builtins", "set") => Some(Kind::Set { frozen: false }),
        ("builtins", "frozenset") => Some(Kind::Set { frozen: true }),
        ("builtins", "list") => Some(Kind::List),
        ("builtins", "bytearray") => Some(Kind::ByteArray),
        ("_codecs", "encode") => Some(Kind::Encode),
        ("multiprocessing.managers", "Token") => class("multiprocessing.managers", "Token"),
        ("multiprocessing.managers", "RemoteError") => {
            class("multiprocessing.managers", "RemoteError")
        }
        ("multiprocessing", "AuthenticationError")
        | ("multiprocessing.context", "AuthenticationError") => {
            class("multiprocessing", "AuthenticationError")
        }
        ("queue", "Empty") => class("queue", "Empty"),
        ("queue", "Full") => class("queue", "Full"),
        ("builtins", n) => BUILTIN_EXCEPTIONS
            .iter()
            .find(|e| **e == n)
            .and_then(|e| class("builtins", e)),
        _ => None,
    }
}

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UnpickleError {
    /// The pickle names a class or function outside the allow-list; nothing was run.
    #[error(
        "refused to unpickle: the pickle names `{module}.{name}`, which is not on the \
         allow-list of plain data, the manager's Token and the builtin exceptions \
         (unpickling never runs code)"
    )]
    Refused {
        /// The module it names.
        module: String,
        /// The name.
        name: String,
    },
    /// The pickle uses an opcode that exists only to run code or reach outside it.
    #[error("refused to unpickle: opcode {opcode} at byte {offset} is not plain data")]
    Forbidden {
        /// The opcode's name.
        opcode: &'static str,
        /// Where it is.
        offset: usize,
    },
    /// The bytes are not a well-formed pickle.
    #[error("not a valid pickle at byte {offset}: {reason}")]
    Malformed {
        /// Where the reader gave up.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// The value nests deeper than [`MAX_DEPTH`], refers to itself, or expands past
    /// [`MAX_EXPANDED`].
    #[error("refused to unpickle: {0}")]
    TooLarge(&'static str),
    /// The value was read but is not the type asked for (or holds an object where plain
    /// data was expected).
    #[error("the pickled value does not fit the type asked for: {0}")]
    Type(String),
}

/// A value that could not be written as a pickle.
#[derive(Debug, thiserror::Error)]
#[error("cannot pickle the value: {0}")]
pub struct PickleError(String);

/// Writes `value` as a pickle (protocol 3), for any serde value; Python reads it with
/// `pickle.loads` (Rust tuples become tuples, `Vec`s lists, maps and structs dicts).
///
/// ```
/// let bytes = flotilla_pycompat::pickle::to_pickle(&("hello", 42)).unwrap();
/// let back: (String, i32) = flotilla_pycompat::pickle::from_pickle(&bytes).unwrap();
/// assert_eq!(back, ("hello".to_owned(), 42));
/// ```
pub fn to_pickle<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PickleError> {
    serde_pickle::to_vec(&value, SerOptions::new()).map_err(|e| PickleError(e.to_string()))
}

/// Reads a pickle of any protocol into a serde value, running nothing (see the module
/// docs for what is accepted).
///
/// ```
/// use flotilla_pycompat::pickle::{UnpickleError, from_pickle};
///
/// // pickle.dumps([1, 'a'], protocol=4)
/// let list = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.";
/// assert_eq!(from_pickle::<(i32, String)>(list).unwrap(), (1, "a".to_owned()));
/// // pickle.dumps(os.system) names a function: refused, never called.
/// let evil = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.";
/// assert!(matches!(from_pickle::<()>(evil), Err(UnpickleError::Refused { .. })));
/// ```
pub fn from_pickle<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, UnpickleError> {
    from_value(decode(bytes)?)
}

/// Converts a decoded value to a serde type.
pub fn from_value<T: DeserializeOwned>(value: PyValue) -> Result<T, UnpickleError> {
    serde_pickle::from_value(value.into_serde()?).map_err(|e| UnpickleError::Type(e.to_string()))
}

/// Converts a serde value to a value for [`encode_value`] (used to build requests).
pub(crate) fn to_serde_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, PickleError> {
    serde_pickle::to_value(&value).map_err(|e| PickleError(e.to_string()))
}

/// Writes a serde-pickle value as a pickle (protocol 3).
pub(crate) fn encode_value(value: &Value) -> Result<Vec<u8>, PickleError> {
    serde_pickle::value_to_vec(value, SerOptions::new()).map_err(|e| PickleError(e.to_string()))
}

impl PyValue {
    /// The plain data as a serde-pickle value; an object is an error.
    fn into_serde(self) -> Result<Value, UnpickleError> {
        let all = |v: Vec<PyValue>| {
            v.into_iter()
                .map(PyValue::into_serde)
                .collect::<Result<Vec<_>, _>>()
        };
        let set = |v: Vec<PyValue>| -> Result<BTreeSet<HashableValue>, UnpickleError> {
            v.into_iter()
                .map(|x| x.into_serde().and_then(hashable))
                .collect()
        };
        Ok(match self {
            PyValue::None => Value::None,
            PyValue::Bool(b) => Value::Bool(b),
            PyValue::Int(i) => Value::I64(i),
            PyValue::BigInt(i) => Value::Int(i),
            PyValue::Float(f) => Value::F64(f),
            PyValue::Bytes(b) => Value::Bytes(b),
            PyValue::Str(s) => Value::String(s),
            PyValue::List(v) => Value::List(all(v)?),
            PyValue::Tuple(v) => Value::Tuple(all(v)?),
            PyValue::Set(v) => Value::Set(set(v)?),
            PyValue::FrozenSet(v) => Value::FrozenSet(set(v)?),
            PyValue::Dict(items) => Value::Dict(
                items
                    .into_iter()
                    .map(|(k, v)| Ok((k.into_serde().and_then(hashable)?, v.into_serde()?)))
                    .collect::<Result<BTreeMap<_, _>, UnpickleError>>()?,
            ),
            PyValue::Object(o) => {
                return Err(UnpickleError::Type(format!(
                    "an instance of {} is not plain data",
                    o.class
                )));
            }
        })
    }

    /// The text, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn hashable(v: Value) -> Result<HashableValue, UnpickleError> {
    v.into_hashable()
        .map_err(|_| UnpickleError::Type("a dict key or set item is not hashable".to_owned()))
}

/// A node of the decoding arena: containers hold ids, so the memo and the stack can share
/// an object and see it filled in later (`EMPTY_LIST; MEMOIZE; ...; APPENDS`).
#[derive(Debug)]
enum Node {
    Leaf(PyValue),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Set(Vec<usize>, bool),
    Dict(Vec<(usize, usize)>),
    Global(Kind),
    Object {
        class: PyClass,
        args: Vec<usize>,
        state: Option<usize>,
    },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the current opcode began, for errors.
    at: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u64, usize>,
}

/// Reads a pickle of any protocol into a [`PyValue`], running nothing.
///
/// ```
/// use flotilla_pycompat::pickle::{PyValue, decode};
///
/// // pickle.dumps(KeyError('missing'), protocol=2)
/// let err = b"\x80\x02cexceptions\nKeyError\nq\x00X\x07\x00\x00\x00missingq\x01\x85q\x02Rq\x03.";
/// let PyValue::Object(obj) = decode(err).unwrap() else { panic!() };
/// assert_eq!(obj.class.to_string(), "builtins.KeyError");
/// assert_eq!(obj.args, vec![PyValue::Str("missing".into())]);
/// ```
pub fn decode(bytes: &[u8]) -> Result<PyValue, UnpickleError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        at: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let top = r.run()?;
    let mut budget = MAX_EXPANDED;
    r.build(top, 0, &mut budget)
}

impl Reader<'_> {
    fn bad<T>(&self, reason: impl Into<String>) -> Result<T, UnpickleError> {
        Err(UnpickleError::Malformed {
            offset: self.at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: u64) -> Result<&[u8], UnpickleError> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return self.bad(format!("needs {n} more bytes, {left} left"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn u8(&mut self) -> Result<u8, UnpickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], UnpickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<&[u8], UnpickleError> {
        let rest = &self.bytes[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.bad("a text argument has no end of line");
        };
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_str(&mut self) -> Result<String, UnpickleError> {
        let line = self.line()?.to_vec();
        String::from_utf8(line).or_else(|_| self.bad("a text argument is not UTF-8"))
    }

    fn push_node(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn push(&mut self, v: PyValue) {
        self.push_node(Node::Leaf(v));
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<usize, UnpickleError> {
        if self.stack.len() <= self.floor() {
            return self.bad("stack underflow");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<usize, UnpickleError> {
        if self.stack.len() <= self.floor() {
            return self.bad("stack underflow");
        }
        Ok(*self.stack.last().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<usize>, UnpickleError> {
        let Some(mark) = self.marks.pop() else {
            return self.bad("no MARK to pop to");
        };
        Ok(self.stack.split_off(mark))
    }

    fn text(&mut self, n: u64) -> Result<(), UnpickleError> {
        let bytes = self.take(n)?.to_vec();
        match String::from_utf8(bytes) {
            Ok(s) => {
                self.push(PyValue::Str(s));
                Ok(())
            }
            Err(_) => self.bad("a str is not valid UTF-8"),
        }
    }

    fn bytes_of(&mut self, n: u64) -> Result<(), UnpickleError> {
        let b = self.take(n)?.to_vec();
        self.push(PyValue::Bytes(b));
        Ok(())
    }

    /// A Python 2 `str`: read as `str` when ASCII, as Python 3 does by default.
    fn py2_str(&mut self, n: u64) -> Result<(), UnpickleError> {
        let b = self.take(n)?.to_vec();
        if !b.is_ascii() {
            return self.bad("a Python 2 str is not ASCII");
        }
        self.push(PyValue::Str(String::from_utf8(b).expect("ASCII is UTF-8")));
        Ok(())
    }

    fn len_u32(&mut self) -> Result<u64, UnpickleError> {
        Ok(u32::from_le_bytes(self.le()?) as u64)
    }

    fn memo_put(&mut self, key: u64) -> Result<(), UnpickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), UnpickleError> {
        let Some(&id) = self.memo.get(&key) else {
            return self.bad(format!("memo key {key} was never stored"));
        };
        self.stack.push(id);
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<(), UnpickleError> {
        match resolve(&module, &name) {
            Some(kind) => {
                self.push_node(Node::Global(kind));
                Ok(())
            }
            None => Err(UnpickleError::Refused { module, name }),
        }
    }

    fn tuple_items(&self, id: usize) -> Result<Vec<usize>, UnpickleError> {
        match &self.nodes[id] {
            Node::Tuple(items) => Ok(items.clone()),
            _ => self.bad("the arguments of a call are not a tuple"),
        }
    }

    /// `REDUCE` / `NEWOBJ`: "call" an allow-listed global, which only records it.
    fn call(&mut self, callable: usize, args: usize) -> Result<(), UnpickleError> {
        let Node::Global(kind) = self.nodes[callable] else {
            return self.bad("a call of something that is not an allow-listed global");
        };
        let args = self.tuple_items(args)?;
        match kind {
            Kind::Class(class) => self.push_node(Node::Object {
                class,
                args,
                state: None,
            }),
            Kind::Set { .. } | Kind::List => {
                let items = match args.as_slice() {
                    [] => Vec::new(),
                    [one] => match &self.nodes[*one] {
                        Node::List(v) | Node::Tuple(v) | Node::Set(v, _) => v.clone(),
                        _ => return self.bad("set() of something that is not a sequence"),
                    },
                    _ => return self.bad("set() takes at most one argument"),
                };
                self.push_node(match kind {
                    Kind::Set { frozen } => Node::Set(items, frozen),
                    _ => Node::List(items),
                });
            }
            Kind::ByteArray => {
                let bytes = match args.as_slice() {
                    [] => Vec::new(),
                    [one] => match &self.nodes[*one] {
                        Node::Leaf(PyValue::Bytes(b)) => b.clone(),
                        _ => return self.bad("bytearray() of something that is not bytes"),
                    },
                    _ => return self.bad("bytearray() takes at most one argument"),
                };
                self.push(PyValue::Bytes(bytes));
            }
            Kind::Encode => {
                let [text, codec] = args.as_slice() else {
                    return self.bad("_codecs.encode takes two arguments here");
                };
                let (Node::Leaf(PyValue::Str(text)), Node::Leaf(PyValue::Str(codec))) =
                    (&self.nodes[*text], &self.nodes[*codec])
                else {
                    return self.bad("_codecs.encode of something that is not text");
                };
                if codec != "latin1" && codec != "latin-1" {
                    return self.bad(format!("_codecs.encode with codec {codec:?}"));
                }
                let bytes: Option<Vec<u8>> = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).ok())
                    .collect();
                match bytes {
                    Some(b) => self.push(PyValue::Bytes(b)),
                    None => return self.bad("_codecs.encode: text is not latin-1"),
                }
            }
        }
        Ok(())
    }

    fn forbidden<T>(&self, opcode: &'static str) -> Result<T, UnpickleError> {
        Err(UnpickleError::Forbidden {
            opcode,
            offset: self.at,
        })
    }

    fn int_line(&mut self, long: bool) -> Result<(), UnpickleError> {
        let line = self.line_str()?;
        if line.len() > MAX_INT_DIGITS {
            // Parsing decimal digits is quadratic; CPython refuses long ones too.
            return self.bad(format!("an integer of over {MAX_INT_DIGITS} digits"));
        }
        let digits = if long {
            line.strip_suffix('L').unwrap_or(&line)
        } else {
            &line
        };
        if !long && digits == "00" {
            self.push(PyValue::Bool(false));
        } else if !long && digits == "01" {
            self.push(PyValue::Bool(true));
        } else {
            match digits.parse::<BigInt>() {
                Ok(i) => self.push(int(i)),
                Err(_) => return self.bad(format!("{digits:?} is not an integer")),
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<usize, UnpickleError> {
        loop {
            self.at = self.pos;
            let Some(&op) = self.bytes.get(self.pos) else {
                return self.bad("the pickle ends without STOP");
            };
            self.pos += 1;
            match op {
                b'.' => {
                    // STOP
                    let top = self.pop()?;
                    if !self.marks.is_empty() || !self.stack.is_empty() {
                        // CPython ignores leftovers; so does this reader.
                    }
                    return Ok(top);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    if self.stack.len() > self.floor() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                b'N' => self.push(PyValue::None),
                0x88 => self.push(PyValue::Bool(true)),
                0x89 => self.push(PyValue::Bool(false)),
                b'I' => self.int_line(false)?,
                b'L' => self.int_line(true)?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(PyValue::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(PyValue::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(PyValue::Int(v.into()));
                }
                0x8a => {
                    let n = self.u8()? as u64;
                    let b = self.take(n)?;
                    let v = int(BigInt::from_signed_bytes_le(b));
                    self.push(v);
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.le()?);
                    let Ok(n) = u64::try_from(n) else {
                        return self.bad("LONG4 with a negative length");
                    };
                    let b = self.take(n)?;
                    let v = int(BigInt::from_signed_bytes_le(b));
                    self.push(v);
                }
                b'F' => {
                    let line = self.line_str()?;
                    match line.trim().parse::<f64>() {
                        Ok(f) => self.push(PyValue::Float(f)),
                        Err(_) => return self.bad(format!("{line:?} is not a float")),
                    }
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(PyValue::Float(v));
                }
                b'S' => {
                    let line = self.line()?.to_vec();
                    let s = py2_literal(&line).or_else(|e| self.bad(e))?;
                    self.push(PyValue::Str(s));
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.le()?);
                    let Ok(n) = u64::try_from(n) else {
                        return self.bad("BINSTRING with a negative length");
                    };
                    self.py2_str(n)?;
                }
                b'U' => {
                    let n = self.u8()? as u64;
                    self.py2_str(n)?;
                }
                b'V' => {
                    let line = self.line()?.to_vec();
                    let s = raw_unicode_escape(&line).or_else(|e| self.bad(e))?;
                    self.push(PyValue::Str(s));
                }
                b'X' => {
                    let n = self.len_u32()?;
                    self.text(n)?;
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    self.text(n)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    self.text(n)?;
                }
                b'B' => {
                    let n = self.len_u32()?;
                    self.bytes_of(n)?;
                }
                b'C' => {
                    let n = self.u8()? as u64;
                    self.bytes_of(n)?;
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(self.le()?);
                    self.bytes_of(n)?;
                }
                b')' => self.push_node(Node::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < self.floor() + n {
                        return self.bad("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_node(Node::Tuple(items));
                }
                b']' => self.push_node(Node::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    let Node::List(v) = &mut self.nodes[list] else {
                        return self.bad("APPEND to something that is not a list");
                    };
                    v.push(item);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    let Node::List(v) = &mut self.nodes[list] else {
                        return self.bad("APPENDS to something that is not a list");
                    };
                    v.extend(items);
                }
                b'}' => self.push_node(Node::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.bad("DICT with an odd number of items");
                    }
                    let pairs = items.chunks(2).map(|p| (p[0], p[1])).collect();
                    self.push_node(Node::Dict(pairs));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    let Node::Dict(v) = &mut self.nodes[dict] else {
                        return self.bad("SETITEM on something that is not a dict");
                    };
                    v.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.bad("SETITEMS with an odd number of items");
                    }
                    let dict = self.top()?;
                    let Node::Dict(v) = &mut self.nodes[dict] else {
                        return self.bad("SETITEMS on something that is not a dict");
                    };
                    v.extend(items.chunks(2).map(|p| (p[0], p[1])));
                }
                0x8f => self.push_node(Node::Set(Vec::new(), false)),
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    let Node::Set(v, false) = &mut self.nodes[set] else {
                        return self.bad("ADDITEMS to something that is not a set");
                    };
                    v.extend(items);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Set(items, true));
                }
                b'p' => {
                    let line = self.line_str()?;
                    let Ok(key) = line.parse::<u64>() else {
                        return self.bad("PUT with a key that is not a number");
                    };
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.u8()?.into();
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.len_u32()?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let line = self.line_str()?;
                    let Ok(key) = line.parse::<u64>() else {
                        return self.bad("GET with a key that is not a number");
                    };
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = self.u8()?.into();
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.len_u32()?;
                    self.memo_get(key)?;
                }
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Leaf(PyValue::Str(module)), Node::Leaf(PyValue::Str(name))) =
                        (&self.nodes[module], &self.nodes[name])
                    else {
                        return self.bad("STACK_GLOBAL of something that is not two str");
                    };
                    let (module, name) = (module.clone(), name.clone());
                    self.global(module, name)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    if !matches!(self.nodes[class], Node::Global(Kind::Class(_))) {
                        return self.bad("NEWOBJ of something that is not an allow-listed class");
                    }
                    self.call(class, args)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    if !matches!(&self.nodes[kwargs], Node::Dict(v) if v.is_empty()) {
                        return self.bad("NEWOBJ_EX with keyword arguments");
                    }
                    if !matches!(self.nodes[class], Node::Global(Kind::Class(_))) {
                        return self
                            .bad("NEWOBJ_EX of something that is not an allow-listed class");
                    }
                    self.call(class, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    let Node::Object { state: slot, .. } = &mut self.nodes[obj] else {
                        return self.bad("BUILD on something that is not an allow-listed object");
                    };
                    if slot.is_some() {
                        return self.bad("BUILD twice on one object");
                    }
                    *slot = Some(state);
                }
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.bad(format!("unsupported pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffering; the frame's opcodes follow.
                    self.le::<8>()?;
                }
                b'i' => return self.forbidden("INST"),
                b'o' => return self.forbidden("OBJ"),
                b'P' => return self.forbidden("PERSID"),
                b'Q' => return self.forbidden("BINPERSID"),
                0x82 => return self.forbidden("EXT1"),
                0x83 => return self.forbidden("EXT2"),
                0x84 => return self.forbidden("EXT4"),
                0x97 => return self.forbidden("NEXT_BUFFER"),
                0x98 => return self.forbidden("READONLY_BUFFER"),
                other => return self.bad(format!("unknown opcode 0x{other:02x}")),
            }
        }
    }

    /// The tree under node `id`, copying shared nodes, within the depth and size limits.
    fn build(&self, id: usize, depth: usize, budget: &mut usize) -> Result<PyValue, UnpickleError> {
        if depth > MAX_DEPTH {
            return Err(UnpickleError::TooLarge(
                "the value nests too deeply or refers to itself",
            ));
        }
        let cost = match &self.nodes[id] {
            Node::Leaf(PyValue::Str(s)) => 1 + s.len(),
            Node::Leaf(PyValue::Bytes(b)) => 1 + b.len(),
            _ => 1,
        };
        *budget = budget.checked_sub(cost).ok_or(UnpickleError::TooLarge(
            "its shared references expand into too large a value",
        ))?;
        let many = |ids: &[usize], budget: &mut usize| -> Result<Vec<PyValue>, UnpickleError> {
            ids.iter()
                .map(|&i| self.build(i, depth + 1, budget))
                .collect()
        };
        Ok(match &self.nodes[id] {
            Node::Leaf(v) => v.clone(),
            Node::List(v) => PyValue::List(many(v, budget)?),
            Node::Tuple(v) => PyValue::Tuple(many(v, budget)?),
            Node::Set(v, false) => PyValue::Set(many(v, budget)?),
            Node::Set(v, true) => PyValue::FrozenSet(many(v, budget)?),
            Node::Dict(pairs) => PyValue::Dict(
                pairs
                    .iter()
                    .map(|&(k, v)| {
                        Ok((
                            self.build(k, depth + 1, budget)?,
                            self.build(v, depth + 1, budget)?,
                        ))
                    })
                    .collect::<Result<_, UnpickleError>>()?,
            ),
            Node::Global(Kind::Class(class)) => {
                return Err(UnpickleError::Type(format!(
                    "the class {class} itself, not an instance of it"
                )));
            }
            Node::Global(_) => {
                return Err(UnpickleError::Type(
                    "a builtin function itself, not a value".to_owned(),
                ));
            }
            Node::Object { class, args, state } => PyValue::Object(PyObject {
                class: *class,
                args: many(args, budget)?,
                state: match state {
                    Some(s) => Some(Box::new(self.build(*s, depth + 1, budget)?)),
                    None => None,
                },
            }),
        })
    }
}

fn int(i: BigInt) -> PyValue {
    match i64::try_from(&i) {
        Ok(v) => PyValue::Int(v),
        Err(_) => PyValue::BigInt(i),
    }
}

/// Protocol 0's `STRING` argument: a quoted Python 2 literal (ASCII, simple escapes).
fn py2_literal(line: &[u8]) -> Result<String, String> {
    let inner = match line {
        [b'\'', inner @ .., b'\''] | [b'"', inner @ .., b'"'] => inner,
        _ => return Err("a STRING argument is not quoted".to_owned()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'\'') => out.push(b'\''),
            Some(b'"') => out.push(b'"'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let hi = it.next().and_then(|c| (c as char).to_digit(16));
                let lo = it.next().and_then(|c| (c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err("a bad \\x escape in a STRING".to_owned()),
                }
            }
            _ => return Err("an unsupported escape in a STRING".to_owned()),
        }
    }
    if !out.is_ascii() {
        return Err("a Python 2 str is not ASCII".to_owned());
    }
    Ok(String::from_utf8(out).expect("ASCII is UTF-8"))
}

/// Protocol 0's `UNICODE` argument: raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX`, other
/// bytes Latin-1).
fn raw_unicode_escape(line: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        let width = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = line
            .get(i + 2..i + 2 + width)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("a bad \\u escape in a UNICODE argument")?;
        out.push(char::from_u32(hex).ok_or("a \\u escape that is no character (a surrogate?)")?);
        i += 2 + width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_referencing_list_is_refused_not_looped() {
        // l = []; l.append(l); pickle.dumps(l, 2)
        let p = b"\x80\x02]q\x00h\x00a.";
        assert!(matches!(decode(p), Err(UnpickleError::TooLarge(_))));
    }

    #[test]
    fn shared_references_cannot_expand_without_bound() {
        // x = b'a'*1000; each level a list of the previous twice, 40 levels deep.
        let mut p = b"\x80\x03B\xe8\x03\x00\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 1000));
        p.extend_from_slice(b"q\x00");
        for level in 0..40u8 {
            p.extend_from_slice(&[b'h', level, b'h', level, 0x86, b'q', level + 1]);
        }
        p.push(b'.');
        assert!(matches!(decode(&p), Err(UnpickleError::TooLarge(_))));
    }

    #[test]
    fn a_huge_decimal_integer_is_refused_not_parsed() {
        let mut p = b"I".to_vec();
        p.extend(std::iter::repeat_n(b'9', 5000));
        p.extend_from_slice(b"\n.");
        assert!(matches!(decode(&p), Err(UnpickleError::Malformed { .. })));
        assert_eq!(decode(b"I4300\n.").unwrap(), PyValue::Int(4300));
    }

    #[test]
    fn a_lying_length_allocates_nothing() {
        let p = b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.";
        assert!(matches!(decode(p), Err(UnpickleError::Malformed { .. })));
    }

    #[test]
    fn protocol_zero_reads() {
        // pickle.dumps((1, 'é', 2.5, True, None), 0)
        let simple = b"(I1\nV\xe9\np0\nF2.5\nI01\nNtp1\n.";
        assert_eq!(
            decode(simple).unwrap(),
            PyValue::Tuple(vec![
                PyValue::Int(1),
                PyValue::Str("é".into()),
                PyValue::Float(2.5),
                PyValue::Bool(true),
                PyValue::None
            ])
        );
    }
}
