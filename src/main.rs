fn main() -> std::process::ExitCode {
    reccocktail::cli::main()
}
