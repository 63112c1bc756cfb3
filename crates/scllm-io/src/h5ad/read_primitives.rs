//! Low-level reads of HDF5 datasets and attributes whatever type the writer chose: strings
//! (variable or fixed length), numbers of any width, raw bytes of structured arrays.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Container, Dataset, Group, Location, LocationType};

use crate::matrix::Values;

/// Read a dataset or attribute as raw bytes in its own (file) type: used for fixed-length strings
/// and structured arrays, which have no fixed Rust type.
pub(super) fn read_bytes(
    c: &Container,
    is_attr: bool,
) -> hdf5::Result<(Vec<u8>, TypeDescriptor, usize)> {
    let dtype = c.dtype()?;
    let td = dtype.to_descriptor()?;
    let size = dtype.size();
    let n = c.space()?.size();
    let mut buf = vec![0u8; n * size];
    let _lock = hdf5_sys::LOCK.lock();
    let status = unsafe {
        if is_attr {
            hdf5_sys::h5a::H5Aread(c.id(), dtype.id(), buf.as_mut_ptr().cast())
        } else {
            hdf5_sys::h5d::H5Dread(
                c.id(),
                dtype.id(),
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5p::H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            )
        }
    };
    if status < 0 {
        return Err(hdf5::Error::from("H5Dread/H5Aread failed"));
    }
    Ok((buf, td, n))
}

pub(super) fn fixed_str(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map(|p| p + 1)
        .unwrap_or(0);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub(super) fn is_string_type(td: &TypeDescriptor) -> bool {
    matches!(
        td,
        TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
    )
}

/// Text of a variable-length string, checked: hdf5's `as_str` trusts the file to hold UTF-8
/// (undefined behaviour on a damaged one), so the bytes are validated here.
fn checked_utf8(bytes: &[u8]) -> hdf5::Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        hdf5::Error::from(format!(
            "a string is not valid UTF-8 (byte {} of {:?}); the file is damaged",
            e.utf8_error().valid_up_to(),
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// What a variable-length string claims beyond its 16-byte heap id, for the structure budget
/// (which allows four times a claim): with the heap id's share, 192 bytes a string, where
/// HDF5's copy and pointer and then the `String` of a 20-character barcode take about 100.
const STRING_READ_BYTES: u64 = 32;

pub(super) fn read_strings_container(c: &Container, is_attr: bool) -> hdf5::Result<Vec<String>> {
    let td = c.dtype()?.to_descriptor()?;
    if matches!(
        td,
        TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii
    ) {
        // the strings live in the file's heaps, outside what the dataset claims: widen the
        // structure budget by their cost so ten million barcodes are not taken for a loop
        super::guard::allow((c.space()?.size() as u64).saturating_mul(STRING_READ_BYTES));
    }
    Ok(match td {
        TypeDescriptor::VarLenUnicode => {
            super::guard::strings(c.space()?.size(), || c.read_raw::<VarLenUnicode>())?
                .iter()
                .map(|s| checked_utf8(s.as_bytes()))
                .collect::<hdf5::Result<_>>()?
        }
        TypeDescriptor::VarLenAscii => {
            super::guard::strings(c.space()?.size(), || c.read_raw::<VarLenAscii>())?
                .iter()
                .map(|s| checked_utf8(s.as_bytes()))
                .collect::<hdf5::Result<_>>()?
        }
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let (buf, _, count) = read_bytes(c, is_attr)?;
            (0..count)
                .map(|i| fixed_str(&buf[i * n..(i + 1) * n]))
                .collect()
        }
        other => {
            return Err(hdf5::Error::from(format!(
                "expected strings, found {other}"
            )))
        }
    })
}

pub(crate) fn attr_string(loc: &Location, name: &str) -> Option<String> {
    let a: Attribute = loc.attr(name).ok()?;
    read_strings_container(&a, true).ok()?.into_iter().next()
}

pub(crate) fn attr_strings(loc: &Location, name: &str) -> Vec<String> {
    let Ok(a) = loc.attr(name) else {
        return Vec::new();
    };
    let Ok(td) = a.dtype().and_then(|d| d.to_descriptor()) else {
        return Vec::new();
    };
    if !is_string_type(&td) {
        return Vec::new(); // anndata writes an empty float array for an empty column order
    }
    read_strings_container(&a, true).unwrap_or_default()
}

/// A sparse matrix's `shape` attribute: two non-negative integers, else `None`.
pub(crate) fn attr_shape(loc: &Location, name: &str) -> Option<(usize, usize)> {
    let a = loc.attr(name).ok()?;
    let v = a.read_raw::<i64>().ok()?;
    match v[..] {
        [r, c] if r >= 0 && c >= 0 => Some((r as usize, c as usize)),
        _ => None,
    }
}

/// Deflate's largest compression ratio is 1032:1 (zlib's technical details); LZF and shuffle
/// reach less. More values than that from the stored bytes means a damaged file.
const MAX_INFLATION: u64 = 1032;
/// Datasets this small are read whatever they claim (small unwritten datasets are legal).
const ALWAYS_READABLE: u64 = 1 << 20;

/// Refuse a dataset that claims more values than its stored bytes can hold, before anything is
/// allocated for it: reading one allocates what it claims, and a 1 MB damaged file can claim
/// gigabytes (an unwritten chunked `indptr` of 10⁹ entries, a `data` of 4·10⁹ values).
pub(crate) fn check_stored(ds: &Dataset) -> hdf5::Result<()> {
    let claimed = (ds.space()?.size() as u64).saturating_mul(ds.dtype()?.size() as u64);
    super::guard::allow(claimed);
    if claimed <= ALWAYS_READABLE {
        return Ok(());
    }
    let stored = ds.storage_size();
    let factor = if ds.filters().is_empty() {
        1
    } else {
        MAX_INFLATION
    };
    if claimed > stored.saturating_mul(factor) {
        return Err(hdf5::Error::from(format!(
            "claims {} values ({claimed} bytes) but the file stores {stored} bytes for them; the file is damaged or truncated",
            ds.space()?.size()
        )));
    }
    Ok(())
}

pub(super) fn encoding(loc: &Location) -> Option<String> {
    attr_string(loc, "encoding-type")
}

pub(super) fn read_values(ds: &Dataset) -> hdf5::Result<Values> {
    check_stored(ds)?;
    let td = ds.dtype()?.to_descriptor()?;
    Ok(match td {
        TypeDescriptor::Float(FloatSize::U4) => Values::F32(ds.read_raw()?),
        TypeDescriptor::Float(_) => Values::F64(ds.read_raw()?),
        TypeDescriptor::Integer(IntSize::U8)
        | TypeDescriptor::Unsigned(IntSize::U4 | IntSize::U8) => Values::I64(ds.read_raw()?),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => Values::I32(ds.read_raw()?),
        TypeDescriptor::Boolean => Values::I32(
            ds.read_raw::<bool>()?
                .into_iter()
                .map(|b| b as i32)
                .collect(),
        ),
        other => {
            return Err(hdf5::Error::from(format!(
                "unsupported matrix element type {other}"
            )))
        }
    })
}

/// Column (CSR) or row (CSC) indices. Signed ones are read as stored and checked: HDF5's
/// signed-to-unsigned conversion clips a negative index to 0, which would silently become
/// column 0.
pub(super) fn read_index_u32(ds: &Dataset) -> hdf5::Result<Vec<u32>> {
    check_stored(ds)?;
    match ds.dtype()?.to_descriptor()? {
        TypeDescriptor::Integer(IntSize::U1 | IntSize::U2 | IntSize::U4) => {
            non_negative(ds.read_raw::<i32>()?, "index")
        }
        TypeDescriptor::Integer(IntSize::U8) => {
            let v: Vec<u64> = non_negative(ds.read_raw::<i64>()?, "index")?;
            v.into_iter()
                .map(|x| {
                    u32::try_from(x).map_err(|_| {
                        hdf5::Error::from(format!("index {x} is beyond 2^32; the file is damaged"))
                    })
                })
                .collect()
        }
        _ => ds.read_raw::<u32>(),
    }
}

/// Row (CSR) or column (CSC) pointers, read signed for the same reason as the indices.
pub(crate) fn read_indptr(ds: &Dataset) -> hdf5::Result<Vec<u64>> {
    check_stored(ds)?;
    non_negative(ds.read_raw::<i64>()?, "indptr entry")
}

/// The values as unsigned, or an error naming the first negative one.
fn non_negative<S, U>(v: Vec<S>, what: &str) -> hdf5::Result<Vec<U>>
where
    S: Copy + PartialOrd + Default + std::fmt::Display + TryInto<U>,
{
    if let Some(bad) = v.iter().find(|&&x| x < S::default()) {
        return Err(hdf5::Error::from(format!(
            "negative {what} {bad}; the file is damaged"
        )));
    }
    // in place: same size and alignment (i32 -> u32, i64 -> u64)
    Ok(v.into_iter()
        .map(|x| {
            x.try_into()
                .unwrap_or_else(|_| unreachable!("checked non-negative"))
        })
        .collect())
}

/// Whether a compressed matrix's layout can be sliced: `indptr` has `major + 1` entries rising
/// from 0 to the stored count, indices and values are as many, and the count cannot exceed the
/// `nrows × ncols` matrix. The one rule of the whole and the block readers.
pub(crate) fn compressed_layout_fits(
    indptr: &[u64],
    major: usize,
    n_indices: usize,
    n_values: usize,
    (nrows, ncols): (usize, usize),
) -> bool {
    indptr.len() == major + 1
        && n_indices == n_values
        && indptr.first() == Some(&0)
        && indptr.windows(2).all(|w| w[0] <= w[1])
        && indptr[major] as usize == n_values
        && n_values as u128 <= nrows as u128 * ncols as u128
}

/// Categorical codes: integers, checked against the stored size.
pub(super) fn read_codes(ds: &Dataset) -> hdf5::Result<Vec<i32>> {
    check_stored(ds)?;
    ds.read_raw::<i32>()
}

/// A group's members in name order, as HDF5 1.10's symbol tables listed them: HDF5 2.x writes
/// link messages, which iterate in storage order, and `uns`/`obsm` would change order in a
/// round trip.
pub(super) fn member_names(g: &Group) -> hdf5::Result<Vec<String>> {
    let mut names = g.member_names()?;
    names.sort_unstable();
    Ok(names)
}

pub(super) fn kind_of(g: &Group, name: &str) -> Option<LocationType> {
    g.loc_type_by_name(name).ok()
}

pub(super) fn number_at(b: &[u8], td: &TypeDescriptor) -> f64 {
    let a = |n: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(&b[..n]);
        x
    };
    match td {
        TypeDescriptor::Float(FloatSize::U4) => {
            f32::from_le_bytes(b[..4].try_into().unwrap()) as f64
        }
        TypeDescriptor::Float(_) => f64::from_le_bytes(b[..8].try_into().unwrap()),
        TypeDescriptor::Integer(s) => match s {
            IntSize::U1 => b[0] as i8 as f64,
            IntSize::U2 => i16::from_le_bytes(b[..2].try_into().unwrap()) as f64,
            IntSize::U4 => i32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
            IntSize::U8 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
        },
        TypeDescriptor::Unsigned(s) => u64::from_le_bytes(a(*s as usize)) as f64,
        TypeDescriptor::Enum(e) => {
            let n = e.size as usize;
            if e.signed {
                let v = u64::from_le_bytes(a(n));
                let shift = 64 - 8 * n as u32;
                (((v << shift) as i64) >> shift) as f64
            } else {
                u64::from_le_bytes(a(n)) as f64
            }
        }
        TypeDescriptor::Boolean => (b[0] != 0) as u8 as f64,
        _ => f64::NAN,
    }
}
