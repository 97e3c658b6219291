//! Random bytes from getrandom(2), for names, marks and addresses that need to be unique,
//! not secret. One syscall, where opening /dev/urandom takes four. Zeros if the kernel
//! refuses, which callers survive (a retry on EEXIST, a rebuilt index, a MAC that is still
//! a valid one).

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SAFETY: the kernel writes at most `bytes.len()` bytes into `bytes`, which outlives the call.
    let _ = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    bytes
}

/// Four random bytes (see [`bytes`]) as a number.
pub fn u32() -> u32 {
    u32::from_ne_bytes(bytes())
}
