//! The `tongban` binary. Everything lives in the library so that tests drive the same code.

/// mimalloc instead of the system allocator: the data plane allocates and frees many small
/// buffers per call, and glibc's malloc spent a tenth of its CPU time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tongban_gateway::cli::main()
}
