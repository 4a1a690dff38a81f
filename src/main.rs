// glibc's malloc grows each thread's arena with hundreds of small mprotect calls while the
// market files parse on the blocking pool (about 2 ms of the CLI's 20); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    spotplan::main()
}
