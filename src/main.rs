fn main() {
    std::process::exit(crossrank::cli::main());
}
