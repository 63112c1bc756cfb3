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

pub(super) fn read_strings_container(c: &Container, is_attr: bool) -> hdf5::Result<Vec<String>> {
    let td = c.dtype()?.to_descriptor()?;
    Ok(match td {
        TypeDescriptor::VarLenUnicode => c
            .read_raw::<VarLenUnicode>()?
            .into_iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::VarLenAscii => c
            .read_raw::<VarLenAscii>()?
            .into_iter()
            .map(|s| s.as_str().to_string())
            .collect(),
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

pub(super) fn attr_string(loc: &Location, name: &str) -> Option<String> {
    let a: Attribute = loc.attr(name).ok()?;
    read_strings_container(&a, true).ok()?.into_iter().next()
}

pub(super) fn attr_strings(loc: &Location, name: &str) -> Vec<String> {
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

pub(super) fn attr_shape(loc: &Location, name: &str) -> Option<(usize, usize)> {
    let a = loc.attr(name).ok()?;
    let v = a.read_raw::<i64>().ok()?;
    (v.len() == 2).then(|| (v[0] as usize, v[1] as usize))
}

pub(super) fn encoding(loc: &Location) -> Option<String> {
    attr_string(loc, "encoding-type")
}

pub(super) fn read_values(ds: &Dataset) -> hdf5::Result<Values> {
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

pub(super) fn read_index_u32(ds: &Dataset) -> hdf5::Result<Vec<u32>> {
    ds.read_raw::<u32>()
}

pub(super) fn read_indptr(ds: &Dataset) -> hdf5::Result<Vec<u64>> {
    ds.read_raw::<u64>()
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
