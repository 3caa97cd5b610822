//! Array ops checked against values computed independently in f64 on the host.

mod common;

use common::{array, assert_close, matmul_ref, to_f64};
use mlx_bridge::{Array, Dtype, random};

#[test]
fn host_round_trip_for_every_element_type() {
    let ints = [-3i32, 0, 7, 2_000_000_000];
    assert_eq!(Array::from_slice(&ints, &[2, 2]).unwrap().to_vec::<i32>().unwrap(), ints);
    let bytes = [0u8, 1, 255];
    assert_eq!(Array::from_slice(&bytes, &[3]).unwrap().to_vec::<u8>().unwrap(), bytes);
    let flags = [true, false, true];
    assert_eq!(Array::from_slice(&flags, &[3]).unwrap().to_vec::<bool>().unwrap(), flags);
    let big = [u64::MAX, 1];
    assert_eq!(Array::from_slice(&big, &[2]).unwrap().to_vec::<u64>().unwrap(), big);
    let halves = [-1.5f64, 0.25];
    assert_eq!(Array::from_slice(&halves, &[2]).unwrap().to_vec::<f64>().unwrap(), halves);
    // bf16 bit patterns: 1.0 = 0x3f80, -2.5 = 0xc020.
    let bf = Array::from_bytes(&[0x80, 0x3f, 0x20, 0xc0], &[2], Dtype::BF16).unwrap();
    assert_eq!(bf.dtype(), Dtype::BF16);
    assert_eq!(bf.to_vec::<f32>().unwrap(), vec![1.0, -2.5]);
    assert_eq!(bf.to_bytes().unwrap(), vec![0x80, 0x3f, 0x20, 0xc0]);
}

#[test]
fn shape_dtype_item_and_cheap_clone() {
    let (a, data) = array(&[2, 3, 4], 1);
    assert_eq!(a.shape(), vec![2, 3, 4]);
    assert_eq!((a.ndim(), a.size(), a.nbytes(), a.dtype()), (3, 24, 96, Dtype::F32));
    assert_eq!(a.dim(-1).unwrap(), 4);
    let b = a.clone();
    assert_eq!(b.to_vec::<f32>().unwrap(), data);
    assert_eq!(Array::scalar(2.5f32).item::<f32>().unwrap(), 2.5);
    assert_eq!(Array::scalar(7i32).shape(), Vec::<i32>::new());
    let f = Array::full(&[2], 3.0, Dtype::BF16).unwrap();
    assert_eq!((f.dtype(), f.to_vec::<f32>().unwrap()), (Dtype::BF16, vec![3.0, 3.0]));
    assert_eq!(Array::arange(0.0, 5.0, 2.0, Dtype::I32).unwrap().to_vec::<i32>().unwrap(), vec![0, 2, 4]);
}

#[test]
fn arithmetic_and_unary_ops_match_the_formulas() {
    let (a, x) = array(&[64], 2);
    let (b, y) = array(&[64], 3);
    let pairs = x.iter().zip(&y).map(|(&p, &q)| (p as f64, q as f64));
    let check = |got: Array, f: &dyn Fn(f64, f64) -> f64| {
        let expected: Vec<f64> = pairs.clone().map(|(p, q)| f(p, q)).collect();
        assert_close(&got.to_vec::<f32>().unwrap(), &expected, 1e-6, 1e-5);
    };
    check(a.add(&b).unwrap(), &|p, q| p + q);
    check(a.sub(&b).unwrap(), &|p, q| p - q);
    check(a.mul(&b).unwrap(), &|p, q| p * q);
    check(a.maximum(&b).unwrap(), &|p, q| p.max(q));
    check(a.minimum(&b).unwrap(), &|p, q| p.min(q));
    check(a.exp().unwrap(), &|p, _| p.exp());
    check(a.tanh().unwrap(), &|p, _| p.tanh());
    check(a.abs().unwrap().add_scalar(0.5).unwrap().rsqrt().unwrap(), &|p, _| 1.0 / (p.abs() + 0.5).sqrt());
    check(a.abs().unwrap().add_scalar(1.0).unwrap().log().unwrap(), &|p, _| (p.abs() + 1.0).ln());
    check(a.sigmoid().unwrap(), &|p, _| 1.0 / (1.0 + (-p).exp()));
    check(a.mul_scalar(3.0).unwrap(), &|p, _| 3.0 * p);
    check(a.square().unwrap(), &|p, _| p * p);
    // erf via the identity erfinv(erf(x)) = x, and erf against a high-order series.
    let erf_ref = |v: f64| {
        let t = 1.0 / (1.0 + 0.5 * v.abs());
        let tau = t
            * (-v * v - 1.26551223
                + t * (1.00002368
                    + t * (0.37409196
                        + t * (0.09678418
                            + t * (-0.18628806
                                + t * (0.27886807
                                    + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
                .exp();
        if v >= 0.0 { 1.0 - tau } else { tau - 1.0 }
    };
    check(a.erf().unwrap(), &|p, _| erf_ref(p));
    check(a.mul_scalar(0.9).unwrap().erf().unwrap().erfinv().unwrap(), &|p, _| 0.9 * p);
}

#[test]
fn comparisons_where_clip_and_astype() {
    let a = Array::from_slice(&[-2.0f32, -0.5, 0.5, 2.0], &[4]).unwrap();
    let zero = Array::scalar(0.0f32);
    let positive = a.greater(&zero).unwrap();
    assert_eq!(positive.dtype(), Dtype::Bool);
    assert_eq!(positive.to_vec::<bool>().unwrap(), vec![false, false, true, true]);
    let picked = mlx_bridge::where_select(&positive, &a, &a.neg().unwrap()).unwrap();
    assert_eq!(picked.to_vec::<f32>().unwrap(), vec![2.0, 0.5, 0.5, 2.0]);
    assert_eq!(a.clip_scalar(-1.0, 1.0).unwrap().to_vec::<f32>().unwrap(), vec![-1.0, -0.5, 0.5, 1.0]);
    assert_eq!(a.clip(None, Some(&zero)).unwrap().to_vec::<f32>().unwrap(), vec![-2.0, -0.5, 0.0, 0.0]);
    assert_eq!(a.astype(Dtype::I32).unwrap().to_vec::<i32>().unwrap(), vec![-2, 0, 0, 2]);
    let bf = a.astype(Dtype::BF16).unwrap();
    // A scalar of the array's own dtype keeps bf16 from being promoted to f32.
    assert_eq!(bf.mul_scalar(2.0).unwrap().dtype(), Dtype::BF16);
    assert!(a.equal(&a).unwrap().all_all(false).unwrap().item::<bool>().unwrap());
}

#[test]
fn reductions_match_f64_sums() {
    let (a, x) = array(&[3, 5], 4);
    let rows: Vec<&[f32]> = x.chunks(5).collect();
    let sum: Vec<f64> = rows.iter().map(|r| r.iter().map(|&v| v as f64).sum()).collect();
    let mean: Vec<f64> = sum.iter().map(|s| s / 5.0).collect();
    let var: Vec<f64> =
        rows.iter().zip(&mean).map(|(r, m)| r.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 5.0).collect();
    let max: Vec<f64> = rows.iter().map(|r| r.iter().fold(f64::MIN, |m, &v| m.max(v as f64))).collect();
    let lse: Vec<f64> = rows.iter().map(|r| r.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln()).collect();
    assert_close(&a.sum(&[1], false).unwrap().to_vec().unwrap(), &sum, 1e-6, 1e-5);
    assert_close(&a.mean(&[-1], false).unwrap().to_vec().unwrap(), &mean, 1e-6, 1e-5);
    assert_close(&a.var(&[1], false, 0).unwrap().to_vec().unwrap(), &var, 1e-6, 1e-5);
    let std: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
    assert_close(&a.std(&[1], false, 0).unwrap().to_vec().unwrap(), &std, 1e-6, 1e-5);
    assert_close(&a.max(&[1], false).unwrap().to_vec().unwrap(), &max, 0.0, 0.0);
    assert_close(&a.logsumexp(&[1], false).unwrap().to_vec().unwrap(), &lse, 1e-6, 1e-5);
    let total: f64 = sum.iter().sum();
    assert_close(&a.sum_all(false).unwrap().to_vec().unwrap(), &[total], 1e-5, 1e-5);
    assert_eq!(a.sum(&[1], true).unwrap().shape(), vec![3, 1]);
    let softmax: Vec<f64> =
        rows.iter().zip(&lse).flat_map(|(r, l)| r.iter().map(move |&v| (v as f64 - l).exp())).collect();
    assert_close(&a.softmax(&[-1], true).unwrap().to_vec().unwrap(), &softmax, 1e-6, 1e-5);
}

#[test]
fn argmax_sort_argpartition_topk_and_cumsum() {
    let a = Array::from_slice(&[3.0f32, -1.0, 7.0, 2.0, 5.0, 0.0], &[2, 3]).unwrap();
    assert_eq!(a.argmax(1, false).unwrap().to_vec::<u32>().unwrap(), vec![2, 1]);
    assert_eq!(a.argmin(-1, false).unwrap().to_vec::<u32>().unwrap(), vec![1, 2]);
    assert_eq!(a.sort(1).unwrap().to_vec::<f32>().unwrap(), vec![-1.0, 3.0, 7.0, 0.0, 2.0, 5.0]);
    assert_eq!(a.argsort(1).unwrap().to_vec::<u32>().unwrap(), vec![1, 0, 2, 2, 0, 1]);
    let row = Array::from_slice(&[9.0f32, 1.0, 8.0, 2.0, 7.0, 3.0], &[6]).unwrap();
    let idx = row.argpartition(3, 0).unwrap().to_vec::<u32>().unwrap();
    let vals: Vec<f32> = idx.iter().map(|&i| [9.0, 1.0, 8.0, 2.0, 7.0, 3.0][i as usize]).collect();
    assert_eq!(vals[3], 7.0, "kth element in sorted position");
    assert!(vals[..3].iter().all(|&v| v <= 7.0) && vals[4..].iter().all(|&v| v >= 7.0));
    let mut top = row.topk(2, 0).unwrap().to_vec::<f32>().unwrap();
    top.sort_by(f32::total_cmp);
    assert_eq!(top, vec![8.0, 9.0]);
    assert_eq!(row.cumsum(0, false, true).unwrap().to_vec::<f32>().unwrap(), vec![9.0, 10.0, 18.0, 20.0, 27.0, 30.0]);
    assert_eq!(row.cumsum(0, true, false).unwrap().to_vec::<f32>().unwrap()[0], 21.0);
}

#[test]
fn reshape_transpose_slice_and_update() {
    let a = Array::arange(0.0, 24.0, 1.0, Dtype::F32).unwrap().reshape(&[2, 3, 4]).unwrap();
    let t = a.transpose(&[2, 0, 1]).unwrap();
    assert_eq!(t.shape(), vec![4, 2, 3]);
    // t[i, j, k] = a[j, k, i] = 12 j + 4 k + i
    let tv = t.to_vec::<f32>().unwrap();
    assert_eq!(tv[(3 * 2 + 1) * 3 + 2], (12 + 4 * 2 + 3) as f32);
    let s = a.slice(&[1, 0, 1], &[2, 3, 3]).unwrap();
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![13.0, 14.0, 17.0, 18.0, 21.0, 22.0]);
    let strided = a.slice_strided(&[0, 0, 0], &[1, 1, 4], &[1, 1, 2]).unwrap();
    assert_eq!(strided.to_vec::<f32>().unwrap(), vec![0.0, 2.0]);
    assert_eq!(a.slice_axis(-1, 3, 4).unwrap().shape(), vec![2, 3, 1]);
    let patch = Array::full(&[1, 1, 2], -1.0, Dtype::F32).unwrap();
    let updated = a.slice_update(&patch, &[0, 2, 1], &[1, 3, 3]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&updated[8..12], &[8.0, -1.0, -1.0, 11.0]);
    let start = Array::from_slice(&[2i32], &[1]).unwrap();
    let dynamic = a.slice_dynamic(&start, &[2], &[2, 3, 2]).unwrap();
    assert_eq!(dynamic.to_vec::<f32>().unwrap()[..2], [2.0, 3.0]);
    let updated = a.slice_update_dynamic(&patch, &start, &[2]).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&updated[0..4], &[0.0, 1.0, -1.0, -1.0]);
    assert_eq!(a.expand_dims(&[0]).unwrap().shape(), vec![1, 2, 3, 4]);
    assert_eq!(a.slice_axis(0, 0, 1).unwrap().squeeze(&[0]).unwrap().shape(), vec![3, 4]);
    let col = Array::from_slice(&[1.0f32, 2.0], &[2, 1]).unwrap();
    assert_eq!(
        col.broadcast_to(&[2, 3]).unwrap().contiguous().unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    );
    assert_eq!(a.swapaxes(0, 2).unwrap().shape(), vec![4, 3, 2]);
}

#[test]
fn concatenate_stack_split_take_and_gather() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Array::from_slice(&[5.0f32, 6.0], &[1, 2]).unwrap();
    let c = mlx_bridge::concatenate(&[&a, &b], 0).unwrap();
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s = mlx_bridge::stack(&[&a, &a], 0).unwrap();
    assert_eq!(s.shape(), vec![2, 2, 2]);
    let parts = c.split(3, 0).unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2].to_vec::<f32>().unwrap(), vec![5.0, 6.0]);
    let parts = c.split_at(&[1], 0).unwrap();
    assert_eq!(parts[1].shape(), vec![2, 2]);
    let table = Array::arange(0.0, 12.0, 1.0, Dtype::F32).unwrap().reshape(&[4, 3]).unwrap();
    let ids = Array::from_slice(&[3i32, 0, 3], &[3]).unwrap();
    assert_eq!(
        table.take(&ids, 0).unwrap().to_vec::<f32>().unwrap(),
        vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 9.0, 10.0, 11.0]
    );
    let cols = Array::from_slice(&[2i32, 0, 1, 1], &[4, 1]).unwrap();
    assert_eq!(table.take_along_axis(&cols, 1).unwrap().to_vec::<f32>().unwrap(), vec![2.0, 3.0, 7.0, 10.0]);
    let put = table.put_along_axis(&cols, &Array::scalar(-1.0f32), 1).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&put[0..3], &[0.0, 1.0, -1.0]);
}

#[test]
fn matmul_and_addmm_match_a_naive_product() {
    let (m, k, n) = (5, 33, 7);
    let (a, x) = array(&[m as i32, k as i32], 5);
    let (b, y) = array(&[k as i32, n as i32], 6);
    let expected = matmul_ref(&to_f64(&x), &to_f64(&y), m, k, n);
    // MLX's CUDA backend runs float32 matmuls on TF32 tensor cores (10-bit mantissa) unless
    // MLX_ENABLE_TF32=0: 366 TFLOP/s measured on an H100, over 5x its fp32 peak.
    let tf32 = mlx_bridge::device::default_device().is_gpu() && std::env::var("MLX_ENABLE_TF32").as_deref() != Ok("0");
    let tol = if tf32 { 3e-3 } else { 1e-5 };
    assert_close(&a.matmul(&b).unwrap().to_vec().unwrap(), &expected, tol, tol);
    let (c, z) = array(&[m as i32, n as i32], 7);
    let fused: Vec<f64> = expected.iter().zip(&z).map(|(p, &c)| 0.5 * c as f64 + 2.0 * p).collect();
    assert_close(&c.addmm(&a, &b, 2.0, 0.5).unwrap().to_vec().unwrap(), &fused, 2.0 * tol, tol);
    // Batched with broadcasting: [2, m, k] x [k, n].
    let batched = mlx_bridge::stack(&[&a, &a], 0).unwrap().matmul(&b).unwrap();
    assert_eq!(batched.shape(), vec![2, m as i32, n as i32]);
}

#[test]
fn random_is_reproducible_per_key_and_in_range() {
    let key = random::key(42).unwrap();
    let u1 = random::uniform(-2.0, 3.0, &[1000], Dtype::F32, Some(&key)).unwrap().to_vec::<f32>().unwrap();
    let u2 = random::uniform(-2.0, 3.0, &[1000], Dtype::F32, Some(&key)).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(u1, u2);
    assert!(u1.iter().all(|&v| (-2.0..3.0).contains(&v)));
    let mean = u1.iter().map(|&v| v as f64).sum::<f64>() / 1000.0;
    assert!((mean - 0.5).abs() < 0.2, "mean {mean}");
    let keys = random::split(&key, 2).unwrap();
    assert_eq!(keys.shape(), vec![2, 2]);
    let other =
        random::uniform(0.0, 1.0, &[8], Dtype::F32, Some(&keys.slice_axis(0, 1, 2).unwrap().squeeze(&[0]).unwrap()))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
    assert_ne!(other, random::uniform(0.0, 1.0, &[8], Dtype::F32, Some(&key)).unwrap().to_vec::<f32>().unwrap());
    let normal = random::normal(&[4000], Dtype::F32, 1.0, 2.0, Some(&key)).unwrap().to_vec::<f32>().unwrap();
    let m = normal.iter().map(|&v| v as f64).sum::<f64>() / 4000.0;
    let sd = (normal.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 4000.0).sqrt();
    assert!((m - 1.0).abs() < 0.15 && (sd - 2.0).abs() < 0.15, "mean {m} std {sd}");
    let ints = random::randint(3, 9, &[500], Dtype::I32, Some(&key)).unwrap().to_vec::<i32>().unwrap();
    assert!(ints.iter().all(|v| (3..9).contains(v)));
    // A peaked distribution always yields its mode; a flat one covers both outcomes.
    let peaked = Array::from_slice(&[0.0f32, 50.0, 0.0, 0.0, 0.0, 0.0, 50.0, 0.0], &[2, 4]).unwrap();
    assert_eq!(random::categorical(&peaked, -1, Some(&key)).unwrap().to_vec::<u32>().unwrap(), vec![1, 2]);
    let flat = Array::zeros(&[400, 2], Dtype::F32).unwrap();
    let draws = random::categorical(&flat, -1, Some(&key)).unwrap().to_vec::<u32>().unwrap();
    let ones = draws.iter().filter(|&&d| d == 1).count();
    assert!((120..280).contains(&ones), "{ones} of 400");
    random::seed(7);
    let g1 = random::uniform(0.0, 1.0, &[4], Dtype::F32, None).unwrap().to_vec::<f32>().unwrap();
    random::seed(7);
    assert_eq!(g1, random::uniform(0.0, 1.0, &[4], Dtype::F32, None).unwrap().to_vec::<f32>().unwrap());
}
