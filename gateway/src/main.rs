//! The `tongban` binary. Everything lives in the library so that tests drive the same code.

fn main() -> anyhow::Result<()> {
    tongban_gateway::cli::main()
}
