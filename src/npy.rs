//! NumPy `.npy` (format 1.0) writing for float32 arrays: what `mlxcel score --logits-out` produces.

use std::io::{self, Write};

/// Writes `data` as a C-ordered little-endian float32 array of `shape`.
pub fn write_f32(out: &mut impl Write, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} values for shape {shape:?}", data.len())));
    }
    let dims = match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for value in data {
        out.write_all(&value.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let mut buffer = Vec::new();
        write_f32(&mut buffer, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(&buffer[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([buffer[8], buffer[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&buffer[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(buffer.len(), 10 + header_len + 24);
        assert_eq!(&buffer[10 + header_len..10 + header_len + 4], &1.0f32.to_le_bytes());
        assert!(write_f32(&mut Vec::new(), &[2], &[1.0]).is_err());
    }
}
