// glibc's malloc grows each thread's arena with hundreds of small mprotect calls while the
// market files parse on the blocking pool (about 2 ms of the CLI's 20); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` in `include/mimalloc.h` (the bindings do not name it;
/// the test below fails if the linked mimalloc's option table is not the one read there).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Give freed pages back to the OS at once, not a second later: the controller's bursts (a
    // thousand plans at once) otherwise leave their freed pages resident at the peak
    // (bench/scale.sh 1000: 66.4 -> 62.1 MiB, the same CPU time). MIMALLOC_PURGE_DELAY still
    // overrides it.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a value in mimalloc's option table; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    spotplan::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // v3's table has 47 options, and purge_delay's default there is 1000 ms (src/options.c;
        // no other option defaults to 1000).
        assert_eq!(libmimalloc_sys::_mi_option_last, 47);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads mimalloc's option table.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
                1000
            );
        }
    }
}
