//! Software prefetch: asks the CPU to start loading a cache line the code will need soon, so
//! that several misses overlap instead of following one another.

/// Starts loading the cache line holding `ptr`. Any address is allowed, even a dangling one:
/// a prefetch never faults and never reads into the program.
#[inline(always)]
pub fn line(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint, it never faults or reads into the program, and
        // SSE (its target feature) is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
