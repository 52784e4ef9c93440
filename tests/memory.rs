//! Freed memory goes back to the system between stages (`exec::memory`). Alone in its test binary:
//! resident-set measurements would see other tests' allocations.

use reccocktail::memory::{StagePeak, release_freed, resident_bytes};

const MB: usize = 1 << 20;

#[test]
fn memory_freed_by_a_stage_goes_back_to_the_system() {
    if resident_bytes().is_none() {
        return; // no /proc here: nothing to measure
    }
    // What a model stage leaves behind: after one large block is freed, glibc raises its mmap
    // threshold, so later 4 MB blocks come from an arena; small allocations made between them (and
    // still alive) pin the arena, so freeing the blocks leaves their pages resident.
    drop(std::hint::black_box(vec![1u8; 24 * MB]));
    let before = resident_bytes().unwrap();
    let peak = StagePeak::start();
    let mut pins = Vec::new();
    let mut blocks = Vec::new();
    for i in 0..96u8 {
        blocks.push(vec![i | 1; 4 * MB]);
        pins.push(vec![i; 64]);
    }
    let held = resident_bytes().unwrap();
    let freed = (96 * 4 * MB) as u64;
    assert!(held >= before + freed * 9 / 10, "the blocks are resident: {before} -> {held} bytes");
    assert!(blocks.iter().all(|b| b[4 * MB - 1] != 0));
    drop(blocks);
    // Read before releasing: the kernel does not record a peak that pages given back with
    // madvise leave behind (the runner reads it first too).
    let stage_peak = peak.bytes().unwrap();
    release_freed();
    let after = resident_bytes().unwrap();
    assert!(after + freed / 2 < held, "resident {held} bytes -> {after} after freeing {freed} and releasing");
    // The kernel batches each thread's page counts (up to 64 pages per thread), so the peak may
    // trail a resident-set reading by that much.
    assert!(stage_peak + (4 * MB) as u64 >= held, "the stage's peak {stage_peak} is at least what was resident in it, {held}");
    assert!(pins.iter().all(|p| p.len() == 64));
}
