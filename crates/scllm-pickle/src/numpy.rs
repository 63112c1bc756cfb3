//! numpy's pickled forms read as data: a dtype's state, a scalar's bytes, an array's
//! `__setstate__` tuple (repository numpy/numpy, `numpy/_core/src/multiarray/methods.c`:
//! `array_reduce`, `array_setstate`; `descriptor.c`: `arraydescr_reduce`).

use crate::value::{ArrayData, DType, NdArray, PyValue};

/// Reading an array's elements: numbers as f64, strings, in C order.
impl NdArray {
    /// Element index in storage order of each element in C (row-major) order.
    fn storage_order(&self) -> Vec<usize> {
        let n = self.len();
        if !self.fortran_order || self.shape.len() < 2 {
            return (0..n).collect();
        }
        // column-major strides
        let mut strides = vec![1usize; self.shape.len()];
        for d in 1..self.shape.len() {
            strides[d] = strides[d - 1] * self.shape[d - 1];
        }
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; self.shape.len()];
        for _ in 0..n {
            out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }

    /// The elements as f64 in C order (floats, integers and booleans).
    pub fn to_f64(&self) -> Result<Vec<f64>, String> {
        let ArrayData::Raw(raw) = &self.data else {
            return Err(format!(
                "an object array where numbers (dtype {}) were expected",
                self.dtype.code
            ));
        };
        let size = self
            .dtype
            .itemsize()
            .ok_or_else(|| format!("dtype {}", self.dtype.code))?;
        let read = |i: usize| -> Result<f64, String> {
            let b = &raw[i * size..(i + 1) * size];
            number(&self.dtype, b)
        };
        self.storage_order().into_iter().map(read).collect()
    }

    /// The elements as strings in C order: fixed-width unicode (`U`) or bytes (`S`, read as
    /// UTF-8) arrays, or object arrays of strings.
    pub fn to_strings(&self) -> Result<Vec<String>, String> {
        let order = self.storage_order();
        match &self.data {
            ArrayData::Objects(v) => order
                .into_iter()
                .map(|i| match &v[i] {
                    PyValue::Str(s) => Ok(s.clone()),
                    PyValue::Bytes(b) => String::from_utf8(b.clone())
                        .map_err(|_| "a bytes element that is not UTF-8".to_string()),
                    other => Err(format!("an element that is not a string ({other:?})")),
                })
                .collect(),
            ArrayData::Raw(raw) => {
                let size = self
                    .dtype
                    .itemsize()
                    .ok_or_else(|| format!("dtype {}", self.dtype.code))?;
                order
                    .into_iter()
                    .map(|i| string(&self.dtype, &raw[i * size..(i + 1) * size]))
                    .collect()
            }
        }
    }
}

/// The bytes of one element in little-endian order.
fn le(dtype: &DType, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if dtype.big_endian {
        v.reverse();
    }
    v
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// One numeric element (float, integer or boolean dtype) as f64.
pub(crate) fn number(dtype: &DType, b: &[u8]) -> Result<f64, String> {
    let b = le(dtype, b);
    let n = b.len();
    let unsigned = || -> u64 {
        b.iter()
            .enumerate()
            .fold(0u64, |v, (i, &x)| v | (x as u64) << (8 * i))
    };
    Ok(match (dtype.kind(), n) {
        ('f', 2) => half_to_f64(u16::from_le_bytes([b[0], b[1]])),
        ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        ('f', 8) => f64::from_le_bytes(b[..8].try_into().unwrap()),
        ('u', 1 | 2 | 4 | 8) => unsigned() as f64,
        ('i', 1 | 2 | 4 | 8) => signed(&b) as f64,
        ('b' | '?', 1) => (b[0] != 0) as u8 as f64,
        _ => return Err(format!("numbers of dtype {}", dtype.code)),
    })
}

fn signed(b: &[u8]) -> i64 {
    let n = b.len();
    let mut v: i64 = 0;
    for (i, &x) in b.iter().enumerate() {
        v |= (x as i64) << (8 * i);
    }
    if n < 8 && b[n - 1] & 0x80 != 0 {
        v -= 1i64 << (8 * n);
    }
    v
}

/// One element of a fixed-width string dtype (`U`: UCS-4, `S`: bytes), trailing NULs dropped
/// as numpy does.
pub(crate) fn string(dtype: &DType, b: &[u8]) -> Result<String, String> {
    match dtype.kind() {
        'U' => {
            let mut s = String::with_capacity(b.len() / 4);
            for c in b.chunks_exact(4) {
                let a = [c[0], c[1], c[2], c[3]];
                let u = if dtype.big_endian {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                };
                s.push(char::from_u32(u).ok_or("an invalid unicode code point")?);
            }
            Ok(s.trim_end_matches('\0').to_string())
        }
        'S' => {
            let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
            String::from_utf8(b[..end].to_vec()).map_err(|_| "bytes that are not UTF-8".into())
        }
        _ => Err(format!("strings of dtype {}", dtype.code)),
    }
}

/// `numpy.core.multiarray.scalar(dtype, bytes)` as a plain value.
pub(crate) fn scalar(dtype: &DType, b: &[u8]) -> Result<PyValue, String> {
    if dtype.itemsize() != Some(b.len()) {
        return Err(format!("numpy {} scalar of {} bytes", dtype.code, b.len()));
    }
    Ok(match dtype.kind() {
        'f' => PyValue::Float(number(dtype, b)?),
        'i' => PyValue::Int(signed(&le(dtype, b))),
        'u' => {
            let v = le(dtype, b)
                .iter()
                .enumerate()
                .fold(0u64, |v, (i, &x)| v | (x as u64) << (8 * i));
            PyValue::Int(
                i64::try_from(v).map_err(|_| {
                    format!("numpy {} scalar beyond 64-bit signed range", dtype.code)
                })?,
            )
        }
        'b' | '?' => PyValue::Bool(b[0] != 0),
        'U' | 'S' => PyValue::Str(string(dtype, b)?),
        _ => return Err(format!("numpy scalar of dtype {}", dtype.code)),
    })
}

/// The dtype codes an array may hold here: fixed-size numbers, booleans, strings, objects.
pub(crate) fn check_code(code: &str) -> Result<(), String> {
    let d = DType {
        code: code.to_string(),
        big_endian: false,
    };
    let ok = match d.kind() {
        'f' => matches!(d.itemsize(), Some(2 | 4 | 8)),
        'i' | 'u' => matches!(d.itemsize(), Some(1 | 2 | 4 | 8)),
        'b' => d.itemsize() == Some(1),
        '?' => true,
        'U' | 'S' => d.itemsize().is_some(),
        'O' => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "numpy dtype `{code}` (only numbers, booleans, strings and objects are read)"
        ))
    }
}

/// Byte order of a dtype from its `__setstate__` tuple
/// `(version, byteorder, subarray, names, fields, elsize, alignment, flags)`; structured and
/// sub-array dtypes are refused.
pub(crate) fn dtype_state(code: &str, state: &[PyValue]) -> Result<bool, String> {
    let order = match state.get(1) {
        Some(PyValue::Str(s)) => s.as_str(),
        _ => return Err(format!("numpy dtype `{code}` state without a byte order")),
    };
    for (i, what) in [(2, "sub-array"), (3, "structured"), (4, "structured")] {
        if !matches!(state.get(i), None | Some(PyValue::None)) {
            return Err(format!("a {what} numpy dtype (`{code}`)"));
        }
    }
    Ok(order == ">")
}

/// An array from the parts of its `__setstate__` state (already resolved to values).
pub(crate) fn array(
    dtype: DType,
    shape: &PyValue,
    fortran_order: bool,
    data: PyValue,
) -> Result<NdArray, String> {
    let PyValue::Tuple(dims) = shape else {
        return Err("numpy array state whose shape is not a tuple".into());
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|d| {
            d.as_i64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| "numpy array shape with a negative or non-integer size".to_string())
        })
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("numpy array shape overflows")?;
    let data = if dtype.kind() == 'O' {
        match data {
            PyValue::List(v) if v.len() == n => ArrayData::Objects(v),
            PyValue::List(v) => {
                return Err(format!(
                    "object array of shape {shape:?} holding {} elements",
                    v.len()
                ))
            }
            other => {
                return Err(format!(
                    "object array whose elements are a {} instead of a list",
                    other.kind()
                ))
            }
        }
    } else {
        let size = dtype
            .itemsize()
            .ok_or_else(|| format!("numpy dtype `{}`", dtype.code))?;
        let raw = match data {
            PyValue::Bytes(b) => b,
            other => {
                return Err(format!(
                    "numpy array of dtype {} whose data is a {} instead of bytes",
                    dtype.code,
                    other.kind()
                ))
            }
        };
        let want = n.checked_mul(size).ok_or("numpy array size overflows")?;
        if raw.len() != want {
            return Err(format!(
                "numpy array of shape {shape:?} and dtype {} needs {want} bytes but holds {}",
                dtype.code,
                raw.len()
            ));
        }
        ArrayData::Raw(raw)
    };
    Ok(NdArray {
        dtype,
        shape,
        fortran_order,
        data,
    })
}
