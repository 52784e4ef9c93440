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
//! resumed run draws the same masks as an uninterrupted one.
//!
//! A mask drops element `i` when its 32-bit draw is below `round(p * 2^32)`: the drop
//! probability is `p` to within 2^-33.

use std::cell::Cell;

use burn::tensor::{Bool, Tensor, TensorData};

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

/// Where training is on (an autodiff device) and `p > 0`: `x` with each element zeroed with
/// probability `p`, **not** rescaled, and the factor `1 / (1 - p)` the kept elements are owed (the
/// caller applies it where it is cheapest: LoRA on its rank-`r` product). Elsewhere `(x, 1.0)`.
pub fn zero_out<const D: usize>(x: Tensor<D>, p: f64) -> (Tensor<D>, f64) {
    if p <= 0.0 || !x.device().is_autodiff() {
        return (x, 1.0);
    }
    let (seed, stream) = next_stream();
    let shape = x.dims();
    let mask = dropped(shape.iter().product(), p, seed, stream);
    let mask = Tensor::<D, Bool>::from_data(TensorData::new(mask, shape), &x.device());
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
