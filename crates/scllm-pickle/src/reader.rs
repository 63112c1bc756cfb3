//! The pickle machine, run on data: opcodes push values and build containers in an arena, so
//! a memoised list, dict, object or dtype that is filled in later (`APPEND`, `SETITEM`,
//! `BUILD`) is the same one wherever the memo hands it out, as in Python. Calls are never made:
//! `REDUCE`/`NEWOBJ` of an allowed class record the call.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::numpy;
use crate::value::{DType, DictKey, PyObject, PyValue};
use crate::{PickleError, Result};

/// numpy globals interpreted here (never imported): dtypes, scalars, arrays.
const NUMPY: &[(&str, Builtin)] = &[
    ("numpy.dtype", Builtin::DType),
    ("numpy.ndarray", Builtin::NdArray),
    ("numpy.core.multiarray.scalar", Builtin::Scalar),
    ("numpy._core.multiarray.scalar", Builtin::Scalar),
    ("numpy.core.multiarray._reconstruct", Builtin::Reconstruct),
    ("numpy._core.multiarray._reconstruct", Builtin::Reconstruct),
    ("numpy.core.numeric._frombuffer", Builtin::FromBuffer),
    ("numpy._core.numeric._frombuffer", Builtin::FromBuffer),
    // protocol 0/1 pickles build instances as `copyreg._reconstructor(cls, object, None)`
    ("copyreg._reconstructor", Builtin::Reconstructor),
    ("copy_reg._reconstructor", Builtin::Reconstructor),
    ("builtins.object", Builtin::Object),
    ("__builtin__.object", Builtin::Object),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Builtin {
    DType,
    NdArray,
    Scalar,
    Reconstruct,
    FromBuffer,
    Reconstructor,
    Object,
}

/// A value on the stack or in the memo; containers live in the arena.
#[derive(Clone, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Node(usize),
    /// An allowed global, by full path.
    Global(Rc<str>),
}

#[derive(Debug)]
enum Item {
    V(V),
    Mark,
}

#[derive(Debug)]
enum Node {
    List(Vec<V>),
    Tuple(Vec<V>),
    Dict(Vec<(V, V)>),
    Object {
        class: String,
        args: Vec<V>,
        state: Option<V>,
    },
    DType(DType),
    /// A numpy array: empty until its `BUILD` (from `_reconstruct`), or complete (`_frombuffer`).
    Array(Option<ArrayParts>),
}

#[derive(Debug)]
struct ArrayParts {
    dtype: V,
    shape: V,
    fortran: bool,
    data: V,
}

/// Parse one pickle from `data`, building instances of the classes in `allowed` (full paths,
/// `module.Name`) as inert [`PyObject`]s; any other global is refused by name.
pub fn read_pickle_allowing(data: &[u8], allowed: &[&str]) -> Result<PyValue> {
    Machine {
        r: Reader { data, at: 0 },
        stack: Vec::new(),
        memo: BTreeMap::new(),
        arena: Vec::new(),
        allowed,
    }
    .run()
    .map_err(PickleError::new)
}

struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Item>,
    memo: BTreeMap<u64, V>,
    arena: Vec<Node>,
    allowed: &'a [&'a str],
}

type R<T> = std::result::Result<T, String>;

impl Machine<'_> {
    fn push(&mut self, v: V) {
        self.stack.push(Item::V(v));
    }
    fn node(&mut self, n: Node) -> V {
        self.arena.push(n);
        V::Node(self.arena.len() - 1)
    }
    fn pop(&mut self, what: &str) -> R<V> {
        match self.stack.pop() {
            Some(Item::V(v)) => Ok(v),
            Some(Item::Mark) => Err(format!("{what}: a MARK where a value belongs")),
            None => Err(format!("{what} on an empty stack")),
        }
    }
    fn pop_mark(&mut self) -> R<Vec<V>> {
        let at = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        items
            .into_iter()
            .map(|i| match i {
                Item::V(v) => Ok(v),
                Item::Mark => Err("a MARK where a value belongs".to_string()),
            })
            .collect()
    }
    fn top_node(&mut self, what: &str) -> R<&mut Node> {
        match self.stack.last() {
            Some(Item::V(V::Node(i))) => Ok(&mut self.arena[*i]),
            _ => Err(format!("{what} on something that is not a container")),
        }
    }
    fn memo_key(&mut self, op: u8, short: u8) -> R<u64> {
        Ok(if op == short {
            self.r.u8()? as u64
        } else {
            u32::from_le_bytes(self.r.array()?) as u64
        })
    }

    fn run(mut self) -> R<PyValue> {
        loop {
            let op = self.r.u8()?;
            match op {
                0x80 => {
                    self.r.u8()?; // PROTO n
                }
                0x95 => {
                    self.r.take(8)?; // FRAME length: a hint for buffered readers
                }
                b'.' => {
                    let top = self.pop("STOP")?;
                    return Convert::new(&self.arena).value(&top, 0);
                }
                b'}' => {
                    let v = self.node(Node::Dict(Vec::new()));
                    self.push(v)
                }
                b']' => {
                    let v = self.node(Node::List(Vec::new()));
                    self.push(v)
                }
                b')' => {
                    let v = self.node(Node::Tuple(Vec::new()));
                    self.push(v)
                }
                b'(' => self.stack.push(Item::Mark),
                b'N' => self.push(V::None),
                0x88 => self.push(V::Bool(true)),
                0x89 => self.push(V::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.r.array()?);
                    self.push(V::Int(v as i64))
                }
                b'K' => {
                    let v = self.r.u8()?;
                    self.push(V::Int(v as i64))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.r.array()?);
                    self.push(V::Int(v as i64))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes
                    let n = if op == 0x8a {
                        self.r.u8()? as usize
                    } else {
                        u32::from_le_bytes(self.r.array()?) as usize
                    };
                    let b = self.r.take(n)?;
                    if n > 8 {
                        return Err(format!("an integer of {n} bytes does not fit 64 bits"));
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(V::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.r.array()?);
                    self.push(V::Float(v))
                }
                0x8c | b'X' | 0x8d => {
                    let n = self.len_for(op, 0x8c, b'X')?;
                    let s = self.r.utf8(n)?;
                    self.push(V::Str(s.into()))
                }
                b'C' | b'B' | 0x8e | 0x96 => {
                    // bytes; BYTEARRAY8 (0x96) carries a protocol-5 in-band buffer
                    let n = if op == 0x96 {
                        self.r.len8()?
                    } else {
                        self.len_for(op, b'C', b'B')?
                    };
                    let b = self.r.take(n)?;
                    self.push(V::Bytes(b.into()))
                }
                0x98 => {
                    // READONLY_BUFFER: a flag on the buffer just pushed
                    if !matches!(self.stack.last(), Some(Item::V(V::Bytes(_)))) {
                        return Err("READONLY_BUFFER without a buffer".into());
                    }
                }
                0x94 => {
                    let top = match self.stack.last() {
                        Some(Item::V(v)) => v.clone(),
                        _ => return Err("MEMOIZE without a value".into()),
                    };
                    let k = self.memo.len() as u64;
                    self.memo.insert(k, top);
                }
                b'q' | b'r' => {
                    let k = self.memo_key(op, b'q')?;
                    let top = match self.stack.last() {
                        Some(Item::V(v)) => v.clone(),
                        _ => return Err("PUT without a value".into()),
                    };
                    self.memo.insert(k, top);
                }
                b'h' | b'j' => {
                    let k = self.memo_key(op, b'h')?;
                    let v = self
                        .memo
                        .get(&k)
                        .ok_or_else(|| format!("memo {k} is empty"))?
                        .clone();
                    self.push(v)
                }
                b'0' => {
                    self.stack.pop().ok_or("POP on an empty stack")?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = match self.stack.last() {
                        Some(Item::V(v)) => v.clone(),
                        _ => return Err("DUP without a value".into()),
                    };
                    self.push(v)
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLE")?);
                    }
                    items.reverse();
                    let v = self.node(Node::Tuple(items));
                    self.push(v)
                }
                b't' | b'l' => {
                    let items = self.pop_mark()?;
                    let n = if op == b't' {
                        Node::Tuple(items)
                    } else {
                        Node::List(items)
                    };
                    let v = self.node(n);
                    self.push(v)
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items)?;
                    let v = self.node(Node::Dict(d));
                    self.push(v)
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop("APPEND")?]
                    } else {
                        self.pop_mark()?
                    };
                    match self.top_node("APPEND")? {
                        Node::List(l) => l.extend(items),
                        _ => return Err("APPEND to something other than a list".into()),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop("SETITEM")?;
                        let k = self.pop("SETITEM")?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    let kv = pairs(items)?;
                    match self.top_node("SETITEM")? {
                        Node::Dict(d) => d.extend(kv),
                        _ => return Err("SETITEM on something other than a dict".into()),
                    }
                }
                0x93 => {
                    let name = self.pop_str()?;
                    let module = self.pop_str()?;
                    let g = self.global(&module, &name)?;
                    self.push(g)
                }
                b'c' => {
                    let module = self.r.line()?;
                    let name = self.r.line()?;
                    let g = self.global(&module, &name)?;
                    self.push(g)
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let f = self.pop("REDUCE")?;
                    let args = self.tuple_items(&args, "REDUCE")?;
                    let v = self.reduce(&f, args)?;
                    self.push(v)
                }
                0x81 | 0x92 => {
                    // NEWOBJ cls args / NEWOBJ_EX cls args kwargs
                    if op == 0x92 {
                        let kw = self.pop("NEWOBJ_EX")?;
                        if !matches!(&kw, V::Node(i) if matches!(&self.arena[*i], Node::Dict(d) if d.is_empty()))
                        {
                            return Err("NEWOBJ_EX with keyword arguments".into());
                        }
                    }
                    let args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    let args = self.tuple_items(&args, "NEWOBJ")?;
                    let class = self.class_of(&cls)?;
                    let v = self.node(Node::Object {
                        class,
                        args,
                        state: None,
                    });
                    self.push(v)
                }
                b'b' => {
                    let state = self.pop("BUILD")?;
                    self.build(state)?
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} at byte {} is not read here (persistent ids, sets, extensions and protocol-0 text opcodes are not supported)",
                        self.r.at - 1
                    ))
                }
            }
        }
    }

    fn len_for(&mut self, op: u8, short: u8, long: u8) -> R<usize> {
        if op == short {
            Ok(self.r.u8()? as usize)
        } else if op == long {
            Ok(u32::from_le_bytes(self.r.array()?) as usize)
        } else {
            self.r.len8()
        }
    }

    fn pop_str(&mut self) -> R<String> {
        match self.pop("STACK_GLOBAL")? {
            V::Str(s) => Ok(s.to_string()),
            _ => Err("STACK_GLOBAL without module and name strings".into()),
        }
    }

    fn global(&self, module: &str, name: &str) -> R<V> {
        let path = format!("{module}.{name}");
        if NUMPY.iter().any(|(p, _)| *p == path) || self.allowed.contains(&path.as_str()) {
            Ok(V::Global(path.into()))
        } else {
            Err(format!(
                "it names the Python object `{path}`, which is not allowed here (read: plain data, numpy values{}; nothing is run)",
                if self.allowed.is_empty() {
                    ""
                } else {
                    " and the expected classes"
                }
            ))
        }
    }

    fn builtin(v: &V) -> Option<Builtin> {
        match v {
            V::Global(p) => NUMPY.iter().find(|(n, _)| **n == **p).map(|(_, b)| *b),
            _ => None,
        }
    }

    /// The class path of an allow-listed class (numpy internals are not instantiable this way).
    fn class_of(&self, v: &V) -> R<String> {
        match v {
            V::Global(p) if Self::builtin(v).is_none() => Ok(p.to_string()),
            V::Global(p) => Err(format!("`{p}` instantiated directly")),
            _ => Err("an instance of something that is not a class".into()),
        }
    }

    fn tuple_items(&self, v: &V, what: &str) -> R<Vec<V>> {
        match v {
            V::Node(i) => match &self.arena[*i] {
                Node::Tuple(t) => Ok(t.clone()),
                _ => Err(format!("{what} without an argument tuple")),
            },
            _ => Err(format!("{what} without an argument tuple")),
        }
    }

    fn dtype_of(&self, v: &V) -> R<DType> {
        match v {
            V::Node(i) => match &self.arena[*i] {
                Node::DType(d) => Ok(d.clone()),
                _ => Err("a numpy value without a dtype".into()),
            },
            _ => Err("a numpy value without a dtype".into()),
        }
    }

    fn reduce(&mut self, f: &V, args: Vec<V>) -> R<V> {
        let Some(b) = Self::builtin(f) else {
            let class = self.class_of(f)?;
            return Ok(self.node(Node::Object {
                class,
                args,
                state: None,
            }));
        };
        match b {
            Builtin::DType => {
                let code = match args.first() {
                    Some(V::Str(s)) => s.to_string(),
                    _ => return Err("numpy.dtype without a type code".into()),
                };
                numpy::check_code(&code)?;
                Ok(self.node(Node::DType(DType {
                    code,
                    big_endian: false,
                })))
            }
            Builtin::Scalar => {
                let (Some(d), Some(V::Bytes(b))) = (args.first(), args.get(1)) else {
                    return Err("numpy scalar without a dtype and its bytes".into());
                };
                let d = self.dtype_of(d)?;
                Ok(match numpy::scalar(&d, b)? {
                    PyValue::Int(i) => V::Int(i),
                    PyValue::Float(f) => V::Float(f),
                    PyValue::Bool(b) => V::Bool(b),
                    PyValue::Str(s) => V::Str(s.into()),
                    other => return Err(format!("numpy scalar read as {other:?}")),
                })
            }
            Builtin::Reconstruct => {
                if args.first().and_then(Self::builtin) != Some(Builtin::NdArray) {
                    return Err("numpy _reconstruct of a class other than numpy.ndarray".into());
                }
                Ok(self.node(Node::Array(None)))
            }
            Builtin::FromBuffer => {
                // _frombuffer(buffer, dtype, shape, order)
                let [data, dtype, shape, order] = <[V; 4]>::try_from(args)
                    .map_err(|_| "numpy _frombuffer without (buffer, dtype, shape, order)")?;
                self.dtype_of(&dtype)?;
                let fortran = matches!(&order, V::Str(s) if &**s == "F");
                Ok(self.node(Node::Array(Some(ArrayParts {
                    dtype,
                    shape,
                    fortran,
                    data,
                }))))
            }
            Builtin::Reconstructor => {
                // copyreg._reconstructor(cls, object, None)
                let (Some(cls), Some(base)) = (args.first(), args.get(1)) else {
                    return Err("copyreg._reconstructor without a class".into());
                };
                if Self::builtin(base) != Some(Builtin::Object)
                    || !matches!(args.get(2), Some(V::None))
                {
                    return Err(
                        "copyreg._reconstructor of a built-in type other than object".into(),
                    );
                }
                let class = self.class_of(cls)?;
                Ok(self.node(Node::Object {
                    class,
                    args: Vec::new(),
                    state: None,
                }))
            }
            Builtin::NdArray | Builtin::Object => {
                Err(format!("a call of `{}`", Convert::global_path(f)))
            }
        }
    }

    fn build(&mut self, state: V) -> R<()> {
        let idx = match self.stack.last() {
            Some(Item::V(V::Node(i))) => *i,
            _ => return Err("BUILD of something that is not an object".into()),
        };
        let conv = Convert::new(&self.arena);
        match &self.arena[idx] {
            Node::Object { .. } => {
                if let Node::Object { state: s, .. } = &mut self.arena[idx] {
                    *s = Some(state);
                }
            }
            Node::DType(d) => {
                let PyValue::Tuple(t) = conv.value(&state, 0)? else {
                    return Err("numpy dtype state that is not a tuple".into());
                };
                let big = numpy::dtype_state(&d.code, &t)?;
                if let Node::DType(d) = &mut self.arena[idx] {
                    d.big_endian = big;
                }
            }
            Node::Array(None) => {
                let parts = self.tuple_items(&state, "numpy array BUILD")?;
                // (version, shape, dtype, is_fortran, data); numpy < 1.? wrote it without version
                let p = if parts.len() == 5 {
                    &parts[1..]
                } else {
                    &parts[..]
                };
                let [shape, dtype, fortran, data] = <[V; 4]>::try_from(p.to_vec())
                    .map_err(|_| "numpy array state of unexpected length")?;
                let fortran = match fortran {
                    V::Bool(b) => b,
                    V::Int(i) => i != 0,
                    _ => return Err("numpy array state without a Fortran-order flag".into()),
                };
                self.arena[idx] = Node::Array(Some(ArrayParts {
                    dtype,
                    shape,
                    fortran,
                    data,
                }));
            }
            _ => return Err("BUILD of something that is not an object".into()),
        }
        Ok(())
    }
}

fn pairs(items: Vec<V>) -> R<Vec<(V, V)>> {
    if items.len() % 2 == 1 {
        return Err("a dict built from an odd number of items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Arena values into [`PyValue`]s; the visit budget stops a pickle whose shared references
/// would expand exponentially, the depth limit one nested past the native stack.
struct Convert<'a> {
    arena: &'a [Node],
    budget: std::cell::Cell<usize>,
}

const MAX_DEPTH: usize = 256;

impl<'a> Convert<'a> {
    fn new(arena: &'a [Node]) -> Self {
        Convert {
            arena,
            budget: std::cell::Cell::new(4 * arena.len() + 1_000_000),
        }
    }

    fn global_path(v: &V) -> String {
        match v {
            V::Global(p) => p.to_string(),
            _ => "?".into(),
        }
    }

    fn value(&self, v: &V, depth: usize) -> R<PyValue> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
        }
        let left = self.budget.get();
        if left == 0 {
            return Err("a pickle that refers to its own values too often".into());
        }
        self.budget.set(left - 1);
        let all =
            |xs: &[V]| -> R<Vec<PyValue>> { xs.iter().map(|x| self.value(x, depth + 1)).collect() };
        Ok(match v {
            V::None => PyValue::None,
            V::Bool(b) => PyValue::Bool(*b),
            V::Int(i) => PyValue::Int(*i),
            V::Float(f) => PyValue::Float(*f),
            V::Str(s) => PyValue::Str(s.to_string()),
            V::Bytes(b) => PyValue::Bytes(b.to_vec()),
            V::Global(p) => PyValue::Class(p.to_string()),
            V::Node(i) => match &self.arena[*i] {
                Node::List(l) => PyValue::List(all(l)?),
                Node::Tuple(t) => PyValue::Tuple(all(t)?),
                Node::Dict(d) => {
                    let mut m = BTreeMap::new();
                    for (k, x) in d {
                        let key = match self.value(k, depth + 1)? {
                            PyValue::Str(s) => DictKey::Str(s),
                            PyValue::Int(i) => DictKey::Int(i),
                            other => return Err(format!("a dict key of type {}", other.kind())),
                        };
                        m.insert(key, self.value(x, depth + 1)?);
                    }
                    PyValue::Dict(m)
                }
                Node::Object { class, args, state } => PyValue::Object(PyObject {
                    class: class.clone(),
                    args: all(args)?,
                    state: match state {
                        Some(s) => Some(Box::new(self.value(s, depth + 1)?)),
                        None => None,
                    },
                }),
                Node::DType(d) => PyValue::DType(d.clone()),
                Node::Array(None) => return Err("a numpy array without its state".into()),
                Node::Array(Some(p)) => {
                    let PyValue::DType(dtype) = self.value(&p.dtype, depth + 1)? else {
                        return Err("numpy array state without a dtype".into());
                    };
                    let shape = self.value(&p.shape, depth + 1)?;
                    let data = self.value(&p.data, depth + 1)?;
                    PyValue::Array(numpy::array(dtype, &shape, p.fortran, data)?)
                }
            },
        })
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len8(&mut self) -> R<usize> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|e| e.to_string())
    }
    fn utf8(&mut self, n: usize) -> R<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string that is not UTF-8".into())
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.at..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("an unterminated line")?;
        let s = self.utf8(n)?;
        self.at += 1;
        Ok(s)
    }
}
