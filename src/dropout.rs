//! Dropout whose masks are the same on every machine, backend and thread count.
//!
//! burn's `Dropout` draws its mask with the backend's Bernoulli sampler. libtorch's CPU sampler
//! (`bernoulli_` with a scalar probability) takes MKL's VSL stream on Intel processors and its own
//! mt19937, one element at a time on one thread, on every other processor: the same seed drew
//! other masks, hence trained other adapters, on an AMD machine than on an Intel one, and on AMD
//! the serial draws were a large share of a real training step (BENCHMARKS.md). The flex backend
//! and CUDA draw yet other masks.
//!
//! Here a mask is a function of (seed, stream, element index) only: element `2j` and `2j + 1`
//! come from the two halves of SplitMix64's output for counter `j` of the stream, so any split
//! of the work gives the same mask, and it is drawn on the host in parallel. The trainer seeds
//! each optimizer step ([`seed`]); every dropout call on that thread then takes the next stream,
//! so the calls of a forward pass (always made in the same order) get distinct masks, and a
//! resumed run draws the same masks as an uninterrupted one. On a GPU the same function is
//! computed there with integer tensor ops (uploading a host-drawn mask dominated a step there).
//!
//! A mask drops element `i` when its 32-bit draw is below `round(p * 2^32)`: the drop
//! probability is `p` to within 2^-33.

use std::cell::Cell;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::rng::{GOLDEN, mix64 as mix};

/// What stage keys record of how dropout draws its masks: a change here is other work.
pub const MASKS_KEY: &str = "splitmix64 counter masks, host-drawn (v1)";

thread_local! {
    /// (seed, next stream) of this thread's dropout calls.
    static STATE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Seed this thread's dropout: the next call draws stream 0 of `seed`.
pub fn seed(seed: u64) {
    STATE.with(|s| s.set((seed, 0)));
}

fn next_stream() -> (u64, u64) {
    STATE.with(|s| {
        let (seed, stream) = s.get();
        s.set((seed, stream + 1));
        (seed, stream)
    })
}


/// Draw `out` from the counter after `counter`: element `2j`, `2j + 1` from the low and high
/// halves of `mix(counter + (j + 1) * GOLDEN)`. A plain indexed loop: this crate is built at
/// opt-level 1 with debug assertions in the `quick` profile, where slice iterators cost more than
/// the hashing.
fn fill(out: &mut [bool], mut counter: u64, threshold: u64) {
    let n = out.len();
    let mut i = 0;
    while i + 1 < n {
        counter = counter.wrapping_add(GOLDEN);
        let h = mix(counter);
        out[i] = (h & 0xFFFF_FFFF) < threshold;
        out[i + 1] = (h >> 32) < threshold;
        i += 2;
    }
    if i < n {
        out[i] = (mix(counter.wrapping_add(GOLDEN)) & 0xFFFF_FFFF) < threshold;
    }
}

/// Elements below which a mask is drawn on one thread.
const PARALLEL_FROM: usize = 1 << 18;

/// Which of `n` elements are dropped (true) with probability `p`, for stream `stream` of `seed`.
pub fn dropped(n: usize, p: f64, seed: u64, stream: u64) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(16);
    dropped_on(n, p, seed, stream, threads)
}

/// [`dropped`], drawn by up to `threads` threads.
fn dropped_on(n: usize, p: f64, seed: u64, stream: u64, threads: usize) -> Vec<bool> {
    let threshold = (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64;
    let base = mix(seed ^ mix(stream.wrapping_add(1).wrapping_mul(GOLDEN)));
    let draw = |out: &mut [bool], first_pair: usize| fill(out, base.wrapping_add((first_pair as u64).wrapping_mul(GOLDEN)), threshold);
    let mut out = vec![false; n];
    if n < PARALLEL_FROM || threads <= 1 {
        draw(&mut out, 0);
        return out;
    }
    // Chunks of an even length: chunk k starts at pair k * chunk / 2.
    let chunk = n.div_ceil(threads).next_multiple_of(2);
    std::thread::scope(|s| {
        for (k, part) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || draw(part, k * chunk / 2));
        }
    });
    out
}

/// [`dropped`] computed where `device` is, with 64-bit integer tensor ops: the same bits, for a
/// GPU, where drawing them on the host and uploading a byte per element made a real training
/// step ~5x slower on an H200 (BENCHMARKS.md). Relies on the backend's `i64`
/// products wrapping (libtorch's do, on the CPU and on CUDA; the `tch` tests compare it to the
/// host's draw).
fn dropped_here<const D: usize>(shape: [usize; D], p: f64, seed: u64, stream: u64, device: &Device) -> Tensor<D, Bool> {
    let n: usize = shape.iter().product();
    let pairs = n.div_ceil(2) as i64;
    let threshold = (p.clamp(0.0, 1.0) * 4_294_967_296.0).round() as i64;
    let base = mix(seed ^ mix(stream.wrapping_add(1).wrapping_mul(GOLDEN)));
    // Logical shift right (the tensors' is arithmetic): the sign bits cleared after.
    let shr = |z: Tensor<1, Int>, s: u32| z.bitwise_right_shift_scalar(s as i64).bitwise_and_scalar((u64::MAX >> s) as i64);
    let xor_shr = |z: Tensor<1, Int>, s: u32| z.clone().bitwise_xor(shr(z, s));
    let counters = Tensor::<1, Int>::arange(1..pairs + 1, device).mul_scalar(GOLDEN as i64).add_scalar(base as i64);
    let h = xor_shr(counters, 30).mul_scalar(0xBF58_476D_1CE4_E5B9_u64 as i64);
    let h = xor_shr(h, 27).mul_scalar(0x94D0_49BB_1331_11EB_u64 as i64);
    let h = xor_shr(h, 31);
    let halves = Tensor::stack::<2>(vec![h.clone().bitwise_and_scalar(0xFFFF_FFFF_i64), shr(h, 32)], 1);
    halves.reshape([2 * pairs as usize]).slice(0..n).lower_elem(threshold).reshape(shape)
}

/// Where training is on (an autodiff device) and `p > 0`: `x` with each element zeroed with
/// probability `p`, **not** rescaled, and the factor `1 / (1 - p)` the kept elements are owed (the
/// caller applies it where it is cheapest: LoRA on its rank-`r` product). Elsewhere `(x, 1.0)`.
/// The mask is drawn on the host for a CPU, on the device for a GPU: the same mask either way.
pub fn zero_out<const D: usize>(x: Tensor<D>, p: f64) -> (Tensor<D>, f64) {
    if p <= 0.0 || !x.device().is_autodiff() {
        return (x, 1.0);
    }
    let (seed, stream) = next_stream();
    let shape = x.dims();
    let device = x.device();
    let mask = if crate::backend::is_gpu(&device) {
        dropped_here(shape, p, seed, stream, &device)
    } else {
        Tensor::<D, Bool>::from_data(TensorData::new(dropped(shape.iter().product(), p, seed, stream), shape), &device)
    };
    (x.mask_fill(mask, 0.0), 1.0 / (1.0 - p))
}

/// Inverted dropout, as `torch.nn.Dropout` in training: [`zero_out`], the kept elements scaled by
/// `1 / (1 - p)`.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    match zero_out(x, p) {
        (x, 1.0) => x,
        (x, k) => x.mul_scalar(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_fixed_functions_of_seed_stream_and_index() {
        // Pinned bits: a change of generator must show here (and in the stage keys' MASKS_KEY).
        let m = dropped(24, 0.5, 42, 3);
        let bits: String = m.iter().map(|&d| if d { '1' } else { '0' }).collect();
        assert_eq!(bits, PINNED);
        // Any split of the work, any length: the same elements.
        let n = PARALLEL_FROM * 3 + 7;
        let serial = dropped_on(n, 0.5, 42, 3, 1);
        for threads in [2, 3, 16] {
            assert!(dropped_on(n, 0.5, 42, 3, threads) == serial, "{threads} threads");
        }
        assert_eq!(&serial[..24], &m[..]);
        assert_eq!(dropped_on(n - 2, 0.5, 42, 3, 3)[..], serial[..n - 2]);
        assert_ne!(dropped(24, 0.5, 42, 4), m, "another stream, another mask");
        assert_ne!(dropped(24, 0.5, 43, 3), m, "another seed, another mask");
    }

    /// Also what an independent transcription of the definition in Python gives (a `mix` of
    /// `seed ^ mix((stream + 1) * GOLDEN)`, plus `(j + 1) * GOLDEN` per pair).
    const PINNED: &str = "011011011001000110000001";

    #[test]
    fn drop_rate_is_p() {
        for p in [0.05, 0.5] {
            let m = dropped(2_000_000, p, 7, 0);
            let rate = m.iter().filter(|&&d| d).count() as f64 / m.len() as f64;
            assert!((rate - p).abs() < 1e-3, "p {p}: rate {rate}");
        }
        assert!(dropped(1000, 0.0, 7, 0).iter().all(|&d| !d));
    }

    /// The device's computation of a mask is the host's draw, bit for bit (on libtorch's CPU here;
    /// a GPU runs the same integer kernels).
    #[cfg(feature = "tch")]
    #[test]
    fn masks_computed_by_tensor_ops_are_the_host_draws() {
        use crate::backend::{select, DeviceSpec};
        let rt = select(crate::recipe::types::BackendChoice::Tch, DeviceSpec::Cpu, Some(1)).unwrap();
        for (shape, p, seed, stream) in [([3, 5, 7], 0.05, 42, 3), ([2, 4, 9], 0.5, u64::MAX, 0), ([1, 1, 1], 0.5, 7, 1), ([4, 33, 576], 0.05, 0x9E37_79B9, 12)] {
            let n: usize = shape.iter().product();
            let here: Vec<bool> = dropped_here(shape, p, seed, stream, &rt.device).into_data().try_to_vec().unwrap();
            assert_eq!(here, dropped(n, p, seed, stream), "{shape:?} p {p} seed {seed} stream {stream}");
        }
        let here: Vec<bool> = dropped_here([24], 0.5, 42, 3, &rt.device).into_data().try_to_vec().unwrap();
        let bits: String = here.iter().map(|&d| if d { '1' } else { '0' }).collect();
        assert_eq!(bits, PINNED);
    }

    #[test]
    fn streams_follow_the_seed_per_thread() {
        let draw = || {
            seed(9);
            let a = next_stream();
            let b = next_stream();
            (a, b)
        };
        assert_eq!(draw(), ((9, 0), (9, 1)));
        // Another thread's calls do not move this thread's streams.
        seed(9);
        std::thread::spawn(|| {
            seed(1);
            next_stream();
        })
        .join()
        .unwrap();
        assert_eq!(next_stream(), (9, 0));
    }
}
