fn main() -> std::process::ExitCode {
    spotplan::cli::main()
}
