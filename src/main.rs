fn main() -> std::process::ExitCode {
    // Before any thread starts: large blocks stay in the process for reuse (see `memory`).
    reccocktail::memory::reuse_large_blocks();
    reccocktail::cli::main()
}
