//! Rust functions of arrays compiled with `mx::compile`: the first call with given input shapes
//! traces the function (runs it on placeholder arrays, recording the graph); MLX fuses the
//! graph's elementwise chains, and later calls with those shapes replay it without running the
//! Rust code again. Arrays the function reads but does not take as inputs (weights) are captured
//! as constants of the graph, so a [`Compiled`] belongs to one set of weights.
//!
//! The first call runs the function op by op and evaluates its outputs: weights it reads that
//! are still lazy (read from a file when first evaluated, or computed at load) are materialised
//! then, where a trace would capture their computation as part of the graph and repeat it on
//! every replay.
//!
//! The function must build the same graph for the same input shapes: nothing it computes may
//! depend on a host value that changes between calls (a cache offset, say), or a replay would
//! silently reuse the first call's value. Such values go in as arrays.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cxx::UniquePtr;

use crate::array::{Array, from_list, to_list};
use crate::error::{Error, Result, mlx};
use crate::ffi::bridge as ffi;

/// What a traced function may fail with (its own errors or the bridge's).
pub type TraceError = Box<dyn std::error::Error + Send + Sync>;

/// A function of arrays to compile.
pub type ArrayFn<'a> = dyn Fn(&[Array]) -> std::result::Result<Vec<Array>, TraceError> + 'a;

/// A function being traced, for the C++ side to call back while `mx::compile` traces it.
pub struct TracedFn<'a>(&'a ArrayFn<'a>);

/// Called from C++ while MLX traces. A panic may not unwind through the C++ frames (the process
/// would abort), so it comes back as this call's error, as any failure of the function does.
pub(crate) fn call_traced(
    f: &TracedFn<'_>,
    inputs: &ffi::ArrayList,
) -> std::result::Result<UniquePtr<ffi::ArrayList>, String> {
    let inputs = from_list("compiled function", inputs).map_err(|e| e.to_string())?;
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (f.0)(&inputs)))
        .map_err(|panic| format!("the traced function panicked: {}", panic_text(&panic)))?
        .map_err(|e| e.to_string())?;
    Ok(to_list(&outputs.iter().collect::<Vec<_>>()))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// One compiled function: its graphs (one per set of input shapes) live in MLX's compile cache
/// under an id no other `Compiled` shares, and are dropped with it.
#[derive(Debug)]
pub struct Compiled {
    id: u64,
    /// Whether the eager first call (materialising the captured arrays) has run.
    materialised: AtomicBool,
}

impl Default for Compiled {
    fn default() -> Self {
        Self::new()
    }
}

impl Compiled {
    pub fn new() -> Compiled {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Compiled { id: NEXT.fetch_add(1, Ordering::Relaxed), materialised: AtomicBool::new(false) }
    }

    /// `f(inputs)`, compiled: run op by op and evaluated the first time, then traced on the
    /// first call with given input shapes and dtypes, and replayed after. With compilation off (`fused::set_compile_enabled(false)`), `f` runs op
    /// by op every time.
    pub fn call(&self, inputs: &[&Array], f: &ArrayFn<'_>) -> Result<Vec<Array>> {
        if !self.materialised.load(Ordering::Relaxed) {
            let inputs: Vec<Array> = inputs.iter().map(|&a| a.clone()).collect();
            let outputs = f(&inputs).map_err(|e| Error::invalid("compiled function", e.to_string()))?;
            crate::eval(&outputs.iter().collect::<Vec<_>>())?;
            self.materialised.store(true, Ordering::Relaxed);
            return Ok(outputs);
        }
        let list = mlx("compiled function", ffi::compiled_call(&TracedFn(f), self.id, &to_list(inputs)))?;
        let outputs = from_list("compiled function", &list)?;
        if outputs.is_empty() {
            return Err(Error::invalid("compiled function", "it returned no arrays"));
        }
        Ok(outputs)
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        ffi::compiled_forget(self.id);
    }
}
