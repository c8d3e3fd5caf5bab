//! The AFL++ binary: `fuzz-target <target>` reads inputs from AFL; `fuzz-target <target> FILE…`
//! runs the given files once each (to reproduce a crash outside AFL).

#[global_allocator]
static ALLOC: radbridge_fuzz::CappedAllocator = radbridge_fuzz::CappedAllocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = radbridge_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    let Some(f) = args.first().and_then(|n| radbridge_fuzz::target(n)) else {
        eprintln!("usage: fuzz-target <{}> [FILE...]", names.join("|"));
        std::process::exit(2);
    };
    if args.len() > 1 {
        for file in &args[1..] {
            match std::fs::read(file) {
                Ok(bytes) => println!("{file}: {}", if f(&bytes) { "accepted" } else { "refused" }),
                Err(e) => eprintln!("{file}: {e}"),
            }
        }
        return;
    }
    afl::fuzz!(|data: &[u8]| {
        f(data);
    });
}
