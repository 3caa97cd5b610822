//! Safetensors, memory statistics, devices, streams and evaluation.

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use mlx_bridge::device::{self, Device, DeviceKind};
use mlx_bridge::io::{SafeTensors, save_safetensors};
use mlx_bridge::{Array, Dtype, memory};

/// MLX's allocator statistics are process-wide: tests in this binary that allocate run one at a time
/// so that one test's frees do not land between another's two readings.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn safetensors_round_trip_with_metadata_and_dtypes() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let (a, av) = common::array(&[3, 4], 1);
    let b = Array::from_slice(&[1i32, -2, 3], &[3]).unwrap();
    let c = a.astype(Dtype::BF16).unwrap();
    let meta = HashMap::from([("format".to_string(), "mlx".to_string())]);
    save_safetensors(&path, &[("layer.a", &a), ("layer.b", &b), ("layer.c", &c)], &meta).unwrap();

    let st = SafeTensors::load(&path).unwrap();
    assert_eq!(st.names(), vec!["layer.a", "layer.b", "layer.c"]);
    assert_eq!(st.metadata().get("format").map(String::as_str), Some("mlx"));
    let a2 = st.get("layer.a").unwrap();
    assert_eq!((a2.shape(), a2.dtype()), (vec![3, 4], Dtype::F32));
    assert_eq!(a2.to_vec::<f32>().unwrap(), av);
    assert_eq!(st.get("layer.b").unwrap().to_vec::<i32>().unwrap(), vec![1, -2, 3]);
    assert_eq!(st.get("layer.c").unwrap().dtype(), Dtype::BF16);
    assert!(st.get("layer.missing").is_err());
}

#[test]
fn safetensors_loading_is_lazy() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    let big = Array::ones(&[1024, 1024], Dtype::F32).unwrap();
    save_safetensors(&path, &[("w", &big)], &HashMap::new()).unwrap();
    drop(big);
    memory::clear_cache();
    let before = memory::active();
    let st = SafeTensors::load(&path).unwrap();
    let w = st.get("w").unwrap();
    assert!(memory::active() < before + 1024 * 1024, "loading read the tensor eagerly");
    assert_eq!(w.sum_all(false).unwrap().item::<f32>().unwrap(), (1024 * 1024) as f32);
}

#[test]
fn memory_statistics_track_allocations() {
    let _serial = exclusive();
    memory::reset_peak();
    let before = memory::stats();
    let a = Array::ones(&[2048, 1024], Dtype::F32).unwrap();
    a.eval().unwrap();
    let during = memory::stats();
    assert!(during.active >= before.active + (8 << 20), "{before:?} -> {during:?}");
    assert!(during.peak >= during.active);
    drop(a);
    assert!(memory::active() < during.active);
    let old = memory::set_cache_limit(0);
    memory::clear_cache();
    assert_eq!(memory::cache(), 0);
    memory::set_cache_limit(old);
    let limit = memory::stats().limit;
    assert_eq!(memory::set_limit(limit / 2), limit);
    assert_eq!(memory::set_limit(limit), limit / 2);
}

#[test]
fn devices_streams_and_version() {
    let _serial = exclusive();
    assert!(mlx_bridge::mlx_version().starts_with("0."));
    assert!(device::is_available(Device::cpu()));
    let default = device::default_device();
    // The CPU wheel has no GPU; a CUDA/Metal libmlx of the same version would report one.
    if device::device_count(DeviceKind::Gpu) == 0 {
        assert_eq!(default, Device::cpu());
        assert!(!device::is_available(Device::gpu()));
    }
    let stream = device::new_stream(Device::cpu()).unwrap();
    assert_eq!(stream.device, Device::cpu());
    let (a, _) = common::array(&[64, 64], 2);
    let b = a.matmul(&a).unwrap();
    mlx_bridge::async_eval(&[&b]).unwrap();
    device::synchronize_stream(device::default_stream(Device::cpu()).unwrap()).unwrap();
    mlx_bridge::synchronize().unwrap();
    assert_eq!(b.shape(), vec![64, 64]);
    device::set_default_device(Device::cpu()).unwrap();
    assert!(!mlx_bridge::build_info().mlx_prefix.is_empty());
}

#[test]
fn pending_graph_nodes_counts_the_operations_left_to_run() {
    // Memory statistics are process-wide: allocating here while another test measures them breaks it.
    let _serial = exclusive();
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let b = Array::from_slice(&[3.0f32, 4.0], &[2]).unwrap();
    mlx_bridge::eval(&[&a, &b]).unwrap();
    assert_eq!(mlx_bridge::pending_graph_nodes(&[&a]), 0, "evaluated inputs cost nothing");
    let sum = a.add(&b).unwrap();
    let product = sum.mul(&sum).unwrap();
    // `sum` is shared: counted once.
    assert_eq!(mlx_bridge::pending_graph_nodes(&[&product, &sum]), 2);
    product.eval().unwrap();
    assert_eq!(mlx_bridge::pending_graph_nodes(&[&product]), 0);
}
