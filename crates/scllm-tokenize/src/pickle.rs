//! A reader of the plain-data pickles model families ship their dictionaries as (Geneformer's
//! `token_dictionary.pkl`, `gene_median_dictionary.pkl`, ...): dicts, lists and tuples of
//! strings, numbers, booleans and numpy scalars. Nothing is ever executed: the only globals
//! allowed are `numpy.dtype` and numpy's `scalar` constructor, which are interpreted here (a
//! numpy scalar is the dtype code plus its raw bytes); any other global is refused by name.
//!
//! Why not a crate: `serde-pickle` replaces unknown globals with `None` (the medians would be
//! lost), and burn's PyTorch reader reports numpy scalars as unsupported values for the same
//! reason. The opcodes are Python's `pickletools` protocol 0-5 set, minus code and persistence.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Result, TokenizeError};

/// A plain-data pickle value.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Keys are kept in insertion order of the file only through `BTreeMap` ordering; lookups
    /// are what callers need.
    Dict(BTreeMap<DictKey, PyValue>),
    /// `numpy.dtype(code)` (only as the argument of a numpy scalar).
    DType {
        code: String,
        big_endian: bool,
    },
}

/// A dictionary key: pickled dicts here are keyed by strings or integers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DictKey {
    Str(String),
    Int(i64),
}

impl PyValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            PyValue::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            PyValue::None => "None",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Dict(_) => "dict",
            PyValue::DType { .. } => "numpy.dtype",
        }
    }
}

/// A stack entry: a value, a `MARK`, or a global the reader knows how to apply.
#[derive(Clone, Debug)]
enum Item {
    Value(PyValue),
    Mark,
    Global(Known),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Known {
    DType,
    Scalar,
}

fn known(module: &str, name: &str) -> Option<Known> {
    match (module, name) {
        ("numpy", "dtype") => Some(Known::DType),
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Some(Known::Scalar),
        _ => None,
    }
}

/// Read the pickle at `path` (the whole file).
pub fn read_pickle_file(path: &Path) -> Result<PyValue> {
    let bytes = std::fs::read(path).map_err(|e| TokenizeError::File {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    read_pickle(&bytes).map_err(|m| TokenizeError::File {
        path: path.to_path_buf(),
        message: format!("not a plain-data pickle: {m}"),
    })
}

/// Parse one pickle from `data`.
pub fn read_pickle(data: &[u8]) -> std::result::Result<PyValue, String> {
    let mut r = Reader { data, at: 0 };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: BTreeMap<u64, Item> = BTreeMap::new();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO n
            }
            0x95 => {
                r.take(8)?; // FRAME length: frames are just a hint for buffered readers
            }
            b'.' => {
                return match stack.pop() {
                    Some(Item::Value(v)) => Ok(v),
                    _ => Err("STOP without a value".into()),
                };
            }
            b'}' => stack.push(Item::Value(PyValue::Dict(BTreeMap::new()))),
            b']' => stack.push(Item::Value(PyValue::List(Vec::new()))),
            b')' => stack.push(Item::Value(PyValue::Tuple(Vec::new()))),
            b'(' => stack.push(Item::Mark),
            b'N' => stack.push(Item::Value(PyValue::None)),
            0x88 => stack.push(Item::Value(PyValue::Bool(true))),
            0x89 => stack.push(Item::Value(PyValue::Bool(false))),
            b'J' => {
                let v = i32::from_le_bytes(r.array()?);
                stack.push(Item::Value(PyValue::Int(v as i64)));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(Item::Value(PyValue::Int(v as i64)));
            }
            b'M' => {
                let v = u16::from_le_bytes(r.array()?);
                stack.push(Item::Value(PyValue::Int(v as i64)));
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err(format!("integer of {n} bytes does not fit 64 bits"));
                }
                let mut v: i64 = 0;
                for (i, &x) in b.iter().enumerate() {
                    v |= (x as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Item::Value(PyValue::Int(v)));
            }
            b'G' => {
                let v = f64::from_be_bytes(r.array()?);
                stack.push(Item::Value(PyValue::Float(v)));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Item::Value(PyValue::Str(r.utf8(n)?)));
            }
            b'X' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                stack.push(Item::Value(PyValue::Str(r.utf8(n)?)));
            }
            0x8d => {
                let n = r.len8()?;
                stack.push(Item::Value(PyValue::Str(r.utf8(n)?)));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Item::Value(PyValue::Bytes(r.take(n)?.to_vec())));
            }
            b'B' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                stack.push(Item::Value(PyValue::Bytes(r.take(n)?.to_vec())));
            }
            0x8e => {
                let n = r.len8()?;
                stack.push(Item::Value(PyValue::Bytes(r.take(n)?.to_vec())));
            }
            0x94 => {
                // MEMOIZE
                let top = stack.last().ok_or("MEMOIZE on an empty stack")?.clone();
                let k = memo.len() as u64;
                memo.insert(k, top);
            }
            b'q' | b'r' => {
                let k = if op == b'q' {
                    r.u8()? as u64
                } else {
                    u32::from_le_bytes(r.array()?) as u64
                };
                let top = stack.last().ok_or("PUT on an empty stack")?.clone();
                memo.insert(k, top);
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    r.u8()? as u64
                } else {
                    u32::from_le_bytes(r.array()?) as u64
                };
                let v = memo.get(&k).ok_or_else(|| format!("memo {k} is empty"))?;
                stack.push(v.clone());
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("TUPLE on a short stack".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Item::Value(PyValue::Tuple(values(items)?)));
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::Value(PyValue::Tuple(values(items)?)));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::Value(PyValue::List(values(items)?)));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![stack.pop().ok_or("APPEND on an empty stack")?]
                } else {
                    pop_mark(&mut stack)?
                };
                match stack.last_mut() {
                    Some(Item::Value(PyValue::List(l))) => l.extend(values(items)?),
                    _ => return Err("APPEND to something other than a list".into()),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    if stack.len() < 2 {
                        return Err("SETITEM on a short stack".into());
                    }
                    stack.split_off(stack.len() - 2)
                } else {
                    pop_mark(&mut stack)?
                };
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let vals = values(items)?;
                let Some(Item::Value(PyValue::Dict(d))) = stack.last_mut() else {
                    return Err("SETITEM on something other than a dict".into());
                };
                for kv in vals.chunks(2) {
                    let key = match &kv[0] {
                        PyValue::Str(s) => DictKey::Str(s.clone()),
                        PyValue::Int(i) => DictKey::Int(*i),
                        other => return Err(format!("a dict key of type {}", other.kind())),
                    };
                    d.insert(key, kv[1].clone());
                }
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop_str(&mut stack)?;
                let module = pop_str(&mut stack)?;
                stack.push(Item::Global(refuse(&module, &name)?));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Item::Global(refuse(&module, &name)?));
            }
            b'R' => {
                let args = match stack.pop() {
                    Some(Item::Value(PyValue::Tuple(a))) => a,
                    _ => return Err("REDUCE without an argument tuple".into()),
                };
                let f = match stack.pop() {
                    Some(Item::Global(g)) => g,
                    _ => return Err("REDUCE of something that is not an allowed global".into()),
                };
                stack.push(Item::Value(apply(f, args)?));
            }
            b'b' => {
                // BUILD: the state of a numpy dtype, (version, byteorder, ...)
                let state = match stack.pop() {
                    Some(Item::Value(v)) => v,
                    _ => return Err("BUILD without a state".into()),
                };
                match (stack.last_mut(), state) {
                    (Some(Item::Value(PyValue::DType { big_endian, .. })), PyValue::Tuple(t)) => {
                        if let Some(PyValue::Str(order)) = t.get(1) {
                            *big_endian = order == ">";
                        }
                    }
                    _ => return Err("BUILD of an object other than numpy.dtype".into()),
                }
            }
            other => {
                return Err(format!(
                    "opcode 0x{other:02x} at byte {} is not part of a plain-data pickle",
                    r.at - 1
                ))
            }
        }
    }
}

fn refuse(module: &str, name: &str) -> std::result::Result<Known, String> {
    known(module, name).ok_or_else(|| {
        format!("it names the Python object `{module}.{name}` (only dictionaries of plain values and numpy scalars are read; nothing is run)")
    })
}

fn apply(f: Known, args: Vec<PyValue>) -> std::result::Result<PyValue, String> {
    match f {
        Known::DType => match args.first() {
            Some(PyValue::Str(code)) => Ok(PyValue::DType {
                code: code.clone(),
                big_endian: false,
            }),
            _ => Err("numpy.dtype without a type code".into()),
        },
        Known::Scalar => {
            let (Some(PyValue::DType { code, big_endian }), Some(PyValue::Bytes(b))) =
                (args.first(), args.get(1))
            else {
                return Err("numpy scalar without a dtype and its bytes".into());
            };
            scalar(code, *big_endian, b)
        }
    }
}

/// A numpy scalar of dtype `code` from its raw bytes.
fn scalar(code: &str, big_endian: bool, b: &[u8]) -> std::result::Result<PyValue, String> {
    let mut b = b.to_vec();
    if big_endian {
        b.reverse();
    }
    let need = |n: usize| -> std::result::Result<(), String> {
        if b.len() == n {
            Ok(())
        } else {
            Err(format!("numpy {code} scalar of {} bytes", b.len()))
        }
    };
    let int = |signed: bool| -> PyValue {
        let mut v: i64 = 0;
        for (i, &x) in b.iter().enumerate() {
            v |= (x as i64) << (8 * i);
        }
        let n = b.len();
        if signed && n < 8 && b[n - 1] & 0x80 != 0 {
            v -= 1i64 << (8 * n);
        }
        PyValue::Int(v)
    };
    Ok(match code {
        "i1" | "i2" | "i4" | "i8" | "u1" | "u2" | "u4" => {
            need(code[1..].parse::<usize>().unwrap_or(0))?;
            int(code.starts_with('i'))
        }
        "b1" | "?" => {
            need(1)?;
            PyValue::Bool(b[0] != 0)
        }
        "f4" => {
            need(4)?;
            PyValue::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        }
        "f8" => {
            need(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(&b);
            PyValue::Float(f64::from_le_bytes(a))
        }
        other => return Err(format!("numpy scalar of dtype {other}")),
    })
}

fn values(items: Vec<Item>) -> std::result::Result<Vec<PyValue>, String> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Value(v) => Ok(v),
            _ => Err("a MARK or global where a value belongs".to_string()),
        })
        .collect()
}

fn pop_mark(stack: &mut Vec<Item>) -> std::result::Result<Vec<Item>, String> {
    let at = stack
        .iter()
        .rposition(|i| matches!(i, Item::Mark))
        .ok_or("no MARK on the stack")?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn pop_str(stack: &mut Vec<Item>) -> std::result::Result<String, String> {
    match stack.pop() {
        Some(Item::Value(PyValue::Str(s))) => Ok(s),
        _ => Err("STACK_GLOBAL without module and name strings".into()),
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len8(&mut self) -> std::result::Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|e| e.to_string())
    }
    fn utf8(&mut self, n: usize) -> std::result::Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string that is not UTF-8".into())
    }
    fn line(&mut self) -> std::result::Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({"<pad>": 0, "A": np.int16(2), "m": np.float64(0.25)}, protocol=4)`,
    /// written out by hand with the opcodes Python uses (MEMOIZE omitted where unused).
    fn sample() -> Vec<u8> {
        let mut p = vec![0x80, 4, b'}', b'('];
        let s = |p: &mut Vec<u8>, t: &str| {
            p.push(0x8c);
            p.push(t.len() as u8);
            p.extend_from_slice(t.as_bytes());
        };
        s(&mut p, "<pad>");
        p.extend([b'K', 0]);
        s(&mut p, "A");
        s(&mut p, "numpy.core.multiarray");
        s(&mut p, "scalar");
        p.push(0x93);
        s(&mut p, "numpy");
        s(&mut p, "dtype");
        p.push(0x93);
        s(&mut p, "i2");
        p.extend([0x89, 0x88, 0x87, b'R']); // dtype('i2', False, True)
        p.push(0x94); // memoised dtype (memo 0)
        p.extend([b'(', b'K', 3]);
        s(&mut p, "<");
        p.extend([b'N', b'N', b'N', b'J']);
        p.extend((-1i32).to_le_bytes());
        p.push(b'J');
        p.extend((-1i32).to_le_bytes());
        p.extend([b'K', 0, b't', b'b']);
        p.extend([b'C', 2, 2, 0, 0x86, b'R']); // scalar(dtype, b'\x02\x00')
        s(&mut p, "m");
        s(&mut p, "numpy.core.multiarray");
        s(&mut p, "scalar");
        p.push(0x93);
        s(&mut p, "numpy");
        s(&mut p, "dtype");
        p.push(0x93);
        s(&mut p, "f8");
        p.extend([0x89, 0x88, 0x87, b'R']);
        p.push(b'C');
        p.push(8);
        p.extend(0.25f64.to_le_bytes());
        p.extend([0x86, b'R', b'u', b'.']);
        p
    }

    #[test]
    fn dict_of_numpy_scalars_reads_with_values() {
        let v = read_pickle(&sample()).unwrap();
        let PyValue::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d[&DictKey::Str("<pad>".into())], PyValue::Int(0));
        assert_eq!(d[&DictKey::Str("A".into())], PyValue::Int(2));
        assert_eq!(d[&DictKey::Str("m".into())], PyValue::Float(0.25));
    }

    #[test]
    fn other_globals_are_refused_by_name_and_nothing_runs() {
        // pickle.dumps of os.system("true") as a REDUCE
        let mut p = vec![0x80, 4];
        for t in ["os", "system"] {
            p.push(0x8c);
            p.push(t.len() as u8);
            p.extend_from_slice(t.as_bytes());
        }
        p.push(0x93);
        p.extend([0x8c, 4]);
        p.extend_from_slice(b"true");
        p.extend([0x85, b'R', b'.']);
        let e = read_pickle(&p).unwrap_err();
        assert!(e.contains("os.system"), "{e}");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let p = sample();
        for n in 0..p.len() {
            assert!(read_pickle(&p[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
