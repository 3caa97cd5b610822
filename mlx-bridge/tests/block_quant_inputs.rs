//! What the block-quantized primitives accept as inputs without adding graph nodes: activations
//! of any float dtype and layout (slices, transposes, broadcasts) and ids of any integer dtype
//! and layout, each giving bit for bit what a contiguous float32 (int32) copy gives.

mod common;

use mlx_bridge::block_quant::{self, BlockMatrix, Precision};
use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype};

fn matrix(rows: i32, cols: i32, bits: i32, seed: u64) -> BlockMatrix {
    let (w, _) = common::array(&[rows, cols], seed);
    let q = quant::quantize(&w, QuantSpec::affine(32, bits).unwrap()).unwrap();
    BlockMatrix::from_affine("inputs", &q).unwrap()
}

fn bits(a: &Array) -> Vec<u32> {
    a.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// The operations `after`'s graph has pending beyond `before`'s, by name.
fn added(before: &[&Array], after: &[&Array]) -> Vec<(String, usize)> {
    let base = mlx_bridge::pending_graph_ops(before);
    mlx_bridge::pending_graph_ops(after)
        .into_iter()
        .filter_map(|(name, n)| {
            let had = base.iter().find(|(b, _)| *b == name).map_or(0, |(_, c)| *c);
            (n > had).then(|| (name, n - had))
        })
        .collect()
}

fn one(name: &str, n: usize) -> Vec<(String, usize)> {
    vec![(name.to_string(), n)]
}

/// Activations `[rows, cols]` (or `[rows, 2, cols]`) in several layouts, each with a contiguous
/// copy of its values.
fn layouts(rows: i32, cols: i32, seed: u64) -> Vec<(&'static str, Array, Array)> {
    let (m, k) = (rows, cols);
    let (wide, _) = common::array(&[m, 3 * k], seed);
    let (tall, _) = common::array(&[k, m], seed + 1);
    let (row, _) = common::array(&[1, k], seed + 2);
    let (cube, _) = common::array(&[2, m, k], seed + 3);
    [
        // Rows at a stride of 3k: read in place.
        ("row slice", wide.slice(&[0, k], &[m, 2 * k]).unwrap()),
        // Columns at a stride of m: widened into scratch.
        ("transpose", tall.t().unwrap()),
        // Every second column.
        ("column step", wide.slice_strided(&[0, 0], &[m, 2 * k], &[1, 2]).unwrap()),
        // The same row m times (row stride 0).
        ("broadcast", row.broadcast_to(&[m, k]).unwrap()),
        // Leading axes swapped: rows at two strides.
        ("swapped axes", cube.swapaxes(0, 1).unwrap()),
    ]
    .into_iter()
    .map(|(name, a)| {
        let dense = a.contiguous().unwrap();
        (name, a, dense)
    })
    .collect()
}

#[test]
fn any_float_dtype_and_layout_gives_the_contiguous_float32_result() {
    let w = matrix(40, 128, 4, 1);
    for precision in Precision::ALL {
        for (name, x, dense) in layouts(5, 128, 7) {
            let reference = bits(&w.matmul_t_with(&dense, precision).unwrap());
            let got = w.matmul_t_with(&x, precision).unwrap();
            let mut shape = dense.shape();
            *shape.last_mut().unwrap() = 40;
            assert_eq!(got.shape(), shape);
            assert!(bits(&got) == reference, "{name} {precision:?}");
            for dtype in [Dtype::F16, Dtype::BF16, Dtype::F64] {
                // The same values in `dtype`, in the layout and contiguous as float32.
                let narrow = x.astype(dtype).unwrap();
                let widened = narrow.astype(Dtype::F32).unwrap().contiguous().unwrap();
                let reference = bits(&w.matmul_t_with(&widened, precision).unwrap());
                let got = w.matmul_t_with(&narrow, precision).unwrap();
                assert_eq!(got.dtype(), Dtype::F32);
                assert!(bits(&got) == reference, "{name} {dtype} {precision:?}");
            }
        }
    }
}

#[test]
fn a_matmul_adds_one_node_whatever_its_input() {
    let w = matrix(40, 128, 8, 2);
    let (base, _) = common::array(&[6, 128], 3);
    let lazy = [
        ("f32", base.add_scalar(1.0).unwrap()),
        ("bf16", base.astype(Dtype::BF16).unwrap()),
        ("f16", base.mul_scalar(2.0).unwrap().astype(Dtype::F16).unwrap()),
        ("transposed", base.t().unwrap().add_scalar(1.0).unwrap().t().unwrap()),
        ("row slice", base.slice(&[1, 0], &[5, 128]).unwrap()),
    ];
    for (name, x) in lazy {
        for precision in Precision::ALL {
            let y = w.matmul_t_with(&x, precision).unwrap();
            assert_eq!(added(&[&x], &[&y]), one("BlockMatmul", 1), "{name} {precision:?}");
            // One primitive for both (each output counts as one pending array).
            let many = block_quant::matmul_t_many_with(&[&w, &w], &x, precision).unwrap();
            assert_eq!(added(&[&x], &[&many[0], &many[1]]), one("BlockMatmul", 2), "{name} {precision:?}");
        }
    }
}

#[test]
fn gather_rows_reads_any_integer_ids_in_place() {
    let w = matrix(300, 64, 4, 4);
    let ids: Vec<i32> = vec![299, 0, 17, 255, 256, 3];
    let flat = Array::from_slice(&ids, &[2, 3]).unwrap();
    let reference = bits(&w.gather_rows(&flat).unwrap());
    for dtype in [Dtype::I8, Dtype::I16, Dtype::I64, Dtype::U8, Dtype::U16, Dtype::U32, Dtype::U64] {
        // u8 and i8 cannot hold 299 or 255/256: those use a matrix-sized subset.
        let fits = |v: i32| match dtype {
            Dtype::I8 => v < 128,
            Dtype::U8 => v < 256,
            _ => true,
        };
        let small: Vec<i32> = ids.iter().map(|&v| if fits(v) { v } else { v % 100 }).collect();
        let expected = bits(&w.gather_rows(&Array::from_slice(&small, &[2, 3]).unwrap()).unwrap());
        let typed = Array::from_slice(&small, &[2, 3]).unwrap().astype(dtype).unwrap();
        let got = w.gather_rows(&typed).unwrap();
        assert_eq!(added(&[&typed], &[&got]), one("BlockGatherRows", 1), "{dtype}");
        assert!(bits(&got) == expected, "{dtype}");
    }
    // Transposed int32 ids (strided): the rows of the transpose, in its order.
    let t = Array::from_slice(&[299, 255, 0, 256, 17, 3], &[3, 2]).unwrap().t().unwrap();
    let got = w.gather_rows(&t).unwrap();
    assert_eq!(added(&[&t], &[&got]), one("BlockGatherRows", 1));
    assert_eq!(got.shape(), vec![2, 3, 64]);
    assert!(bits(&got) == reference);

    for (bad, text) in
        [(Array::from_slice(&[-1i64], &[1]).unwrap(), "-1"), (Array::from_slice(&[300i64], &[1]).unwrap(), "300")]
    {
        let msg = w.gather_rows(&bad).and_then(|a| a.to_vec::<f32>()).expect_err("out of range").to_string();
        assert!(msg.contains(&format!("id {text} is outside [0, 300)")), "{msg}");
    }
    let huge = Array::from_slice(&[u64::MAX], &[1]).unwrap();
    let msg = w.gather_rows(&huge).and_then(|a| a.to_vec::<f32>()).expect_err("out of range").to_string();
    assert!(msg.contains(&format!("id {} is outside", u64::MAX)), "{msg}");
}
